/**
 * The anti-entropy head audit (src/session/head-audit.ts, HEAD_AUDIT_MS). A head notice
 * lost while the pub/sub connection stays up (so no resync follows) would hold a quiet
 * session's subscribers on a node back until the session's next event.
 *
 * Two gateway nodes on one private redis-server. Node A runs the real redis engine
 * behind a stand-in that drops the head notices it receives while told to: the loss
 * itself, nothing else. A's clock can jump ahead, so its quiet periods take no sleeping.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { createEngine } from '../../src/app.ts';
import { loadConfig } from '../../src/config/load.ts';
import { CloseCodes } from '../../src/protocol/close-codes.ts';
import type { Engine, SessionListener } from '../../src/engine/engine.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { systemClock, type Clock } from '../../src/util/clock.ts';
import { startTestGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway.ts';
import { until } from '../helpers/until.ts';
import {
  autoAck,
  closeAll,
  expectClose,
  hello,
  newSession,
  publish,
  publisher,
  seqs,
  transcriptPub,
  waitSeq,
  type Session,
} from '../protocol/support.ts';
import type { TestClient } from '../helpers/ws-client.ts';

/** Real time plus a jump the test makes: timers and JWTs keep working. */
class JumpClock implements Clock {
  offset = 0;
  now(): number {
    return Date.now() + this.offset;
  }
}

/** What the stand-in does to node A's engine. */
interface Faults {
  /** Drop head notices (takeovers and resyncs still pass). */
  deaf: boolean;
  dropped: number;
  /** Fail peekHeads, as when Redis is away. */
  peekFails: boolean;
  /** Sessions whose heads peekHeads did not read (null), as when their cluster master is stopped. */
  unread: Set<string>;
}

let redis: RedisServer;
let prefix = 0;
const nodes: TestGateway[] = [];

before(async () => {
  redis = await RedisServer.start({ aof: false });
});
afterEach(async () => {
  await closeAll();
  await Promise.allSettled(nodes.splice(0).map((n) => n.stop()));
});
after(() => redis.stop());

/** Node A (audited, faulty engine, jumping clock) and node B (plain), one logical gateway. */
async function pair(auditMs: number) {
  const env = { REDIS_URL: redis.url, REDIS_KEY_PREFIX: `ha${++prefix}:` };
  const { config } = loadConfig({ ...env, AUTH_JWT_SECRET: TEST_SECRET });
  const faults: Faults = { deaf: false, dropped: 0, peekFails: false, unread: new Set() };
  const engine = faulty(await createEngine(config, systemClock, silentLogger()), faults);
  const clock = new JumpClock();
  const a = await startTestGateway(
    { ...env, NODE_ID: 'a', HEAD_AUDIT_MS: String(auditMs) },
    { engine, clock },
  );
  nodes.push(a);
  const b = await startTestGateway({ ...env, NODE_ID: 'b' });
  nodes.push(b);
  return { a, b, faults, clock };
}

