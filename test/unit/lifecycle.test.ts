/**
 * The call session lifecycle (src/calls/lifecycle.ts) as a pure state machine, and the
 * listing cursor. The same rules end to end, on both engines: test/protocol/call-sessions.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  decide,
  parseTransitionRequest,
  SessionStates,
  StateEvents,
  TerminalStates,
  Transitions,
  type TransitionRequest,
} from '../../src/calls/lifecycle.ts';
import { decodeCursor, encodeCursor } from '../../src/calls/session-cursor.ts';
import type { SessionRecord, SessionState } from '../../src/engine/engine.ts';
import { GatewayError } from '../../src/errors/gateway-error.ts';

const T0 = '2026-11-28T12:00:00.000Z';
const T1 = '2026-11-28T12:00:05.000Z';
const T2 = '2026-11-28T12:03:05.250Z';

const CORRELATION = {
  provider: 'livekit',
  providerRoomId: 'room-1',
  providerParticipantId: 'PA_1',
  providerCallId: 'SCL_1',
};

/** A minimal valid request for each target. */
const REQUESTS: Record<SessionState, TransitionRequest> = {
  created: { to: 'created' },
  connecting: { to: 'connecting', provider: 'livekit' },
  active: { to: 'active', ...CORRELATION },
  ending: { to: 'ending', reason: 'user hung up' },
  ended: { to: 'ended' },
  failed: { to: 'failed', reason: 'media failed' },
};

function created(): SessionRecord {
  return { id: 'cs_1', tenantId: 'acme', ownerId: 'alice', createdAt: T0, state: 'created', version: 1 };
}

/** Applies a request and returns the next record (fails the test if it is not applied). */
function apply(current: SessionRecord, request: TransitionRequest, at = T1): SessionRecord {
  const decision = decide(current, request, at);
  assert.equal(decision.kind, 'apply', `${current.state} → ${request.to}: ${JSON.stringify(decision)}`);
  assert.ok(decision.kind === 'apply');
  return decision.next;
}

/** A record in `state`, reached by the shortest legal path from created. */
function reach(state: SessionState): SessionRecord {
  const paths: Record<SessionState, SessionState[]> = {
    created: [],
    connecting: ['connecting'],
    active: ['connecting', 'active'],
    ending: ['connecting', 'active', 'ending'],
    ended: ['connecting', 'active', 'ending', 'ended'],
    failed: ['failed'],
  };
  return paths[state].reduce((record, to) => apply(record, REQUESTS[to]), created());
}

function rejected(decision: ReturnType<typeof decide>, code: string): void {
  assert.equal(decision.kind, 'reject', JSON.stringify(decision));
  assert.ok(decision.kind === 'reject');
  assert.equal(decision.code, code);
}

describe('lifecycle: the moves', () => {
  it('allows exactly created → connecting → active → ending → ended, active → ended, and non-terminal → failed', () => {
    const legal = new Set<string>();
    for (const from of SessionStates) for (const to of Transitions[from]) legal.add(`${from}→${to}`);
    assert.deepEqual(
      [...legal].sort(),
      [
        'created→connecting',
        'connecting→active',
        'active→ending',
        'active→ended',
        'ending→ended',
        'created→failed',
        'connecting→failed',
        'active→failed',
        'ending→failed',
      ].sort(),
    );
    assert.deepEqual([...TerminalStates].sort(), ['ended', 'failed']);
    for (const state of TerminalStates) assert.deepEqual(Transitions[state], []);
  });

  it('every move the table lacks is invalid_transition, and the decision changes nothing', () => {
    for (const from of SessionStates) {
      for (const to of SessionStates) {
        const current = reach(from);
        const before = structuredClone(current);
        const request = REQUESTS[to];
        const decision = decide(current, request, T2);
        assert.deepEqual(current, before, 'decide does not mutate the record');
        const replay = current.lastTransition !== undefined && from === to;
        if (replay) assert.equal(decision.kind, 'replay', `${from} → ${to}`);
        else if (Transitions[from].includes(to)) assert.equal(decision.kind, 'apply', `${from} → ${to}`);
        else rejected(decision, 'invalid_transition');
      }
    }
  });

  it('each change bumps the version by one and records the change', () => {
    const connecting = apply(created(), { to: 'connecting', provider: 'livekit', providerRoomId: 'room-1' });
    assert.equal(connecting.version, 2);
    assert.equal(connecting.state, 'connecting');
    assert.deepEqual(connecting.lastTransition, {
      to: 'connecting',
      at: T1,
      provider: 'livekit',
      providerRoomId: 'room-1',
    });
    // connecting announces what is set up; the correlation itself is fixed by activation
    assert.equal(connecting.provider, undefined);
    const active = apply(connecting, REQUESTS.active, T1);
    assert.equal(active.version, 3);
    assert.deepEqual(
      {
        provider: active.provider,
        providerRoomId: active.providerRoomId,
        providerParticipantId: active.providerParticipantId,
        providerCallId: active.providerCallId,
      },
      CORRELATION,
    );
    assert.equal(active.activatedAt, T1);
    const ended = apply(apply(active, REQUESTS.ending), { to: 'ended', reason: 'done' }, T2);
    assert.equal(ended.version, 5);
    assert.deepEqual(ended.lastTransition, { to: 'ended', at: T2, reason: 'done' });
    assert.equal(ended.providerRoomId, 'room-1', 'the correlation stays');
  });
});

