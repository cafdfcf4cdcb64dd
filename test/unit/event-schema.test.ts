/**
 * Schema v1 of the event envelope and of every payload (PROTOCOL.md §1), and who may
 * publish what. Table-driven: `cases` has one entry per event type (the compiler
 * insists), and every entry runs the same checks through `normalizeEnvelope`, the
 * path every ingested event takes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { normalizeEnvelope, validateEventBody, type Envelope } from '../../src/protocol/envelope.ts';
import {
  EventFamilies,
  EventTypes,
  isEventType,
  mayPublish,
  producersOf,
  TerminalEventTypes,
  type EventPayload,
  type EventType,
} from '../../src/protocol/event-types.ts';
import { Roles, type Role } from '../../src/protocol/roles.ts';

const TS = '2026-11-28T21:33:16.123Z';

function envelope(
  type: string,
  payload: unknown,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return { eventId: 'ev-1', sessionId: 'ses_1', ts: TS, type, payload, schemaVersion: 1, ...extra };
}

function accepted(input: unknown): Envelope {
  const result = normalizeEnvelope(input);
  assert.ok(result.ok, `expected accepted, got: ${result.ok ? '' : result.message}`);
  return result.value;
}

function rejected(input: unknown, message?: RegExp): void {
  const result = normalizeEnvelope(input);
  assert.equal(result.ok, false, `expected rejected: ${JSON.stringify(input)}`);
  if (result.ok) return;
  assert.equal(result.code, 'invalid_event');
  if (message) assert.match(result.message, message);
}

function without(payload: object, key: string): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...payload };
  delete copy[key];
  return copy;
}

type Case<T extends EventType> = {
  /** A valid payload that uses every field the schema has. */
  full: EventPayload<T>;
  /** The keys that must be present; every other key of `full` may be left out. */
  required: ReadonlyArray<keyof EventPayload<T> & string>;
  /** More payloads that must be rejected, each with what is wrong. */
  invalid: ReadonlyArray<readonly [what: string, payload: Record<string, unknown>]>;
};

const transcriptFull = {
  segmentId: 'seg-7',
  revision: 2,
  text: 'book me a table for two',
  speaker: 'user:ana',
  startMs: 1200,
  endMs: 2900,
  language: 'en-US',
  confidence: 0.93,
};
const transcriptInvalid = [
  ['negative revision', { ...transcriptFull, revision: -1 }],
  ['fractional revision', { ...transcriptFull, revision: 1.5 }],
  ['revision as string', { ...transcriptFull, revision: '2' }],
  ['empty segmentId', { ...transcriptFull, segmentId: '' }],
  ['segmentId over 128 chars', { ...transcriptFull, segmentId: 's'.repeat(129) }],
  ['text over 16 KiB', { ...transcriptFull, text: 'x'.repeat(16_385) }],
  ['endMs before startMs', { ...transcriptFull, startMs: 3000, endMs: 2999 }],
  ['negative startMs', { ...transcriptFull, startMs: -1 }],
  ['confidence above 1', { ...transcriptFull, confidence: 1.01 }],
  ['language not a tag', { ...transcriptFull, language: 'english (US)' }],
  ['empty speaker', { ...transcriptFull, speaker: '' }],
] as const;

