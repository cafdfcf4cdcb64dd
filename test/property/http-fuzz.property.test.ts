/**
 * Fuzzed HTTP requests (fast-check, real gateway): every route of the HTTP surface with
 * right and wrong methods, session ids, bearer tokens, query strings, content types and
 * bodies (near-valid envelopes and transitions, any JSON, malformed JSON, bodies over
 * MAX_HTTP_BODY_BYTES). Whatever is asked:
 *  - the answer is a success, or an error of the registry in the documented shape
 *    (`{ error: { code, message } }`, the status that code has), never `internal`;
 *  - a WebSocket subscriber of another session keeps receiving every event, once, in
 *    order, and so does the gateway's HTTP history of it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { ErrorCodes } from '../../src/errors/codes.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { closeAll, history, newSession, unsignedToken } from '../protocol/support.ts';
import {
  anyJson,
  assertEveryEventOnce,
  bystanderOn,
  count,
  mostly,
  othersUnharmed,
  RUNS,
  seqArb,
  withStrayKey,
} from './fuzz-support.ts';

const MAX_HTTP_BODY_BYTES = 4096;

/** Names the arbitraries draw, swapped for the real value once the gateway runs. */
type Names = Record<string, string>;

/**
 * A session id in a path. Requests that may end a session (transitions) never name the
 * bystander's; the others sometimes do (it may get events, never lose any).
 */
const sessionRef = (bystander: boolean): fc.Arbitrary<unknown> =>
  mostly(
    fc.constantFrom('@target', '@target', '@fresh', '@otherTenantSession', 'cs_does_not_exist'),
    fc.oneof(
      fc.constantFrom(
        '..',
        '%00',
        '%2F',
        'cs_%E2%80%AE',
        'a'.repeat(300),
        ' ',
        bystander ? '@bystander' : '@fresh',
      ),
      fc.string({ maxLength: 12 }).map(encodeURIComponent),
    ),
  );
const tokenRef = mostly(
  fc.constantFrom('@owner', '@agent', '@operator', '@service', '@otherTenant', '@stranger'),
  fc.constantFrom('@expired', '@unsigned', 'x.y.z', '', undefined),
);
/** A query string: mostly the route's own parameters, with small, odd or no numbers. */
const query = (keys: string[]): fc.Arbitrary<string> =>
  fc
    .array(
      fc.tuple(
        keys.length > 0
          ? mostly(fc.constantFrom(...keys), fc.string({ maxLength: 6 }))
          : fc.string({ maxLength: 6 }),
        fc.oneof(
          { weight: 3, arbitrary: fc.integer({ min: -2, max: 3 }).map(String) },
          { weight: 1, arbitrary: fc.integer({ min: 4, max: 2000 }).map(String) },
          {
            weight: 2,
            arbitrary: fc.constantFrom('', 'latest', '1e3', '0x10', '9007199254740993', 'NaN', '%ZZ', '1.5'),
          },
          { weight: 1, arbitrary: fc.string({ maxLength: 8 }).map(encodeURIComponent) },
        ),
      ),
      { maxLength: 3 },
    )
    .map((params) => {
      const parts = params.map(([k, v]) => `${encodeURIComponent(String(k))}=${v}`);
      return parts.length > 0 ? `?${parts.join('&')}` : '';
    });