describe('lifecycle: events', () => {
  it('each state is announced by its call.* event with state and version', () => {
    let record = created();
    for (const to of ['connecting', 'active', 'ending', 'ended'] as const) {
      const decision = decide(record, REQUESTS[to], T2);
      assert.ok(decision.kind === 'apply');
      assert.equal(decision.event.type, StateEvents[to]);
      assert.equal(decision.event.payload.state, to);
      assert.equal(decision.event.payload.version, record.version + 1);
      record = decision.next;
    }
  });

  it('call.activated carries the provider correlation; call.failed the reason; call.ended the duration since activation', () => {
    const activated = decide(reach('connecting'), REQUESTS.active, T1);
    assert.ok(activated.kind === 'apply');
    assert.deepEqual(activated.event, {
      type: 'call.activated',
      payload: { state: 'active', version: 3, ...CORRELATION },
    });
    const failed = decide(reach('active'), { to: 'failed', reason: 'media failed' }, T2);
    assert.ok(failed.kind === 'apply');
    assert.deepEqual(failed.event, {
      type: 'call.failed',
      payload: { state: 'failed', version: 4, reason: 'media failed' },
    });
    const active = reach('active'); // activated at T1
    const ended = decide(active, { to: 'ended', reason: 'done' }, T2);
    assert.ok(ended.kind === 'apply');
    assert.deepEqual(ended.event.payload, {
      state: 'ended',
      version: 4,
      reason: 'done',
      durationMs: Date.parse(T2) - Date.parse(T1),
    });
    const connecting = decide(created(), { to: 'connecting', provider: 'livekit', providerRoomId: 'r' }, T1);
    assert.ok(connecting.kind === 'apply');
    assert.deepEqual(connecting.event.payload, {
      state: 'connecting',
      version: 2,
      provider: 'livekit',
      providerRoomId: 'r',
    });
  });
});

describe('lifecycle: replays', () => {
  it('repeating the change that produced the current state with the same fields is a replay', () => {
    for (const state of ['connecting', 'active', 'ending', 'ended', 'failed'] as const) {
      assert.equal(decide(reach(state), REQUESTS[state], T2).kind, 'replay', state);
    }
  });

  it('a replay wins over a stale expectedVersion (a retry of a change that succeeded)', () => {
    const connecting = reach('connecting');
    assert.equal(decide(connecting, { ...REQUESTS.connecting, expectedVersion: 1 }, T2).kind, 'replay');
  });

  it('the same target with other fields is not a replay', () => {
    rejected(decide(reach('failed'), { to: 'failed', reason: 'another reason' }, T2), 'invalid_transition');
    rejected(decide(reach('ending'), { to: 'ending' }, T2), 'invalid_transition');
    rejected(decide(reach('connecting'), { to: 'connecting', provider: 'other' }, T2), 'invalid_transition');
    rejected(decide(created(), { to: 'created' }, T2), 'invalid_transition');
  });
});

describe('lifecycle: expectedVersion', () => {
  it('a version other than the current one is version_conflict', () => {
    rejected(decide(created(), { ...REQUESTS.connecting, expectedVersion: 2 }, T1), 'version_conflict');
    rejected(decide(reach('active'), { ...REQUESTS.ending, expectedVersion: 2 }, T1), 'version_conflict');
    assert.equal(decide(reach('active'), { ...REQUESTS.ending, expectedVersion: 3 }, T1).kind, 'apply');
  });

  it('is checked before the move itself', () => {
    rejected(
      decide(reach('ended'), { to: 'connecting', provider: 'livekit', expectedVersion: 1 }, T1),
      'version_conflict',
    );
  });
});