const cases: { [T in EventType]: Case<T> } = {
  'call.created': {
    full: { state: 'created', version: 1 },
    required: ['state'],
    invalid: [
      ['other state', { state: 'active' }],
      ['empty payload', {}],
      ['version 0', { state: 'created', version: 0 }],
    ],
  },
  'call.connecting': {
    full: { state: 'connecting', version: 2, provider: 'livekit', providerRoomId: 'room-ses_1' },
    required: ['provider'],
    invalid: [
      ['provider with capitals', { provider: 'LiveKit' }],
      ['another state', { state: 'active', provider: 'livekit' }],
      ['empty providerRoomId', { provider: 'livekit', providerRoomId: '' }],
    ],
  },
  'call.activated': {
    full: {
      state: 'active',
      version: 3,
      provider: 'livekit',
      providerRoomId: 'room-ses_1',
      providerParticipantId: 'PA_abc123',
      providerCallId: 'SCL_9f8e',
    },
    required: ['provider', 'providerRoomId'],
    invalid: [
      ['providerRoomId over 256 chars', { provider: 'livekit', providerRoomId: 'r'.repeat(257) }],
      ['providerCallId as number', { provider: 'livekit', providerRoomId: 'r', providerCallId: 42 }],
    ],
  },
  'call.ending': {
    full: { state: 'ending', version: 4, reason: 'user hung up', initiatedBy: 'user' },
    required: [],
    invalid: [
      ['unknown initiator', { initiatedBy: 'martian' }],
      ['empty reason', { reason: '' }],
    ],
  },
  'call.ended': {
    full: { state: 'ended', version: 5, reason: 'completed', durationMs: 183_000 },
    required: [],
    invalid: [
      ['fractional version', { version: 1.5 }],
      ['negative duration', { durationMs: -5 }],
      ['fractional duration', { durationMs: 1.5 }],
      ['reason over 256 chars', { reason: 'r'.repeat(257) }],
    ],
  },
  'call.failed': {
    full: { state: 'failed', version: 2, reason: 'media provider unreachable', code: 'provider_unavailable' },
    required: ['reason'],
    invalid: [
      ['state not failed', { state: 'ended', reason: 'x' }],
      ['empty reason', { reason: '' }],
      ['code not a token', { reason: 'x', code: 'Provider Unavailable' }],
    ],
  },
  'call.participant_joined': {
    full: {
      participantId: 'PA_abc123',
      identity: 'user:ana',
      kind: 'user',
      name: 'Ana',
      roomId: 'RM_xyz',
      roomName: 'lifeos-cs_1',
      providerEventId: 'EV_1',
      providerTs: TS,
      reconciled: true,
    },
    required: ['participantId', 'identity'],
    invalid: [
      ['unknown kind', { participantId: 'PA_1', identity: 'a', kind: 'robot' }],
      ['empty identity', { participantId: 'PA_1', identity: '' }],
      ['reconciled as string', { participantId: 'PA_1', identity: 'a', reconciled: 'yes' }],
      [
        'impossible providerTs',
        { participantId: 'PA_1', identity: 'a', providerTs: '2026-02-30T00:00:00.000Z' },
      ],
    ],
  },
  'call.participant_left': {
    full: {
      participantId: 'PA_abc123',
      identity: 'agent:concierge',
      kind: 'agent',
      name: 'Concierge',
      reason: 'client_initiated',
      roomId: 'RM_xyz',
      roomName: 'lifeos-cs_1',
      providerEventId: 'EV_2',
      providerTs: TS,
      reconciled: false,
    },
    required: ['participantId', 'identity'],
    invalid: [
      ['participantId as number', { participantId: 7, identity: 'a' }],
      ['unknown kind', { participantId: 'PA_1', identity: 'a', kind: 'bot' }],
    ],
  },
  'call.participant_connection_aborted': {
    full: {
      participantId: 'PA_abc123',
      identity: 'user:ana',
      kind: 'sip',
      name: 'Ana',
      roomId: 'RM_xyz',
      roomName: 'lifeos-cs_1',
      providerEventId: 'EV_3',
      providerTs: TS,
    },
    required: ['participantId', 'identity'],
    invalid: [['reconciled is not a field', { participantId: 'PA_1', identity: 'a', reconciled: true }]],
  },
  'call.track_published': {
    full: {
      trackId: 'TR_audio1',
      participantIdentity: 'user:ana',
      participantId: 'PA_abc123',
      kind: 'audio',
      source: 'microphone',
      name: 'mic',
      roomId: 'RM_xyz',
      roomName: 'lifeos-cs_1',
      providerEventId: 'EV_4',
      providerTs: TS,
    },
    required: ['trackId', 'participantIdentity', 'kind'],
    invalid: [
      ['kind data', { trackId: 'TR_1', participantIdentity: 'a', kind: 'data' }],
      ['unknown source', { trackId: 'TR_1', participantIdentity: 'a', kind: 'video', source: 'webcam' }],
    ],
  },
  'call.track_unpublished': {
    full: {
      trackId: 'TR_video1',
      participantIdentity: 'user:ana',
      participantId: 'PA_abc123',
      kind: 'video',
      source: 'screen_share',
      name: 'screen',
      roomId: 'RM_xyz',
      roomName: 'lifeos-cs_1',
      providerEventId: 'EV_5',
      providerTs: TS,
    },
    required: ['trackId', 'participantIdentity', 'kind'],
    invalid: [['empty trackId', { trackId: '', participantIdentity: 'a', kind: 'audio' }]],
  },
  'call.room_started': {
    full: { roomId: 'RM_xyz', roomName: 'lifeos-cs_1', providerEventId: 'EV_6', providerTs: TS },
    required: ['roomId', 'roomName'],
    invalid: [['empty roomName', { roomId: 'RM_1', roomName: '' }]],
  },
  'call.room_finished': {
    full: { roomId: 'RM_xyz', roomName: 'lifeos-cs_1', providerEventId: 'EV_7', providerTs: TS },
    required: ['roomId', 'roomName'],
    invalid: [['roomId over 128 chars', { roomId: 'r'.repeat(129), roomName: 'x' }]],
  },
  'call.recording.started': {
    full: {
      egressId: 'EG_1',
      status: 'active',
      startedAt: TS,
      endedAt: TS,
      error: 'none',
      roomId: 'RM_xyz',
      roomName: 'lifeos-cs_1',
      providerEventId: 'EV_8',
      providerTs: TS,
    },
    required: ['egressId', 'status'],
    invalid: [['unknown status', { egressId: 'EG_1', status: 'EGRESS_ACTIVE' }]],
  },
  'call.recording.updated': {
    full: {
      egressId: 'EG_1',
      status: 'ending',
      startedAt: TS,
      endedAt: TS,
      error: 'none',
      roomId: 'RM_xyz',
      roomName: 'lifeos-cs_1',
      providerEventId: 'EV_9',
      providerTs: TS,
    },
    required: ['egressId', 'status'],
    invalid: [
      ['impossible startedAt', { egressId: 'EG_1', status: 'active', startedAt: '2026-13-01T00:00:00.000Z' }],
    ],
  },
  'call.recording.ended': {
    full: {
      egressId: 'EG_1',
      status: 'failed',
      startedAt: TS,
      endedAt: TS,
      error: 'upload failed',
      roomId: 'RM_xyz',
      roomName: 'lifeos-cs_1',
      providerEventId: 'EV_10',
      providerTs: TS,
    },
    required: ['egressId', 'status'],
    invalid: [['empty egressId', { egressId: '', status: 'complete' }]],
  },
  'transcript.partial': {
    full: transcriptFull,
    required: ['segmentId', 'revision', 'text'],
    invalid: transcriptInvalid,
  },
  'transcript.final': {
    full: { ...transcriptFull, revision: 3 },
    required: ['segmentId', 'revision', 'text'],
    invalid: transcriptInvalid,
  },
  'orchestration.action.requested': {
    full: {
      actionId: 'act-1',
      action: 'calendar.create_event',
      args: { title: 'Dinner', partySize: 2, at: { date: '2026-12-01', time: '19:30' } },
      segmentId: 'seg-7',
    },
    required: ['actionId', 'action'],
    invalid: [
      ['action with a space', { actionId: 'a', action: 'book table' }],
      ['action starting with a digit', { actionId: 'a', action: '1book' }],
      ['args as array', { actionId: 'a', action: 'x', args: ['a'] }],
      ['args as string', { actionId: 'a', action: 'x', args: 'a=1' }],
      [
        'args with over 64 keys',
        {
          actionId: 'a',
          action: 'x',
          args: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, i])),
        },
      ],
    ],
  },
  'orchestration.action.confirmation_required': {
    full: {
      actionId: 'act-1',
      action: 'payments.send',
      prompt: 'Send 40 euros to Ana?',
      risk: 'high',
      expiresAt: '2026-11-28T21:34:16.123Z',
    },
    required: ['actionId', 'action', 'prompt'],
    invalid: [
      ['empty prompt', { actionId: 'a', action: 'x', prompt: '' }],
      ['unknown risk', { actionId: 'a', action: 'x', prompt: 'ok?', risk: 'extreme' }],
      [
        'expiresAt without ms',
        { actionId: 'a', action: 'x', prompt: 'ok?', expiresAt: '2026-11-28T21:34:16Z' },
      ],
      [
        'expiresAt on Feb 30',
        { actionId: 'a', action: 'x', prompt: 'ok?', expiresAt: '2026-02-30T10:00:00.000Z' },
      ],
    ],
  },
  'orchestration.action.confirmed': {
    full: { actionId: 'act-1', by: 'user', channel: 'voice' },
    required: ['actionId', 'by'],
    invalid: [
      ['confirmed by an agent', { actionId: 'a', by: 'agent' }],
      ['unknown channel', { actionId: 'a', by: 'operator', channel: 'telepathy' }],
    ],
  },
  'orchestration.action.rejected': {
    full: { actionId: 'act-1', reason: 'declined', message: 'Ana said no.' },
    required: ['actionId', 'reason'],
    invalid: [
      ['free-text reason', { actionId: 'a', reason: 'she said no' }],
      ['message over 512 chars', { actionId: 'a', reason: 'expired', message: 'm'.repeat(513) }],
    ],
  },
  'orchestration.action.completed': {
    full: { actionId: 'act-1', result: { eventId: 'cal-123' }, durationMs: 840 },
    required: ['actionId'],
    invalid: [
      ['result as array', { actionId: 'a', result: [1] }],
      ['negative duration', { actionId: 'a', durationMs: -1 }],
    ],
  },
  'orchestration.action.failed': {
    full: {
      actionId: 'act-1',
      code: 'upstream_error',
      message: 'Calendar API returned 503.',
      retryable: true,
    },
    required: ['actionId', 'code'],
    invalid: [
      ['code not a token', { actionId: 'a', code: 'Upstream Error' }],
      ['retryable as string', { actionId: 'a', code: 'timeout', retryable: 'yes' }],
    ],
  },
  'safety.flagged': {
    full: {
      category: 'pii',
      severity: 'medium',
      source: 'transcript',
      segmentId: 'seg-7',
      actionId: 'act-1',
      score: 0.81,
      message: 'Card number spoken.',
    },
    required: ['category', 'severity'],
    invalid: [
      ['unknown severity', { category: 'pii', severity: 'severe' }],
      ['score above 1', { category: 'pii', severity: 'low', score: 2 }],
      ['category not a token', { category: 'Self Harm', severity: 'high' }],
    ],
  },
  'safety.action.blocked': {
    full: {
      actionId: 'act-1',
      reason: 'Payments above 20 EUR need an operator.',
      category: 'fraud',
      severity: 'high',
      policyId: 'pol-payments-limit',
    },
    required: ['actionId', 'reason'],
    invalid: [
      ['empty reason', { actionId: 'a', reason: '' }],
      ['unknown severity', { actionId: 'a', reason: 'r', severity: 'urgent' }],
    ],
  },
  'billing.usage.recorded': {
    full: {
      meter: 'stt.audio',
      quantity: 60_000,
      unit: 'ms',
      periodStart: '2026-11-28T21:32:16.123Z',
      periodEnd: '2026-11-28T21:33:16.123Z',
    },
    required: ['meter', 'quantity', 'unit', 'periodStart', 'periodEnd'],
    invalid: [
      ['fractional quantity', { meter: 'm', quantity: 0.5, unit: 'ms', periodStart: TS, periodEnd: TS }],
      ['negative quantity', { meter: 'm', quantity: -1, unit: 'ms', periodStart: TS, periodEnd: TS }],
      ['unknown unit', { meter: 'm', quantity: 1, unit: 'minutes', periodStart: TS, periodEnd: TS }],
      [
        'period ends before it starts',
        { meter: 'm', quantity: 1, unit: 'ms', periodStart: TS, periodEnd: '2026-11-28T21:33:16.122Z' },
      ],
      [
        'periodStart with an offset',
        { meter: 'm', quantity: 1, unit: 'ms', periodStart: '2026-11-28T21:33:16.123+00:00', periodEnd: TS },
      ],
    ],
  },
  'billing.session.summarized': {
    full: {
      durationMs: 183_000,
      periodStart: '2026-11-28T21:30:13.000Z',
      periodEnd: '2026-11-28T21:33:16.000Z',
      usage: [
        { meter: 'call.media', quantity: 183_000, unit: 'ms' },
        { meter: 'llm.tokens', quantity: 5_120, unit: 'tokens' },
      ],
    },
    required: ['durationMs', 'periodStart', 'periodEnd', 'usage'],
    invalid: [
      [
        'same meter twice',
        {
          durationMs: 1,
          periodStart: TS,
          periodEnd: TS,
          usage: [
            { meter: 'call.media', quantity: 1, unit: 'ms' },
            { meter: 'call.media', quantity: 2, unit: 'ms' },
          ],
        },
      ],
      [
        'usage line with an extra key',
        {
          durationMs: 1,
          periodStart: TS,
          periodEnd: TS,
          usage: [{ meter: 'm', quantity: 1, unit: 'ms', cost: 3 }],
        },
      ],
      ['usage as object', { durationMs: 1, periodStart: TS, periodEnd: TS, usage: {} }],
      [
        'period ends before it starts',
        { durationMs: 1, periodStart: TS, periodEnd: '2026-11-28T21:33:16.000Z', usage: [] },
      ],
    ],
  },
};

