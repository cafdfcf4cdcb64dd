/**
 * PROTOCOL.md §7: the HTTP surface the realtime tests rely on (sessions, history pages,
 * ingest with the same rules as `pub`, JSON errors), plus §1 legacy-key normalization
 * and §6 tenant isolation as seen over HTTP.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import {
  api,
  closeAll,
  hello,
  history,
  newSession,
  publisher,
  publishMany,
  waitSeq,
  type Session,
} from './support.ts';

const MAX_BODY = 2048;
const TS = '2026-11-28T21:33:16.123Z';

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway({ MAX_HTTP_BODY_BYTES: String(MAX_BODY) });
});
afterEach(closeAll);
after(() => gw.stop());

function assertError(res: { status: number; body: any }, status: number, code: string): void {
  assert.equal(
    res.status,
    status,
    `expected ${status} ${code}, got ${res.status} ${JSON.stringify(res.body)}`,
  );
  assert.equal(typeof res.body, 'object', 'errors are JSON');
  assert.equal(typeof res.body.error, 'object', `{ error: { code, message } }: ${JSON.stringify(res.body)}`);
  assert.equal(res.body.error.code, code);
  assert.equal(typeof res.body.error.message, 'string');
}

const eventsPath = (s: Session): string => `/v1/call/sessions/${s.sessionId}/events`;
const transcript = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  type: 'transcript.final',
  payload: { segmentId: 'seg', revision: 0, text: 'hello' },
  ...extra,
});

describe('§7 sessions', () => {
  it('§7 POST /v1/call/sessions: 201 with id and state', async () => {
    const token = await gw.token('http-owner-1');
    const res = await api(gw, 'POST', '/v1/call/sessions', token);
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(typeof res.body.id, 'string');
    assert.ok(res.body.id.length > 0);
    assert.equal(typeof res.body.state, 'string');
  });

  it('§7 POST /v1/call/sessions: the same Idempotency-Key returns the same session (also concurrently)', async () => {
    const token = await gw.token('http-owner-2');
    const first = await api(gw, 'POST', '/v1/call/sessions', token, undefined, {
      'idempotency-key': 'key-a',
    });
    assert.equal(first.status, 201);
    const again = await api(gw, 'POST', '/v1/call/sessions', token, undefined, {
      'idempotency-key': 'key-a',
    });
    assert.ok(again.status === 201 || again.status === 200, `status ${again.status}`);
    assert.equal(again.body.id, first.body.id);
    const other = await api(gw, 'POST', '/v1/call/sessions', token, undefined, {
      'idempotency-key': 'key-b',
    });
    assert.notEqual(other.body.id, first.body.id, 'another key, another session');
    const concurrent = await Promise.all(
      Array.from({ length: 5 }, () =>
        api(gw, 'POST', '/v1/call/sessions', token, undefined, { 'idempotency-key': 'key-c' }),
      ),
    );
    assert.equal(new Set(concurrent.map((r) => r.body.id)).size, 1, 'one session for one key');
    // The same key with another request: 409, and the first session stays as it was.
    const withMeta = { metadata: { topic: 'intake', lang: 'en' } };
    const d1 = await api(gw, 'POST', '/v1/call/sessions', token, withMeta, { 'idempotency-key': 'key-d' });
    assert.equal(d1.status, 201);
    const reordered = { metadata: { lang: 'en', topic: 'intake' } };
    const d2 = await api(gw, 'POST', '/v1/call/sessions', token, reordered, { 'idempotency-key': 'key-d' });
    assert.equal(d2.body.id, d1.body.id, 'the same metadata in another key order is the same request');
    for (const body of [
      { metadata: { topic: 'billing', lang: 'en' } },
      { metadata: { topic: 'intake' } },
      undefined,
    ]) {
      const conflict = await api(gw, 'POST', '/v1/call/sessions', token, body, {
        'idempotency-key': 'key-d',
      });
      assert.equal(conflict.status, 409, JSON.stringify(body));
      assert.equal(conflict.body.error.code, 'idempotency_conflict');
    }
    const none = await api(gw, 'POST', '/v1/call/sessions', token, withMeta, { 'idempotency-key': 'key-a' });
    assert.equal(none.status, 409, 'key-a was used without metadata');
    const res = await api(gw, 'GET', `/v1/call/sessions/${String(concurrent[0]!.body.id)}/events`, token);
    assert.deepEqual(
      res.body.events.map((e: any) => e.event.type),
      ['call.created'],
      'created once',
    );
  });
});

describe('§7 history', () => {
  it('§7 GET events: pages by after and limit, with headSeq and epoch', async () => {
    const s = await newSession(gw);
    const pub = await publisher(gw, s);
    await publishMany(pub, 9); // head 10
    const { welcome } = await hello(gw, 'json', { sessionId: s.sessionId, token: s.ownerToken });
    const page = async (query: string): Promise<any> => {
      const res = await api(gw, 'GET', `${eventsPath(s)}${query}`, s.ownerToken);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.headSeq, 10);
      assert.equal(res.body.epoch, welcome.epoch, 'the same epoch as the realtime stream');
      return res.body;
    };
    const p1 = await page('?after=0&limit=4');
    assert.deepEqual(
      p1.events.map((e: any) => e.seq),
      [1, 2, 3, 4],
    );
    assert.equal(p1.events[0].event.type, 'call.created');
    for (const e of p1.events) {
      assert.deepEqual(Object.keys(e.event).sort(), [
        'eventId',
        'payload',
        'schemaVersion',
        'sessionId',
        'ts',
        'type',
      ]);
    }
    assert.deepEqual(
      (await page('?after=4&limit=4')).events.map((e: any) => e.seq),
      [5, 6, 7, 8],
    );
    assert.deepEqual(
      (await page('?after=8&limit=4')).events.map((e: any) => e.seq),
      [9, 10],
    );
    assert.deepEqual((await page('?after=10&limit=4')).events, []);
    assert.deepEqual(
      (await page('')).events.map((e: any) => e.seq),
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
      'default: from the start',
    );
    assertError(await api(gw, 'GET', `${eventsPath(s)}?after=abc`, s.ownerToken), 400, 'bad_request');
    assertError(await api(gw, 'GET', `${eventsPath(s)}?limit=0`, s.ownerToken), 400, 'bad_request');
  });
});

describe('§7 ingest (same rules as pub)', () => {
  it('§7 POST events: a valid event gets its seq and reaches realtime subscribers', async () => {
    const s = await newSession(gw);
    const { client } = await hello(gw, 'msgpack', { sessionId: s.sessionId, token: s.ownerToken });
    const res = await api(gw, 'POST', eventsPath(s), s.agentToken, transcript({ eventId: 'http-1' }));
    assert.ok(res.status === 201 || res.status === 200, JSON.stringify(res.body));
    assert.equal(res.body.seq, 2);
    const ev = await waitSeq(client, 2);
    assert.equal(ev.event.eventId, 'http-1');
    assert.equal(ev.event.sessionId, s.sessionId);
  });

  it('§7 POST events: an invalid event is 400 invalid_event', async () => {
    const s = await newSession(gw);
    const bad = [
      transcript({ payload: { segmentId: 'seg', revision: 0 } }),
      transcript({ type: 'transcript.nope' }),
      transcript({ foo: 1 }),
      transcript({ eventId: 'bad id' }),
      transcript({ ts: '28/11/2026' }),
      transcript({ schemaVersion: 2 }),
      transcript({ sessionId: 'cs_someone_else' }),
      [transcript()],
    ];
    for (const body of bad) {
      assertError(await api(gw, 'POST', eventsPath(s), s.agentToken, body), 400, 'invalid_event');
    }
    assert.equal((await history(gw, s)).length, 1, 'nothing was appended');
  });

  it('§7 POST events: a type the role may not publish is 403 forbidden_type', async () => {
    const s = await newSession(gw);
    assertError(await api(gw, 'POST', eventsPath(s), s.ownerToken, transcript()), 403, 'forbidden_type');
    assertError(
      await api(gw, 'POST', eventsPath(s), s.agentToken, { type: 'call.ended', payload: { reason: 'x' } }),
      403,
      'forbidden_type',
    );
    const operator = await gw.token('op-1', 'operator', 'acme');
    assertError(
      await api(gw, 'POST', eventsPath(s), operator, {
        type: 'orchestration.action.requested',
        payload: { actionId: 'a1', action: 'calendar.create_event' },
      }),
      403,
      'forbidden_type',
    );
    const user = await api(gw, 'POST', eventsPath(s), s.ownerToken, {
      type: 'orchestration.action.requested',
      payload: { actionId: 'a2', action: 'calendar.create_event' },
    });
    assert.ok(user.status === 201 || user.status === 200, JSON.stringify(user.body));
    const types = (await history(gw, s)).map((e) => e.event.type);
    assert.deepEqual(types, ['call.created', 'orchestration.action.requested']);
  });

  it('§2/§7 POST events: a duplicate eventId returns the original seq and appends nothing', async () => {
    const s = await newSession(gw);
    const first = await api(gw, 'POST', eventsPath(s), s.agentToken, transcript({ eventId: 'dup-1' }));
    await api(gw, 'POST', eventsPath(s), s.agentToken, transcript({ eventId: 'other' }));
    const again = await api(gw, 'POST', eventsPath(s), s.agentToken, transcript({ eventId: 'dup-1' }));
    assert.ok(again.status === 200 || again.status === 201, JSON.stringify(again.body));
    assert.equal(again.body.seq, first.body.seq);
    const concurrent = await Promise.all(
      Array.from({ length: 4 }, () =>
        api(gw, 'POST', eventsPath(s), s.agentToken, transcript({ eventId: 'dup-2' })),
      ),
    );
    assert.equal(new Set(concurrent.map((r) => r.body.seq)).size, 1);
    const ids = (await history(gw, s)).map((e) => e.event.eventId);
    assert.deepEqual(ids.slice(1), ['dup-1', 'other', 'dup-2']);
  });

  it('§1 legacy keys: timestamp and version are accepted and normalized to ts and schemaVersion', async () => {
    const s = await newSession(gw);
    const { eventId: _drop, ...base } = transcript();
    const res = await api(gw, 'POST', eventsPath(s), s.agentToken, {
      ...base,
      eventId: 'legacy-1',
      timestamp: TS,
      version: 1,
    });
    assert.ok(res.status === 201 || res.status === 200, JSON.stringify(res.body));
    const stored = (await history(gw, s)).find((e) => e.event.eventId === 'legacy-1')!;
    assert.equal(stored.event.ts, TS);
    assert.equal(stored.event.schemaVersion, 1);
    assert.deepEqual(Object.keys(stored.event).sort(), [
      'eventId',
      'payload',
      'schemaVersion',
      'sessionId',
      'ts',
      'type',
    ]);
    // both keys with the same value: accepted; with different values: rejected
    const same = await api(gw, 'POST', eventsPath(s), s.agentToken, {
      ...base,
      eventId: 'legacy-2',
      ts: TS,
      timestamp: TS,
    });
    assert.ok(same.status === 201 || same.status === 200, JSON.stringify(same.body));
    assertError(
      await api(gw, 'POST', eventsPath(s), s.agentToken, {
        ...base,
        eventId: 'legacy-3',
        ts: TS,
        timestamp: '2026-11-28T21:33:17.000Z',
      }),
      400,
      'invalid_event',
    );
    assertError(
      await api(gw, 'POST', eventsPath(s), s.agentToken, {
        ...base,
        eventId: 'legacy-4',
        schemaVersion: 1,
        version: 2,
      }),
      400,
      'invalid_event',
    );
  });
});

describe('§7 errors', () => {
  it('§7 errors: no or a bad bearer token is 401 with { error: { code, message } }', async () => {
    const s = await newSession(gw);
    assertError(await api(gw, 'POST', '/v1/call/sessions'), 401, 'unauthorized');
    assertError(await api(gw, 'GET', eventsPath(s)), 401, 'unauthorized');
    assertError(await api(gw, 'POST', eventsPath(s), undefined, transcript()), 401, 'unauthorized');
    assertError(await api(gw, 'GET', eventsPath(s), 'not-a-jwt'), 401, 'unauthorized');
    const expired = await gw.token('agent-x', 'agent', 'acme', -60);
    assertError(await api(gw, 'GET', eventsPath(s), expired), 401, 'unauthorized');
  });

  it('§6/§7 errors: another tenant’s session is 404 session_not_found, never 403', async () => {
    const s = await newSession(gw);
    const foreign = await gw.token('agent-x', 'agent', 'globex');
    assertError(await api(gw, 'GET', `/v1/call/sessions/${s.sessionId}`, foreign), 404, 'session_not_found');
    assertError(await api(gw, 'GET', eventsPath(s), foreign), 404, 'session_not_found');
    assertError(await api(gw, 'POST', eventsPath(s), foreign, transcript()), 404, 'session_not_found');
    assertError(
      await api(gw, 'POST', `/v1/call/sessions/${s.sessionId}/transitions`, foreign, {
        to: 'failed',
        reason: 'x',
      }),
      404,
      'session_not_found',
    );
    assertError(
      await api(gw, 'GET', '/v1/call/sessions/cs_unknown/events', s.agentToken),
      404,
      'session_not_found',
    );
    const stranger = await gw.token('stranger', 'user', 'acme');
    assertError(await api(gw, 'GET', eventsPath(s), stranger), 403, 'forbidden');
    assert.equal((await history(gw, s)).length, 1);
  });

  it('§7 errors: a body that is not JSON is 400 bad_request', async () => {
    const s = await newSession(gw);
    assertError(
      await api(gw, 'POST', eventsPath(s), s.agentToken, '{"type": "transcript.final",'),
      400,
      'bad_request',
    );
    assertError(await api(gw, 'POST', '/v1/call/sessions', s.ownerToken, '{nope'), 400, 'bad_request');
  });

  it('§7 errors: a body larger than MAX_HTTP_BODY_BYTES is 413', async () => {
    const s = await newSession(gw);
    const big = transcript({ payload: { segmentId: 'seg', revision: 0, text: 'x'.repeat(MAX_BODY * 2) } });
    assertError(await api(gw, 'POST', eventsPath(s), s.agentToken, big), 413, 'payload_too_large');
    assert.equal((await history(gw, s)).length, 1);
  });

  it('§7 errors: a path segment that is not valid percent-encoding is 400 bad_request, and the gateway serves on', async () => {
    // decodeURIComponent throws on it, and a throw inside a uWS handler ended the process
    const s = await newSession(gw);
    assertError(await api(gw, 'GET', '/v1/call/sessions/%E0%A4%A'), 400, 'bad_request');
    assertError(await api(gw, 'GET', '/v1/call/sessions/%E0%A4%A/events', s.agentToken), 400, 'bad_request');
    assertError(
      await api(gw, 'POST', '/v1/call/sessions/%ZZ/events', s.agentToken, transcript()),
      400,
      'bad_request',
    );
    assert.equal((await api(gw, 'GET', `/v1/call/sessions/${s.sessionId}`, s.ownerToken)).status, 200);
  });

  it('§7 errors: an unknown route is 404 with a JSON error', async () => {
    const token = await gw.token('x');
    assertError(await api(gw, 'GET', '/nope'), 404, 'not_found');
    assertError(await api(gw, 'POST', '/v1/call/nope', token, {}), 404, 'not_found');
    assertError(await api(gw, 'GET', '/v1/call/sessions/a/b/c', token), 404, 'not_found');
  });
});
