import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FaultProxy } from '../../chaos/toolkit/fault-proxy.ts';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { sessionKeys } from '../../src/engine/redis/keys.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

/**
 * A failover to a replica under a real gateway: the gateway talks to a master through a
 * proxy; the master is killed (-9), its replica promoted (REPLICAOF NO ONE) and the proxy
 * pointed at it, as a managed Redis moves its primary endpoint. Replication is
 * asynchronous, so a replica that lags lacks the master's last writes: here its link to
 * the master goes through a second proxy, which drops everything while "lagging" (a
 * frozen replica would not do: what the master sent waits in its socket buffer). With
 * REDIS_WAIT_REPLICAS=1 nothing the gateway acknowledged is among the lost writes.
 */
const PREFIX = 'fo:';
const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
});

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

interface Deployment {
  master: RedisServer;
  replica: RedisServer;
  proxy: FaultProxy;
  /** The replica's replication link to the master. */
  link: FaultProxy;
  gw: TestGateway;
  owner: string;
  agent: string;
}

async function deploy(waitReplicas: number): Promise<Deployment> {
  const master = await RedisServer.start({ aof: false });
  cleanups.push(() => master.stop());
  const replica = await RedisServer.start({ aof: false });
  cleanups.push(() => replica.stop());
  const link = await FaultProxy.start({ target: { host: '127.0.0.1', port: master.port } });
  cleanups.push(() => link.close());
  await replica.follow(master, link.port);
  const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port: master.port } });
  cleanups.push(() => proxy.close());
  const gw = await startTestGateway({
    REDIS_URL: `redis://127.0.0.1:${proxy.port}`,
    REDIS_KEY_PREFIX: PREFIX,
    // WAIT gets half of it: 1 s, ample for a replica on this host, whatever the test's loop does.
    REDIS_COMMAND_TIMEOUT_MS: '2000',
    REDIS_WAIT_REPLICAS: String(waitReplicas),
  });
  cleanups.push(() => gw.stop());
  return {
    master,
    replica,
    proxy,
    link,
    gw,
    owner: await gw.token('alice'),
    agent: await gw.token('bot', 'agent'),
  };
}

function ingest(d: Deployment, sessionId: string, eventId: string): Promise<{ status: number; body: any }> {
  return d.gw.http('POST', `/v1/call/sessions/${sessionId}/events`, d.agent, {
    eventId,
    type: 'transcript.final',
    payload: { segmentId: 's', revision: 0, text: eventId },
  });
}

/** Master killed, the lagging replica promoted, the gateway's proxy pointed at it. */
async function failover(d: Deployment): Promise<void> {
  await d.master.kill();
  await d.replica.command('REPLICAOF', 'NO', 'ONE');
  d.proxy.retarget({ host: '127.0.0.1', port: d.replica.port });
  await d.proxy.closeAll();
  await until(async () => (await d.gw.http('GET', '/readyz')).status === 200, 'the gateway ready again');
}

/** The acknowledged events the promoted replica does not have. */
async function lost(d: Deployment, sessionId: string, acknowledged: string[]): Promise<string[]> {
  const ids = sessionKeys(PREFIX, sessionId).ids;
  const missing: string[] = [];
  for (const eventId of acknowledged) {
    if (Number(await d.replica.command('HEXISTS', ids, eventId)) === 0) missing.push(eventId);
  }
  return missing;
}

/** Two events while the replica keeps up, one while it lags; the ids acknowledged. */
async function writeThenFreeze(d: Deployment, sessionId: string): Promise<{ acked: string[]; late: number }> {
  const acked: string[] = [];
  for (const eventId of ['e1', 'e2']) {
    const res = await ingest(d, sessionId, eventId);
    assert.equal(res.status, 201, JSON.stringify(res.body));
    acked.push(eventId);
  }
  // Without WAIT they could still be on their way: the control would lose them too.
  await until(async () => (await lost(d, sessionId, acked)).length === 0, 'e1 and e2 on the replica');
  d.link.blackhole('drop');
  const late = await ingest(d, sessionId, 'e3');
  if (late.status === 201) acked.push('e3');
  return { acked, late: late.status };
}

describe('failover to a replica under a real gateway', () => {
  it('REDIS_WAIT_REPLICAS=1: a write the replica cannot confirm is refused (503, retryable), and no acknowledged event is lost in the failover; the retry is stored', async () => {
    const d = await deploy(1);
    const sessionId = await d.gw.createSession(d.owner);
    const { acked, late } = await writeThenFreeze(d, sessionId);
    assert.equal(late, 503);
    await failover(d);
    assert.deepEqual(await lost(d, sessionId, acked), []);
    const session = await d.gw.http('GET', `/v1/call/sessions/${sessionId}`, d.owner);
    assert.equal(session.status, 200, 'the session created before the freeze survived');

    // The new master has no replica yet: writes of events wait for one.
    const early = await ingest(d, sessionId, 'e3');
    assert.equal(early.status, 503, JSON.stringify(early.body));
    assert.match(early.body.error.message, /0 of 1 replicas confirmed the write within 1000 ms/);
    await d.master.restart();
    await d.master.follow(d.replica);
    // The refused attempt was stored on the new master, only not confirmed: the retry
    // finds it there (200, a duplicate), confirmed by the new replica this time.
    const retry = await ingest(d, sessionId, 'e3');
    assert.equal(retry.status, 200, JSON.stringify(retry.body));
    assert.equal(retry.body.duplicate, true);
    assert.deepEqual(await lost(d, sessionId, [...acked, 'e3']), []);
  });

  it('control, REDIS_WAIT_REPLICAS=0: the same write is acknowledged (201) and lost in the failover', async () => {
    const d = await deploy(0);
    const sessionId = await d.gw.createSession(d.owner);
    const { acked, late } = await writeThenFreeze(d, sessionId);
    assert.equal(late, 201);
    await failover(d);
    assert.deepEqual(await lost(d, sessionId, acked), ['e3']);
  });
});