const envelope = withStrayKey(
  fc.record(
    {
      eventId: mostly(fc.stringMatching(/^[A-Za-z0-9._:-]{1,24}$/), anyJson),
      type: mostly(
        fc.constantFrom('transcript.final', 'transcript.partial', 'orchestration.action.requested'),
        fc.oneof(fc.constantFrom('call.ended', 'billing.usage', 'nope'), anyJson),
      ),
      payload: mostly(
        fc.record(
          {
            segmentId: mostly(fc.string({ minLength: 1, maxLength: 8 }), anyJson),
            revision: mostly(fc.nat(4), anyJson),
            text: mostly(fc.string({ maxLength: 30 }), anyJson),
          },
          { requiredKeys: ['segmentId', 'revision', 'text'] },
        ),
        anyJson,
      ),
      ts: mostly(
        fc.date({ min: new Date(0), max: new Date(4e12), noInvalidDate: true }).map((d) => d.toISOString()),
        anyJson,
      ),
      timestamp: fc.constant('2026-11-28T21:33:16.123Z'),
      schemaVersion: mostly(fc.constant(1), anyJson),
      version: mostly(fc.constant(1), anyJson),
      sessionId: fc.constantFrom('@target', 'cs_other'),
    },
    { requiredKeys: ['eventId', 'type', 'payload'] },
  ),
);
const transition = withStrayKey(
  fc.record(
    {
      to: mostly(fc.constantFrom('connecting', 'active', 'ending', 'ended', 'failed', 'created'), anyJson),
      provider: mostly(fc.constant('livekit'), anyJson),
      providerRoomId: mostly(fc.string({ minLength: 1, maxLength: 10 }), anyJson),
      providerParticipantId: fc.string({ maxLength: 10 }),
      reason: mostly(fc.string({ maxLength: 20 }), anyJson),
      expectedVersion: seqArb,
    },
    { requiredKeys: ['to'] },
  ),
);
const bodyArb = (shaped: fc.Arbitrary<unknown>): fc.Arbitrary<string | undefined> =>
  fc.oneof(
    { weight: 8, arbitrary: shaped.map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: anyJson.map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.constantFrom('{"eventId":', '', 'null', '[]', '\u0000', '{"a":1}x') },
    { weight: 1, arbitrary: fc.constant(undefined) },
    {
      weight: 1,
      arbitrary: fc
        .integer({ min: MAX_HTTP_BODY_BYTES - 40, max: MAX_HTTP_BODY_BYTES * 3 })
        .map((n) =>
          JSON.stringify({ eventId: 'big', type: 'transcript.final', payload: { text: 'x'.repeat(n) } }),
        ),
    },
  );

interface Request {
  method: string;
  path: string;
  token: string | undefined;
  contentType: string | undefined;
  idempotencyKey: string | undefined;
  body: string | undefined;
}

/** One route of the surface, its method, and what a request to it looks like. */
const route = (
  method: string,
  path: (id: string) => string,
  queryKeys: string[],
  body: fc.Arbitrary<string | undefined>,
  bystander = true,
): fc.Arbitrary<Omit<Request, 'token' | 'contentType' | 'idempotencyKey'>> =>
  fc
    .record({
      method: mostly(fc.constant(method), fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH')),
      id: sessionRef(bystander),
      query: query(queryKeys),
      body,
    })
    .map((r) => ({ method: r.method as string, path: path(r.id as string) + r.query, body: r.body }));

const requestArb: fc.Arbitrary<Request> = fc
  .tuple(
    fc.oneof(
      route(
        'POST',
        () => '/v1/call/sessions',
        [],
        bodyArb(fc.record({ metadata: anyJson }, { requiredKeys: [] })),
      ),
      route('GET', () => '/v1/call/sessions', ['limit', 'cursor', 'owner'], fc.constant(undefined)),
      route('GET', (id) => `/v1/call/sessions/${id}`, [], fc.constant(undefined)),
      route('GET', (id) => `/v1/call/sessions/${id}/events`, ['after', 'limit'], fc.constant(undefined)),
      route('POST', (id) => `/v1/call/sessions/${id}/events`, [], bodyArb(envelope)),
      route('POST', (id) => `/v1/call/sessions/${id}/events`, [], bodyArb(envelope)),
      route('POST', (id) => `/v1/call/sessions/${id}/transitions`, [], bodyArb(transition), false),
      route('POST', (id) => `/v1/call/sessions/${id}/livekit-token`, [], bodyArb(anyJson)),
      route('POST', () => '/v1/webhooks/livekit', [], bodyArb(anyJson)),
      route('GET', () => '/v1/inspector/sessions', ['limit', 'cursor'], fc.constant(undefined)),
      route('GET', (id) => `/v1/inspector/sessions/${id}`, [], fc.constant(undefined)),
      route('GET', (id) => `/v1/${id}`, [], fc.constant(undefined)),
    ),
    tokenRef,
    mostly(
      fc.constant('application/json'),
      fc.constantFrom('text/plain', 'application/json; charset=utf-8', 'APPLICATION/JSON', '', undefined),
    ),
    fc.option(fc.string({ maxLength: 20 }), { freq: 4 }),
  )
  .map(([r, token, contentType, key]) => ({
    ...r,
    token: token as string | undefined,
    contentType: contentType as string | undefined,
    idempotencyKey: key ?? undefined,
  }));

function swapIn(text: string, names: Names): string {
  return text.replace(/@[A-Za-z]+/g, (name) => names[name] ?? name);
}

async function send(gw: TestGateway, req: Request, names: Names): Promise<{ status: number; text: string }> {
  const headers: Record<string, string> = { connection: 'close' };
  const token = req.token === undefined ? undefined : swapIn(req.token, names);
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  if (req.contentType !== undefined) headers['content-type'] = req.contentType;
  if (req.idempotencyKey !== undefined) headers['idempotency-key'] = req.idempotencyKey;
  const hasBody = req.body !== undefined && req.method !== 'GET';
  const res = await fetch(`${gw.url}${swapIn(req.path, names)}`, {
    method: req.method,
    headers,
    ...(hasBody ? { body: swapIn(req.body!, names) } : {}),
  });
  return { status: res.status, text: await res.text() };
}

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway({ MAX_HTTP_BODY_BYTES: String(MAX_HTTP_BODY_BYTES), CONSOLE_ENABLED: 'true' });
});
after(async () => {
  await closeAll();
  await gw.stop();
});