describe('event registry', () => {
  it('has a test case for every type and no case for an unknown type', () => {
    assert.deepEqual(Object.keys(cases).sort(), Object.keys(EventTypes).sort());
  });

  it('names every type family.name[.name] in one of the five families of PROTOCOL.md §1', () => {
    for (const type of Object.keys(EventTypes)) {
      assert.match(type, /^[a-z]+(\.[a-z_]+){1,3}$/, type);
      assert.ok((EventFamilies as readonly string[]).includes(type.split('.')[0]!), type);
    }
    for (const family of EventFamilies) {
      assert.ok(
        Object.keys(EventTypes).some((t) => t.startsWith(`${family}.`)),
        `no type in family ${family}`,
      );
    }
  });

  it('has transcript.partial, transcript.final and call.failed', () => {
    for (const type of ['transcript.partial', 'transcript.final', 'call.failed'])
      assert.ok(isEventType(type), type);
    assert.equal(isEventType('call.exploded'), false);
    assert.equal(isEventType('toString'), false);
  });

  it('has exactly call.ended and call.failed as terminal types', () => {
    assert.deepEqual([...TerminalEventTypes].sort(), ['call.ended', 'call.failed']);
  });
});

for (const type of Object.keys(cases) as EventType[]) {
  const { full, required, invalid } = cases[type] as Case<EventType>;
  const properties = Object.keys((EventTypes[type] as { properties: object }).properties);

  describe(`payload of ${type}`, () => {
    it('accepts a payload with every field, unchanged', () => {
      assert.deepEqual(Object.keys(full).sort(), [...properties].sort(), 'the fixture must use every field');
      const input = envelope(type, full);
      assert.deepEqual(accepted(input), input);
    });

    it('accepts the required fields alone', () => {
      const minimal = Object.fromEntries(Object.entries(full).filter(([k]) => required.includes(k as never)));
      accepted(envelope(type, minimal));
    });

    for (const key of Object.keys(full)) {
      if (required.includes(key as never)) {
        it(`rejects it without required "${key}"`, () =>
          rejected(envelope(type, without(full, key)), /payload/));
      } else {
        it(`accepts it without optional "${key}"`, () => {
          accepted(envelope(type, without(full, key)));
        });
      }
      it(`rejects "${key}" of the wrong type (null)`, () =>
        rejected(envelope(type, { ...full, [key]: null }), new RegExp(`payload/${key}`)));
    }

    it('rejects an extra key', () => rejected(envelope(type, { ...full, extra: 1 }), /payload/));

    it('rejects a payload that is not an object', () => {
      rejected(envelope(type, [full]));
      rejected(envelope(type, 'payload'));
      rejected(envelope(type, null));
    });

    // What msgpackr decodes from a timestamp or a bin, and what only code can make: not
    // plain objects, whatever keys they carry.
    it('rejects a payload that is a Date, a Buffer or inherits a key', () => {
      rejected(envelope(type, new Date(0)));
      rejected(envelope(type, Buffer.from('{}')));
      rejected(envelope(type, Object.create({ extra: 1 }) as never));
      rejected(envelope(type, Object.assign(Object.create({ extra: 1 }) as object, full)));
    });

    for (const [what, payload] of invalid) {
      it(`rejects ${what}`, () => rejected(envelope(type, payload), /payload/));
    }
  });
}

