/**
 * The call session lifecycle over HTTP (docs/call-sessions.md): create, read, list, and
 * `POST /v1/call/sessions/:id/transitions` with its rules, each rule on its own; the
 * `call.*` event every change appends; `eos` to live subscribers on `ended` and on
 * `failed`; tenant scoping. Runs on both engines (`TEST_ENGINE=redis` in `npm test`);
 * the race between nodes is test/multinode/call-sessions.test.ts.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import type { TestClient } from '../helpers/ws-client.ts';
import {
  api,
  assertContiguous,
  autoAck,
  closeAll,
  expectClose,
  hello,
  history,
  newSession,
  publisher,
  publishMany,
  seqs,
  SUBPROTOCOLS,
  waitFor,
  type Session,
} from './support.ts';

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway();
});
afterEach(closeAll);
after(() => gw.stop());

const ROOM = { provider: 'livekit', providerRoomId: 'room-1' };
const CORRELATION = { ...ROOM, providerParticipantId: 'PA_caller', providerCallId: 'SCL_1' };

const sessionPath = (s: Session): string => `/v1/call/sessions/${s.sessionId}`;

function transition(s: Session, body: unknown, token = s.ownerToken): Promise<{ status: number; body: any }> {
  return api(gw, 'POST', `${sessionPath(s)}/transitions`, token, body);
}

/** A transition that must apply (or replay): the session after it. */
async function move(s: Session, body: Record<string, unknown>, token = s.ownerToken): Promise<any> {
  const res = await transition(s, body, token);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

function assertError(res: { status: number; body: any }, status: number, code: string): void {
  assert.equal(
    res.status,
    status,
    `expected ${status} ${code}, got ${res.status} ${JSON.stringify(res.body)}`,
  );
  assert.equal(res.body.error.code, code);
  assert.equal(typeof res.body.error.message, 'string');
}

async function getSession(s: Session, token = s.ownerToken): Promise<any> {
  const res = await api(gw, 'GET', sessionPath(s), token);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

/** A refused request must leave the record and the stream as they were. */
async function assertUnchanged(s: Session, attempt: () => Promise<void>): Promise<void> {
  const record = await getSession(s);
  const stream = await history(gw, s);
  await attempt();
  assert.deepEqual(await getSession(s), record, 'the record is unchanged');
  assert.deepEqual(await history(gw, s), stream, 'nothing was appended');
}

async function activeSession(): Promise<Session> {
  const s = await newSession(gw);
  await move(s, { to: 'connecting', provider: 'livekit' });
  await move(s, { to: 'active', ...CORRELATION });
  return s;
}

describe('call sessions: create and read', () => {
  it('POST creates a session at version 1 whose stream starts with call.created', async () => {
    const s = await newSession(gw);
    const record = await getSession(s);
    assert.equal(record.state, 'created');
    assert.equal(record.version, 1);
    assert.equal(record.id, s.sessionId);
    assert.equal(record.tenantId, 'acme');
    const stored = await history(gw, s);
    assert.equal(stored.length, 1);
    assert.equal(stored[0]!.event.type, 'call.created');
    assert.deepEqual(stored[0]!.event.payload, { state: 'created', version: 1 });
  });
});

describe('call sessions: the lifecycle', () => {
  it('created → connecting → active → ending → ended: each change bumps the version and appends its event', async () => {
    const s = await newSession(gw);
    const connecting = await move(s, { to: 'connecting', ...ROOM });
    assert.equal(connecting.state, 'connecting');
    assert.equal(connecting.version, 2);
    const active = await move(s, { to: 'active', ...CORRELATION, expectedVersion: 2 });
    assert.equal(active.state, 'active');
    assert.equal(active.version, 3);
    assert.equal(active.providerRoomId, 'room-1');
    assert.equal(active.providerCallId, 'SCL_1');
    assert.equal(typeof active.activatedAt, 'string');
    const ending = await move(s, { to: 'ending', reason: 'user hung up' });
    assert.equal(ending.version, 4);
    const ended = await move(s, { to: 'ended', reason: 'completed' });
    assert.equal(ended.state, 'ended');
    assert.equal(ended.version, 5);
    assert.deepEqual(ended.lastTransition, { to: 'ended', at: ended.lastTransition.at, reason: 'completed' });
    assert.deepEqual(await getSession(s), ended);

    const stored = await history(gw, s);
    assert.deepEqual(
      stored.map((e) => [e.seq, e.event.type, e.event.payload.state, e.event.payload.version]),
      [
        [1, 'call.created', 'created', 1],
        [2, 'call.connecting', 'connecting', 2],
        [3, 'call.activated', 'active', 3],
        [4, 'call.ending', 'ending', 4],
        [5, 'call.ended', 'ended', 5],
      ],
    );
    assert.deepEqual(stored[2]!.event.payload, { state: 'active', version: 3, ...CORRELATION });
    assert.equal(stored[4]!.event.payload.reason, 'completed');
    assert.equal(typeof stored[4]!.event.payload.durationMs, 'number');
    const page = await api(gw, 'GET', `${sessionPath(s)}/events?after=0`, s.ownerToken);
    assert.equal(page.body.endedAt, 5, 'the stream ended at call.ended');
  });

  it("no member can publish a lifecycle event's id first: each change still appends its own call.* event", async () => {
    // Publishing is idempotent by eventId within a session. With ids a client could make
    // (they were `<type>:<session>:v<version>`), the owner published under them first, the
    // gateway's call.* events came back as duplicates, and the record moved with no event.
    const s = await newSession(gw);
    const taken: [string, number][] = [
      ['call.connecting', 2],
      ['call.activated', 3],
      ['call.ending', 4],
      ['call.ended', 5],
    ];
    for (const [type, version] of taken) {
      const res = await api(gw, 'POST', `${sessionPath(s)}/events`, s.ownerToken, {
        eventId: `${type}:${s.sessionId}:v${version}`,
        type: 'orchestration.action.requested',
        payload: { actionId: `a${version}`, action: 'calendar.create_event' },
      });
      assert.equal(res.status, 201, JSON.stringify(res.body));
    }
    await move(s, { to: 'connecting', ...ROOM });
    await move(s, { to: 'active', ...CORRELATION });
    await move(s, { to: 'ending', reason: 'bye' });
    await move(s, { to: 'ended', reason: 'bye' });
    const lifecycle = (await history(gw, s)).filter((e) => e.event.type.startsWith('call.'));
    assert.deepEqual(
      lifecycle.map((e) => e.event.type),
      ['call.created', 'call.connecting', 'call.activated', 'call.ending', 'call.ended'],
    );
    for (const e of lifecycle.slice(1)) {
      assert.match(e.event.eventId, /^call\.[a-z]+:cs_[A-Za-z0-9_-]+:v\d\.[A-Za-z0-9_-]{16}$/, 'sealed');
    }
    const page = await api(gw, 'GET', `${sessionPath(s)}/events?after=0`, s.ownerToken);
    assert.equal(page.body.endedAt, 9, 'the stream ended at call.ended');
  });

  it('any non-terminal state → failed, with its reason in call.failed', async () => {
    for (const path of [[], ['connecting'], ['connecting', 'active'], ['connecting', 'active', 'ending']]) {
      const s = await newSession(gw);
      for (const to of path) {
        await move(
          s,
          to === 'active' ? { to, ...ROOM } : to === 'connecting' ? { to, provider: 'livekit' } : { to },
        );
      }
      const failed = await move(s, { to: 'failed', reason: 'media provider unreachable' });
      assert.equal(failed.state, 'failed');
      assert.equal(failed.version, path.length + 2);
      const last = (await history(gw, s)).at(-1)!;
      assert.equal(last.event.type, 'call.failed');
      assert.deepEqual(last.event.payload, {
        state: 'failed',
        version: path.length + 2,
        reason: 'media provider unreachable',
      });
    }
  });

  it('an illegal transition is 409 invalid_transition and changes nothing', async () => {
    const s = await newSession(gw);
    await assertUnchanged(s, async () => {
      assertError(await transition(s, { to: 'active', ...ROOM }), 409, 'invalid_transition');
      assertError(await transition(s, { to: 'ending' }), 409, 'invalid_transition');
      assertError(await transition(s, { to: 'ended' }), 409, 'invalid_transition');
      assertError(await transition(s, { to: 'created' }), 409, 'invalid_transition');
    });
    await move(s, { to: 'failed', reason: 'x' });
    await assertUnchanged(s, async () => {
      assertError(await transition(s, { to: 'connecting', provider: 'livekit' }), 409, 'invalid_transition');
      assertError(await transition(s, { to: 'failed', reason: 'another' }), 409, 'invalid_transition');
    });
  });

  it('repeating the transition that produced the current state, with the same fields, is 200 with the same session and no second event', async () => {
    const s = await newSession(gw);
    const first = await transition(s, { to: 'connecting', ...ROOM });
    assert.equal(first.status, 200);
    const again = await transition(s, { to: 'connecting', ...ROOM });
    assert.equal(again.status, 200);
    assert.deepEqual(again.body, first.body);
    assert.equal(again.body.version, 2);
    // even with the expectedVersion the first attempt carried
    const retry = await transition(s, { to: 'connecting', ...ROOM, expectedVersion: 1 });
    assert.equal(retry.status, 200, JSON.stringify(retry.body));
    assert.deepEqual(retry.body, first.body);
    await move(s, { to: 'active', ...CORRELATION });
    await move(s, { to: 'failed', reason: 'gone' });
    const replayFailed = await transition(s, { to: 'failed', reason: 'gone' });
    assert.equal(replayFailed.status, 200);
    assert.equal(replayFailed.body.version, 4);
    assert.deepEqual(
      (await history(gw, s)).map((e) => e.event.type),
      ['call.created', 'call.connecting', 'call.activated', 'call.failed'],
    );
  });

  it('an expectedVersion that does not match is 409 version_conflict', async () => {
    const s = await newSession(gw);
    await assertUnchanged(s, async () => {
      assertError(
        await transition(s, { to: 'connecting', provider: 'livekit', expectedVersion: 2 }),
        409,
        'version_conflict',
      );
    });
    await move(s, { to: 'connecting', provider: 'livekit', expectedVersion: 1 });
    await assertUnchanged(s, async () => {
      assertError(
        await transition(s, { to: 'failed', reason: 'late', expectedVersion: 1 }),
        409,
        'version_conflict',
      );
    });
    assert.equal((await move(s, { to: 'failed', reason: 'now', expectedVersion: 2 })).version, 3);
  });

  it('the provider correlation is set with the move to active and is immutable after: 409 provider_correlation_immutable', async () => {
    const s = await activeSession();
    const record = await getSession(s);
    assert.deepEqual(
      {
        provider: record.provider,
        providerRoomId: record.providerRoomId,
        providerParticipantId: record.providerParticipantId,
        providerCallId: record.providerCallId,
      },
      CORRELATION,
    );
    await assertUnchanged(s, async () => {
      assertError(
        await transition(s, { to: 'active', ...CORRELATION, providerRoomId: 'room-2' }),
        409,
        'provider_correlation_immutable',
      );
      assertError(
        await transition(s, { to: 'ending', providerCallId: 'SCL_other' }),
        409,
        'provider_correlation_immutable',
      );
      assertError(
        await transition(s, { to: 'failed', reason: 'x', provider: 'other' }),
        409,
        'provider_correlation_immutable',
      );
    });
    // the same values are no change
    const ending = await move(s, { to: 'ending', providerRoomId: 'room-1' });
    assert.equal(ending.providerRoomId, 'room-1');
    // and it cannot be set before activation either
    const fresh = await newSession(gw);
    await assertUnchanged(fresh, async () => {
      assertError(
        await transition(fresh, { to: 'failed', reason: 'x', providerRoomId: 'r' }),
        409,
        'provider_correlation_immutable',
      );
    });
  });

  it('a body that is not a transition is 400 bad_request', async () => {
    const s = await newSession(gw);
    await assertUnchanged(s, async () => {
      assertError(await transition(s, undefined), 400, 'bad_request');
      assertError(await transition(s, '{"to":'), 400, 'bad_request');
      assertError(await transition(s, { to: 'paused' }), 400, 'bad_request');
      assertError(await transition(s, { to: 'connecting' }), 400, 'bad_request');
      assertError(await transition(s, { to: 'connecting', provider: 'LiveKit' }), 400, 'bad_request');
      assertError(await transition(s, { to: 'failed' }), 400, 'bad_request');
      assertError(await transition(s, { to: 'failed', reason: 'x', colour: 'red' }), 400, 'bad_request');
      assertError(await transition(s, { to: 'failed', reason: 'x', expectedVersion: 0 }), 400, 'bad_request');
    });
  });
});

describe('call sessions: who may transition', () => {
  it('the owner and the tenant’s agents, services and operators', async () => {
    const s = await newSession(gw);
    await move(s, { to: 'connecting', provider: 'livekit' }, s.ownerToken);
    await move(s, { to: 'active', ...ROOM }, s.agentToken);
    await move(s, { to: 'ending' }, await gw.token('svc', 'service', 'acme'));
    const ended = await move(s, { to: 'ended' }, await gw.token('ops', 'operator', 'acme'));
    assert.equal(ended.version, 5);
  });

  it('another user of the tenant is 403 forbidden; another tenant, even an operator, is 404 session_not_found', async () => {
    const s = await newSession(gw);
    await assertUnchanged(s, async () => {
      assertError(
        await transition(s, { to: 'failed', reason: 'x' }, await gw.token('mallory', 'user', 'acme')),
        403,
        'forbidden',
      );
      for (const role of ['operator', 'agent', 'service', 'user'] as const) {
        assertError(
          await transition(s, { to: 'failed', reason: 'x' }, await gw.token('x', role, 'globex')),
          404,
          'session_not_found',
        );
      }
      assertError(await transition(s, { to: 'failed', reason: 'x' }, ''), 401, 'unauthorized');
    });
    assertError(
      await api(gw, 'POST', '/v1/call/sessions/cs_unknown/transitions', s.agentToken, {
        to: 'failed',
        reason: 'x',
      }),
      404,
      'session_not_found',
    );
  });
});

/** Asserts the client got `after`+1..last in order, the last of type `type`, then eos, then close 1000. */
async function assertEos(client: TestClient, afterSeq: number, last: number, type: string): Promise<void> {
  const eos = await waitFor(client, (f) => f.op === 'eos');
  assert.deepEqual(eos, { op: 'eos', seq: last });
  await expectClose(client, 1000);
  assertContiguous(seqs(client), afterSeq);
  assert.equal(seqs(client).at(-1), last);
  const evs = client.frames.filter((f) => f.op === 'ev');
  assert.equal(evs.at(-1)!.event.type, type);
  assert.equal(client.frames.at(-1)!.op, 'eos', 'eos is the last frame');
}

for (const sub of SUBPROTOCOLS) {
  describe(`call sessions: the end of the stream [${sub}]`, () => {
    for (const [terminal, body] of [
      ['ended', { to: 'ended', reason: 'completed' }],
      ['failed', { to: 'failed', reason: 'media failed' }],
    ] as const) {
      it(`a live subscriber gets every event, call.${terminal}, then eos (to: ${terminal}), and nothing is published after`, async () => {
        const s = await activeSession(); // head 3
        const pub = await publisher(gw, s, sub);
        const { client: watcher } = await hello(gw, sub, {
          sessionId: s.sessionId,
          token: s.ownerToken,
          after: 0,
        });
        autoAck(watcher);
        await publishMany(pub, 2); // head 5
        await move(s, body);
        await assertEos(watcher, 0, 6, `call.${terminal}`);
        // the publisher, a subscriber from "latest" on, too
        await assertEos(pub, 3, 6, `call.${terminal}`);
        const late = await api(gw, 'POST', `${sessionPath(s)}/events`, s.agentToken, {
          type: 'transcript.final',
          payload: { segmentId: 'late', revision: 0, text: 'too late' },
        });
        assertError(late, 409, 'session_ended');
        assert.equal((await history(gw, s)).length, 6);
        // a new subscriber after the end replays it all, then eos
        const { client: after } = await hello(gw, sub, {
          sessionId: s.sessionId,
          token: s.agentToken,
          after: 0,
        });
        autoAck(after);
        await assertEos(after, 0, 6, `call.${terminal}`);
      });
    }
  });
}

describe('call sessions: listing', () => {
  let tenantN = 0;
  /** A fresh tenant (listings are per tenant) with tokens for each role. */
  async function tenant() {
    const tid = `list-${process.pid}-${++tenantN}`;
    return {
      tid,
      alice: await gw.token('alice', 'user', tid),
      bob: await gw.token('bob', 'user', tid),
      operator: await gw.token('ops', 'operator', tid),
      agent: await gw.token('bot', 'agent', tid),
      service: await gw.token('svc', 'service', tid),
    };
  }

  async function create(token: string, n: number): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) ids.push(await gw.createSession(token));
    return ids;
  }

  async function list(token: string, query = ''): Promise<{ status: number; body: any }> {
    return api(gw, 'GET', `/v1/call/sessions${query}`, token);
  }

  /** Every page of a listing: the sessions in order, and each page's size. */
  async function walk(
    token: string,
    limit: number,
    extra = '',
  ): Promise<{ sessions: any[]; pages: number[] }> {
    const sessions: any[] = [];
    const pages: number[] = [];
    let cursor: string | undefined;
    for (let i = 0; i < 100; i++) {
      const res = await list(token, `?limit=${limit}${extra}${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      sessions.push(...res.body.sessions);
      pages.push(res.body.sessions.length);
      cursor = res.body.nextCursor;
      if (cursor === undefined) return { sessions, pages };
      assert.equal(typeof cursor, 'string');
    }
    throw new Error('the listing does not end');
  }

  function assertNewestFirst(sessions: Array<{ createdAt: string; id: string }>): void {
    for (let i = 1; i < sessions.length; i++) {
      const [a, b] = [sessions[i - 1]!, sessions[i]!];
      assert.ok(
        a.createdAt > b.createdAt || (a.createdAt === b.createdAt && a.id < b.id),
        `newest first: ${a.createdAt} ${a.id} before ${b.createdAt} ${b.id}`,
      );
    }
  }

  it('pages through many sessions newest first: no duplicate, none missing', async () => {
    const t = await tenant();
    const ids = await create(t.alice, 45);
    let all: Array<{ createdAt: string; id: string }> = [];
    for (const limit of [7, 20, 100]) {
      const { sessions, pages } = await walk(t.alice, limit);
      all = sessions;
      assert.equal(sessions.length, 45, `limit ${limit}`);
      assert.equal(new Set(sessions.map((x) => x.id)).size, 45, 'no duplicate');
      assert.deepEqual(new Set(sessions.map((x) => x.id)), new Set(ids), 'none missing');
      assertNewestFirst(sessions);
      assert.ok(pages.every((n) => n <= limit));
    }
    // the newest comes first (the last one created, or one created in the same
    // millisecond: those are ordered by id), and the default limit is 20
    const first = await list(t.alice);
    assert.equal(first.body.sessions.length, 20);
    assert.equal(typeof first.body.nextCursor, 'string');
    assert.equal(first.body.sessions[0].id, all[0]!.id);
    const last = all.find((x) => x.id === ids.at(-1))!;
    assert.equal(all[0]!.createdAt, last.createdAt, 'the first listed was created with the last one');
  });

  it('limit is 1–100, and a cursor must be one the API returned: otherwise 400', async () => {
    const t = await tenant();
    await create(t.alice, 2);
    for (const query of [
      '?limit=101',
      '?limit=0',
      '?limit=-1',
      '?limit=abc',
      '?cursor=nope!',
      '?cursor=bm9wZQ',
    ]) {
      assertError(await list(t.alice, query), 400, 'bad_request');
    }
    assert.equal((await list(t.alice, '?limit=100')).status, 200);
    assert.equal((await list(t.alice, '?limit=1')).body.sessions.length, 1);
  });

  it('a user lists its own sessions; operators, agents and services the whole tenant; another tenant none', async () => {
    const t = await tenant();
    const alices = await create(t.alice, 3);
    const bobs = await create(t.bob, 2);
    const ids = (res: { body: any }) => new Set(res.body.sessions.map((x: any) => x.id));
    assert.deepEqual(ids(await list(t.alice)), new Set(alices));
    assert.deepEqual(ids(await list(t.bob)), new Set(bobs));
    for (const token of [t.operator, t.agent, t.service]) {
      assert.deepEqual(ids(await list(token)), new Set([...alices, ...bobs]));
    }
    // one owner's, for those who may see the tenant's
    assert.deepEqual(ids(await list(t.operator, '?owner=bob')), new Set(bobs));
    assert.deepEqual(ids(await list(t.alice, '?owner=alice')), new Set(alices));
    assertError(await list(t.alice, '?owner=bob'), 403, 'forbidden');
    // another tenant, whatever the role
    const other = await tenant();
    for (const token of [other.operator, other.alice])
      assert.deepEqual((await list(token)).body, { sessions: [] });
    assertError(await list(''), 401, 'unauthorized');
  });

  it('lists each session as it is now', async () => {
    const t = await tenant();
    const [id] = await create(t.alice, 1);
    const s: Session = { sessionId: id!, ownerToken: t.alice, agentToken: t.agent };
    await move(s, { to: 'connecting', provider: 'livekit' });
    const listed = (await list(t.alice)).body.sessions;
    assert.equal(listed.length, 1);
    assert.deepEqual(listed[0], await getSession(s));
    assert.equal(listed[0].state, 'connecting');
  });
});
