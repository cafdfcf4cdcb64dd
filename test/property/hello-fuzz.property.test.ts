/**
 * Fuzzed hellos, over both subprotocols (fast-check, real gateway): every mix of right and
 * wrong session ids, JWTs (owner, agent, another user or tenant, expired, unsigned,
 * garbage), `after` values and resume parts (a live subscriber's token, another
 * session's, a wrong epoch), now and then a frame before the hello or a stray key.
 * Whatever arrives:
 *  - the connection is welcomed (and then answers a ping), or closed with a documented
 *    code, never an internal one (1011) nor "try again" (1013: nothing is down here);
 *  - it is sent only frames the protocol defines, never an `internal` code;
 *  - a bystander on the session keeps receiving every event, once, in order.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import {
  closeAll,
  connect,
  hello,
  newSession,
  unsignedToken,
  type Frame,
  type Sub,
} from '../protocol/support.ts';
import {
  anyJson,
  assertEveryEventOnce,
  bystanderOn,
  checkAnswers,
  count,
  mostly,
  othersUnharmed,
  pongOrClose,
  RUNS,
  seqArb,
  withStrayKey,
} from './fuzz-support.ts';

/**
 * Refusals a hello may get (docs/protocol.md): 4000 malformed, 4001 bad token, 4003 not
 * this user's session, 4004 no such session (or another tenant's), 4010 resume token not
 * valid here, 4011 wrong epoch.
 */
const REFUSALS = new Set([4000, 4001, 4003, 4004, 4010, 4011]);

/** Names the arbitraries draw, swapped for the real value once the gateway runs. */
type Names = Record<string, unknown>;
const swap = (value: unknown, names: Names): unknown =>
  typeof value === 'string' && Object.hasOwn(names, value) ? names[value] : value;

const sessionIdArb = mostly(
  fc.constantFrom('@session', '@session', '@otherTenantSession', '@unknownSession'),
  anyJson,
);
const jwtArb = mostly(
  fc.constantFrom('@owner', '@agent', '@otherUser', '@otherTenant', '@expired', '@unsigned', 'x.y.z', ''),
  anyJson,
);
/** A fresh subscription: a JWT and where to start. */
const freshHello = fc.record(
  {
    op: fc.constant('hello'),
    sessionId: sessionIdArb,
    token: jwtArb,
    after: mostly(
      fc.oneof(fc.constant('latest'), fc.integer({ min: 0, max: 30 })),
      fc.oneof(fc.constant(-1), fc.double(), fc.string({ maxLength: 5 }), anyJson),
    ),
  },
  { requiredKeys: ['op', 'sessionId', 'token'] },
);
/** A resume: a subscriber's token (sometimes a JWT beside it). */
const resumeHello = fc.record(
  {
    op: fc.constant('hello'),
    sessionId: sessionIdArb,
    token: jwtArb,
    resume: mostly(
      fc.record(
        {
          token: mostly(fc.constantFrom('@resume', '@resume', '@otherResume', 'garbage'), anyJson),
          lastSeq: seqArb,
          epoch: mostly(fc.constantFrom('@epoch', '@epoch', '0123456789abcdef'), anyJson),
        },
        { requiredKeys: ['token'] },
      ),
      anyJson,
    ),
  },
  { requiredKeys: ['op', 'sessionId', 'resume'] },
);
const helloArb = withStrayKey(fc.oneof(freshHello, resumeHello));

/** What goes over the socket: the hello, sometimes behind a frame that may not come first. */
const openingArb = fc.record({
  before: fc.oneof(
    { weight: 8, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: fc.constantFrom<Frame>({ op: 'ping' }, { op: 'ack', seq: 1 }, { op: 'bye' }) },
  ),
  hello: helloArb,
});

function resolveHello(frame: Record<string, unknown>, names: Names): Frame {
  const out: Frame = { ...frame };
  for (const key of ['sessionId', 'token'] as const) if (key in out) out[key] = swap(out[key], names);
  const resume = out.resume;
  if (resume && typeof resume === 'object' && !Array.isArray(resume)) {
    const r: Record<string, unknown> = { ...(resume as Record<string, unknown>) };
    for (const key of ['token', 'epoch'] as const) if (key in r) r[key] = swap(r[key], names);
    out.resume = r;
  }
  return out;
}

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway();
});
after(async () => {
  await closeAll();
  await gw.stop();
});

describe('fuzzed hellos', () => {
  for (const sub of ['json', 'msgpack'] as Sub[]) {
    it(`[${sub}] are welcomed or refused with a documented code, and hurt no one else`, async (t) => {
      const s = await newSession(gw);
      const other = await newSession(gw);
      const { pub, bystander } = await bystanderOn(gw, s, sub);
      // Subscribers whose resume tokens the fuzz uses: taking one over supersedes only it.
      const resumable = await hello(gw, sub, { sessionId: s.sessionId, token: s.agentToken });
      const otherResumable = await hello(gw, sub, { sessionId: other.sessionId, token: other.ownerToken });
      const otherTenantToken = await gw.token('user-elsewhere', 'user', 'globex');
      const otherTenantSession = await gw.createSession(otherTenantToken);
      const names: Names = {
        '@session': s.sessionId,
        '@otherTenantSession': otherTenantSession,
        '@unknownSession': 'cs_does_not_exist',
        '@owner': s.ownerToken,
        '@agent': s.agentToken,
        '@otherUser': other.ownerToken,
        '@otherTenant': otherTenantToken,
        '@expired': await gw.token('user-expired', 'agent', 'acme', -60),
        '@unsigned': unsignedToken({ sub: 'agent-x', tid: 'acme', role: 'agent' }),
        '@resume': resumable.welcome.resumeToken,
        '@otherResume': otherResumable.welcome.resumeToken,
        '@epoch': resumable.welcome.epoch,
      };
      let marks = 0;
      const outcomes: Record<string, number> = {};
      const answers: Record<string, number> = {};

      await fc.assert(
        fc.asyncProperty(openingArb, async (opening) => {
          const victim = await connect(gw, sub);
          if (opening.before) victim.send(opening.before);
          victim.send(resolveHello(opening.hello, names));
          const n = `mark-${++marks}`;
          // A ping right behind the hello is answered after the welcome (pipelining).
          const pong = await pongOrClose(victim, n);
          const outcome = pong ? 'welcomed' : String(victim.closeInfo!.code);
          count(outcomes, outcome);
          if (pong) {
            assert.ok(
              victim.frames.some((f) => f.op === 'welcome'),
              'a pong without a welcome',
            );
          } else {
            const { code, reason } = victim.closeInfo!;
            assert.ok(REFUSALS.has(code), `closed with ${code} (${reason})`);
          }
          await othersUnharmed(pub, bystander, n);
          checkAnswers(victim, answers);
          victim.ws.terminate();
        }),
        { numRuns: RUNS },
      );

      assertEveryEventOnce(bystander);
      t.diagnostic(`outcomes ${JSON.stringify(outcomes)}; answers ${JSON.stringify(answers)}`);
      // The runs reached welcomes, resumes and refusals alike.
      assert.ok((outcomes.welcomed ?? 0) > 0, `no hello was welcomed: ${JSON.stringify(outcomes)}`);
      assert.ok((outcomes['4000'] ?? 0) > 0, `no hello was malformed: ${JSON.stringify(outcomes)}`);
    });
  }
});