describe('envelope', () => {
  const valid = envelope('call.created', { state: 'created' });

  it('accepts a canonical envelope and returns it in canonical key order', () => {
    const value = accepted({
      schemaVersion: 1,
      payload: { state: 'created' },
      type: 'call.created',
      ts: TS,
      sessionId: 's',
      eventId: 'e',
    });
    assert.deepEqual(Object.keys(value), ['eventId', 'sessionId', 'ts', 'type', 'payload', 'schemaVersion']);
  });

  describe('legacy keys', () => {
    const { ts: _ts, schemaVersion: _v, ...base } = valid;

    it('renames timestamp to ts and version to schemaVersion', () => {
      const value = accepted({ ...base, timestamp: TS, version: 1 });
      assert.deepEqual(value, valid);
      assert.equal(Object.hasOwn(value, 'timestamp'), false);
      assert.equal(Object.hasOwn(value, 'version'), false);
    });

    it('renames each one alone', () => {
      assert.deepEqual(accepted({ ...base, timestamp: TS, schemaVersion: 1 }), valid);
      assert.deepEqual(accepted({ ...base, ts: TS, version: 1 }), valid);
    });

    it('accepts both forms of a key when they are equal', () => {
      assert.deepEqual(accepted({ ...valid, timestamp: TS, version: 1 }), valid);
    });

    it('rejects both forms of a key with different values', () => {
      rejected({ ...valid, timestamp: '2026-11-28T21:33:16.124Z' }, /"timestamp" and "ts"/);
      rejected({ ...valid, version: 2 }, /"version" and "schemaVersion"/);
      rejected({ ...valid, version: '1' }, /"version" and "schemaVersion"/);
    });

    it('validates a renamed value like a canonical one', () => {
      rejected({ ...base, timestamp: '2026-11-28T21:33:16Z', schemaVersion: 1 }, /ts/);
      rejected({ ...base, ts: TS, version: 2 }, /schemaVersion/);
    });
  });

  it('rejects a key outside the table', () => {
    rejected({ ...valid, seq: 1 }, /unknown key "seq"/);
    rejected({ ...valid, producer: 'agent' }, /unknown key "producer"/);
    rejected(
      JSON.parse(`{"__proto__": {"x": 1}, ${JSON.stringify(valid).slice(1)}`),
      /unknown key "__proto__"/,
    );
  });

  it('rejects a missing key', () => {
    for (const key of Object.keys(valid)) rejected(without(valid, key));
  });

  it('rejects an unknown or malformed type', () => {
    rejected(envelope('call.exploded', {}), /unknown event type "call.exploded"/);
    rejected(envelope('transcript.bogus', { segmentId: 's', revision: 0, text: '' }), /unknown event type/);
    rejected(envelope('Call.Created', { state: 'created' }), /type/);
    rejected(envelope('call', { state: 'created' }), /type/);
    rejected(envelope('call.created.', { state: 'created' }), /type/);
  });

  it('accepts eventIds of 1–128 chars of [A-Za-z0-9._:-]', () => {
    accepted({ ...valid, eventId: 'x' });
    accepted({ ...valid, eventId: 'e'.repeat(128) });
    accepted({ ...valid, eventId: 'agent-7:01JDXK3Z7C.retry_2' });
  });

  it('rejects eventIds with other chars or another length', () => {
    for (const eventId of ['', 'e'.repeat(129), 'a b', 'a/b', 'é', 'a\nb', 'ev#1']) {
      rejected({ ...valid, eventId }, /eventId/);
    }
    rejected({ ...valid, eventId: 42 }, /eventId/);
  });

  it('rejects a ts that is not RFC 3339 UTC with milliseconds', () => {
    for (const ts of [
      '2026-11-28T21:33:16Z',
      '2026-11-28T21:33:16.12Z',
      '2026-11-28T21:33:16.123456Z',
      '2026-11-28T21:33:16.123+00:00',
      '2026-11-28T22:33:16.123+01:00',
      '2026-11-28T21:33:16.123',
      '2026-11-28 21:33:16.123Z',
      '2026-11-28T21:33:16.123z',
    ]) {
      rejected({ ...valid, ts }, /ts/);
    }
    rejected({ ...valid, ts: Date.parse(TS) }, /ts/);
  });

  it('rejects a ts that is well formed but not a real instant', () => {
    for (const ts of ['2026-02-30T10:00:00.000Z', '2026-13-01T10:00:00.000Z', '2026-11-28T24:00:00.000Z']) {
      rejected({ ...valid, ts }, /ts: not a valid time/);
    }
    accepted({ ...valid, ts: '2028-02-29T23:59:59.999Z' });
  });

  it('rejects schemaVersion other than the integer 1', () => {
    rejected({ ...valid, schemaVersion: 2 }, /schemaVersion/);
    rejected({ ...valid, schemaVersion: '1' }, /schemaVersion/);
    rejected({ ...valid, schemaVersion: 1.5 }, /schemaVersion/);
  });

  it('rejects an empty or oversized sessionId', () => {
    rejected({ ...valid, sessionId: '' }, /sessionId/);
    rejected({ ...valid, sessionId: 's'.repeat(129) }, /sessionId/);
  });

  it('rejects input that is not an object', () => {
    for (const input of [null, undefined, 42, 'event', [valid]])
      rejected(input, /envelope must be an object/);
  });
});