describe('fuzzed HTTP requests', () => {
  it('get a success or a registered error in the documented shape, and hurt no one else', async (t) => {
    const bystanderSession = await newSession(gw);
    const { pub, bystander } = await bystanderOn(gw, bystanderSession);
    const target = await newSession(gw);
    const otherTenantToken = await gw.token('user-elsewhere', 'user', 'globex');
    const names: Names = {
      '@target': target.sessionId,
      '@bystander': bystanderSession.sessionId,
      '@otherTenantSession': await gw.createSession(otherTenantToken),
      '@owner': target.ownerToken,
      '@agent': target.agentToken,
      '@operator': await gw.token('ops', 'operator', 'acme'),
      '@service': await gw.token('svc', 'service', 'acme'),
      '@otherTenant': otherTenantToken,
      '@stranger': await gw.token('someone-else', 'user', 'acme'),
      '@expired': await gw.token('late', 'agent', 'acme', -60),
      '@unsigned': unsignedToken({ sub: 'agent-x', tid: 'acme', role: 'agent' }),
    };
    let marks = 0;
    const statuses: Record<string, number> = {};

    await fc.assert(
      fc.asyncProperty(requestArb, async (req) => {
        // A fresh session per run for the requests that name it: a run may end its target.
        names['@fresh'] = await gw.createSession(target.ownerToken);
        const { status, text } = await send(gw, req, names);
        let body: any;
        try {
          body = text === '' ? undefined : JSON.parse(text);
        } catch {
          body = undefined;
        }
        const code = status >= 400 ? String(body?.error?.code) : undefined;
        count(statuses, code ? `${status} ${code}` : status);
        assert.ok(status >= 200 && status < 600, `status ${status}`);
        if (status >= 400) {
          assert.ok(code !== undefined && code in ErrorCodes, `${status} with body ${text.slice(0, 200)}`);
          assert.equal(typeof body.error.message, 'string', text.slice(0, 200));
          assert.notEqual(code, 'internal', `internal: ${text.slice(0, 200)}`);
          assert.equal(
            status,
            ErrorCodes[code as keyof typeof ErrorCodes].status,
            `${code} answered ${status}`,
          );
        }
        await othersUnharmed(pub, bystander, `mark-${++marks}`);
      }),
      // Requests are cheap and the surface is wide: five times the other fuzz properties' runs.
      { numRuns: RUNS * 5 },
    );

    assertEveryEventOnce(bystander);
    const stored = await history(gw, bystanderSession);
    assert.deepEqual(
      stored.map((e: { seq: number }) => e.seq),
      Array.from({ length: stored.length }, (_, i) => i + 1),
      'the history is contiguous',
    );
    t.diagnostic(`statuses ${JSON.stringify(statuses)}`);
    assert.ok(
      Object.keys(statuses).some((s) => s.startsWith('2')),
      `no request succeeded: ${JSON.stringify(statuses)}`,
    );
    assert.ok(
      (statuses['400 bad_request'] ?? 0) + (statuses['400 invalid_event'] ?? 0) > 0,
      'no request was malformed',
    );
  });
});