describe('lifecycle: provider correlation', () => {
  it('is immutable once active: any differing field is provider_correlation_immutable', () => {
    for (const state of ['active', 'ending', 'ended'] as const) {
      const record = reach(state);
      for (const [name, value] of Object.entries(CORRELATION)) {
        for (const to of ['active', 'ending', 'ended', 'failed', 'connecting'] as const) {
          const request: TransitionRequest = { ...REQUESTS[to], [name]: `${value}-changed` };
          rejected(decide(record, request, T2), 'provider_correlation_immutable');
        }
      }
    }
    // a field that activation left unset cannot be set later either
    const partial = apply(reach('connecting'), { to: 'active', provider: 'livekit', providerRoomId: 'r' });
    rejected(decide(partial, { to: 'ending', providerCallId: 'late' }, T2), 'provider_correlation_immutable');
    rejected(
      decide(partial, { to: 'active', provider: 'livekit', providerRoomId: 'r', providerCallId: 'late' }, T2),
      'provider_correlation_immutable',
    );
  });

  it('the same values may be repeated with a later change', () => {
    const active = reach('active');
    const ending = decide(active, { to: 'ending', provider: 'livekit', providerRoomId: 'room-1' }, T2);
    assert.equal(ending.kind, 'apply');
  });

  it('is set only by the move to active', () => {
    rejected(
      decide(created(), { to: 'failed', reason: 'x', providerRoomId: 'r' }, T1),
      'provider_correlation_immutable',
    );
    rejected(
      decide(reach('connecting'), { to: 'failed', reason: 'x', provider: 'livekit' }, T1),
      'provider_correlation_immutable',
    );
  });
});

describe('lifecycle: request shape', () => {
  const bad = (body: unknown, pattern: RegExp): void => {
    assert.throws(
      () => parseTransitionRequest(body),
      (err: unknown) =>
        err instanceof GatewayError && err.code === 'bad_request' && pattern.test(err.message),
      JSON.stringify(body),
    );
  };

  it('takes exactly the fields of its target', () => {
    assert.deepEqual(parseTransitionRequest({ to: 'ending', reason: 'bye', expectedVersion: 3 }), {
      to: 'ending',
      reason: 'bye',
      expectedVersion: 3,
    });
    assert.deepEqual(parseTransitionRequest({ to: 'active', ...CORRELATION }), {
      to: 'active',
      ...CORRELATION,
    });
    for (const to of SessionStates) assert.deepEqual(parseTransitionRequest(REQUESTS[to]), REQUESTS[to]);
  });

  it('refuses what is not a transition', () => {
    bad(undefined, /object/);
    bad([], /object/);
    bad({}, /"to"/);
    bad({ to: 'paused' }, /"to"/);
    bad({ to: 'ending', colour: 'red' }, /colour/);
    bad({ to: 'active', provider: 'livekit', providerRoomId: 'r', reason: 'x' }, /reason/);
    bad({ to: 'connecting', provider: 'livekit', providerCallId: 'c' }, /providerCallId/);
    bad({ to: 'connecting' }, /needs provider/);
    bad({ to: 'active', provider: 'livekit' }, /needs providerRoomId/);
    bad({ to: 'failed' }, /needs reason/);
    bad({ to: 'ending', reason: '' }, /1–256/);
    bad({ to: 'ending', reason: 'x'.repeat(257) }, /1–256/);
    bad({ to: 'ending', reason: 7 }, /1–256/);
    bad({ to: 'ending', expectedVersion: 0 }, /expectedVersion/);
    bad({ to: 'ending', expectedVersion: 1.5 }, /expectedVersion/);
    bad({ to: 'ending', expectedVersion: '2' }, /expectedVersion/);
  });
});

describe('listing cursor', () => {
  it('round-trips a position and refuses anything else', () => {
    const position = { createdAt: T0, id: 'cs_abc-_9' };
    const cursor = encodeCursor(position);
    assert.match(cursor, /^[A-Za-z0-9_-]+$/);
    assert.deepEqual(decodeCursor(cursor), position);
    for (const junk of [
      '',
      '!!',
      'bm9wZQ',
      Buffer.from('[1,2]').toString('base64url'),
      Buffer.from('["a",""]').toString('base64url'),
    ]) {
      assert.throws(
        () => decodeCursor(junk),
        (err: unknown) => err instanceof GatewayError && err.code === 'bad_request',
        junk,
      );
    }
  });
});