describe('validateEventBody', () => {
  it('returns the same object when valid', () => {
    const env = envelope('call.created', { state: 'created' }) as Envelope;
    const result = validateEventBody(env);
    assert.ok(result.ok);
    assert.equal(result.value, env);
  });

  it('checks the whole envelope, not only the payload', () => {
    const base = envelope('call.created', { state: 'created' });
    for (const env of [
      { ...base, eventId: 'a b' },
      { ...base, extra: true },
      { ...base, ts: '2026-02-30T10:00:00.000Z' },
    ]) {
      assert.equal(validateEventBody(env as Envelope).ok, false, JSON.stringify(env));
    }
  });
});

describe('mayPublish', () => {
  /** PROTOCOL.md §1, written out independently of the implementation. */
  function protocolAllows(role: Role, type: string): boolean {
    const transcript = type === 'transcript.partial' || type === 'transcript.final';
    const request = type === 'orchestration.action.requested';
    if (role === 'agent' || role === 'service') return transcript || request;
    if (role === 'user') return request;
    return false;
  }

  const sample: ReadonlyArray<
    readonly [type: string, user: boolean, agent: boolean, operator: boolean, service: boolean]
  > = [
    ['transcript.partial', false, true, false, true],
    ['transcript.final', false, true, false, true],
    ['orchestration.action.requested', true, true, false, true],
    ['orchestration.action.confirmed', false, false, false, false],
    ['orchestration.action.completed', false, false, false, false],
    ['call.created', false, false, false, false],
    ['call.ended', false, false, false, false],
    ['call.failed', false, false, false, false],
    ['call.participant_joined', false, false, false, false],
    ['call.recording.started', false, false, false, false],
    ['safety.flagged', false, false, false, false],
    ['billing.usage.recorded', false, false, false, false],
    ['transcript.bogus', false, false, false, false],
    ['nonsense', false, false, false, false],
  ];

  for (const [type, ...allowed] of sample) {
    it(`${type}: user ${allowed[0]}, agent ${allowed[1]}, operator ${allowed[2]}, service ${allowed[3]}`, () => {
      assert.deepEqual(
        Roles.map((role) => mayPublish(role, type)),
        allowed,
      );
    });
  }

  it('matches PROTOCOL.md §1 for every role and every type', () => {
    for (const role of Roles) {
      for (const type of Object.keys(EventTypes)) {
        assert.equal(mayPublish(role, type), protocolAllows(role, type), `${role} → ${type}`);
      }
    }
  });

  it('lists the gateway and the allowed roles as producers of each type', () => {
    assert.deepEqual(producersOf('transcript.final'), ['gateway', 'agent', 'service']);
    assert.deepEqual(producersOf('orchestration.action.requested'), ['gateway', 'user', 'agent', 'service']);
    assert.deepEqual(producersOf('call.failed'), ['gateway']);
  });
});