function faulty(inner: Engine, faults: Faults): Engine {
  return new Proxy(inner, {
    get(target, key) {
      if (key === 'watch') {
        return (sessionId: string, listener: SessionListener) =>
          target.watch(sessionId, (notice) => {
            if (faults.deaf && notice.kind === 'head') return void faults.dropped++;
            listener(notice);
          });
      }
      if (key === 'peekHeads' && faults.peekFails) {
        return () => Promise.reject(new Error('stand-in: Redis is away'));
      }
      if (key === 'peekHeads' && faults.unread.size > 0) {
        return async (ids: readonly string[]) =>
          (await target.peekHeads(ids)).map((head, i) => (faults.unread.has(ids[i]!) ? null : head));
      }
      const value = Reflect.get(target, key, target) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

async function counter(
  gw: TestGateway,
  name: 'remoteNotices' | 'headAudits',
  kind?: string,
): Promise<number> {
  const { values } = await gw.gateway.metrics[name].get();
  return values.find((v) => kind === undefined || v.labels['kind'] === kind)?.value ?? 0;
}
const antiEntropy = (gw: TestGateway): Promise<number> => counter(gw, 'remoteNotices', 'anti_entropy');
const audits = (gw: TestGateway): Promise<number> => counter(gw, 'headAudits');

/** A session with an acking subscriber on A that has its first event (seq 1, call.created). */
async function watched(a: TestGateway): Promise<{ session: Session; sub: TestClient }> {
  const session = await newSession(a);
  const { client: sub } = await hello(a, 'json', {
    sessionId: session.sessionId,
    token: session.ownerToken,
    after: 0,
  });
  autoAck(sub);
  await waitSeq(sub, 1);
  return { session, sub };
}

/** Publishes on B while A drops head notices; resolves once A has dropped that one. */
async function publishUnheard(b: TestGateway, session: Session, faults: Faults): Promise<number> {
  const pub = await publisher(b, session);
  const droppedBefore = faults.dropped;
  faults.deaf = true;
  const answer = await publish(pub, transcriptPub('unheard'));
  assert.equal(answer.op, 'puback', JSON.stringify(answer));
  await until(() => faults.dropped > droppedBefore, 5000, 'A to receive and drop the head notice');
  return answer.seq as number;
}

describe('anti-entropy head audit', () => {
  it('a quiet session whose head notice was lost gets the event from the next audit', async () => {
    const { a, b, faults, clock } = await pair(30_000);
    const { session, sub } = await watched(a);
    const seq = await publishUnheard(b, session, faults);
    assert.equal(seq, 2);
    // the loss is real: nothing else brings the event to A
    await assert.rejects(waitSeq(sub, 2, 300));
    clock.offset += 30_000;
    await a.gateway.headAudit.round();
    await waitSeq(sub, 2, 5000);
    assert.deepEqual(seqs(sub), [1, 2]);
    assert.equal(await antiEntropy(a), 1);
  });

  it('without it (HEAD_AUDIT_MS=0) the event waits for the session’s next notice', async () => {
    const { a, b, faults, clock } = await pair(0);
    const { session, sub } = await watched(a);
    await publishUnheard(b, session, faults);
    clock.offset += 60_000;
    await assert.rejects(waitSeq(sub, 2, 1500));
    assert.deepEqual(seqs(sub), [1]);
    // the next notice announces a head past both: the gap is filled in order
    faults.deaf = false;
    const pub = await publisher(b, session);
    assert.equal((await publish(pub, transcriptPub('heard'))).op, 'puback');
    await waitSeq(sub, 3, 5000);
    assert.deepEqual(seqs(sub), [1, 2, 3]);
    assert.equal(await audits(a), 0);
    assert.equal(await antiEntropy(a), 0);
  });

  it('reads each quiet session once per HEAD_AUDIT_MS, and none that heard of its head since', async () => {
    const { a, b, clock } = await pair(30_000);
    const one = await watched(a);
    const two = await watched(a);
    clock.offset += 30_000;
    await a.gateway.headAudit.round();
    assert.equal(await audits(a), 2);
    await a.gateway.headAudit.round();
    assert.equal(await audits(a), 2, 'read again before HEAD_AUDIT_MS passed');
    // session one hears of its head (B publishes, the notice comes); two stays quiet
    clock.offset += 20_000;
    const pub = await publisher(b, one.session);
    assert.equal((await publish(pub, transcriptPub('news'))).op, 'puback');
    await waitSeq(one.sub, 2, 5000);
    clock.offset += 10_000;
    await a.gateway.headAudit.round();
    assert.equal(await audits(a), 3, 'only the quiet session is read');
    // heads in sync: nothing to heal, nothing sent
    assert.equal(await antiEntropy(a), 0);
    assert.deepEqual(seqs(one.sub), [1, 2]);
    assert.deepEqual(seqs(two.sub), [1]);
  });

  it('a quiet session whose stream Redis lost finds out from the audit: 4011 for its subscribers', async () => {
    const { a, clock } = await pair(30_000);
    const { session, sub } = await watched(a);
    // what a Redis restart without persistence does to this one session's stream
    const base = `${a.config.REDIS_KEY_PREFIX}{${session.sessionId}}:`;
    assert.equal(await redis.command('DEL', `${base}stream`, `${base}meta`, `${base}ids`), 3);
    clock.offset += 30_000;
    await a.gateway.headAudit.round();
    await expectClose(sub, CloseCodes.history_gone);
    assert.equal(await antiEntropy(a), 1);
  });

  it('a round that cannot read leaves the sessions due: the next one heals them', async () => {
    const { a, b, faults, clock } = await pair(30_000);
    const { session, sub } = await watched(a);
    await publishUnheard(b, session, faults);
    faults.peekFails = true;
    clock.offset += 30_000;
    await a.gateway.headAudit.round(); // resolves: a failed round is a warning, not an error
    assert.equal(await audits(a), 0);
    await assert.rejects(waitSeq(sub, 2, 300));
    faults.peekFails = false;
    await a.gateway.headAudit.round();
    await waitSeq(sub, 2, 5000);
    assert.deepEqual(seqs(sub), [1, 2]);
    assert.equal(await antiEntropy(a), 1);
  });

  it('a head the engine could not read (null: its cluster master is stopped) stays due; the others are healed', async () => {
    const { a, b, faults, clock } = await pair(30_000);
    const one = await watched(a);
    const two = await watched(a);
    await publishUnheard(b, one.session, faults);
    await publishUnheard(b, two.session, faults);
    faults.unread.add(one.session.sessionId);
    clock.offset += 30_000;
    await a.gateway.headAudit.round();
    await waitSeq(two.sub, 2, 5000);
    assert.equal(await audits(a), 1, 'only the head that was read counts');
    await assert.rejects(waitSeq(one.sub, 2, 300));
    faults.unread.clear();
    // due at once, not a HEAD_AUDIT_MS later: its last audit read nothing
    await a.gateway.headAudit.round();
    await waitSeq(one.sub, 2, 5000);
    assert.deepEqual(seqs(one.sub), [1, 2]);
    assert.deepEqual(seqs(two.sub), [1, 2]);
    assert.equal(await antiEntropy(a), 2);
  });
});
