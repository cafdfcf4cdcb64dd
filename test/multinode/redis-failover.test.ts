import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FaultProxy } from '../../chaos/toolkit/fault-proxy.ts';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { sessionKeys } from '../../src/engine/redis/keys.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import {
  closeClients,
  record,
  recordingWebSocket,
  testClient,
  until as untilTrue,
  type Record,
  type Wire,
} from '../client/support.ts';

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
  /** A second node on the same Redis (through the same proxy). */
  other: TestGateway;
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
  const env = {
    REDIS_URL: `redis://127.0.0.1:${proxy.port}`,
    REDIS_KEY_PREFIX: PREFIX,
    // WAIT gets half of it: 1 s, ample for a replica on this host, whatever the test's loop does.
    REDIS_COMMAND_TIMEOUT_MS: '2000',
    REDIS_WAIT_REPLICAS: String(waitReplicas),
  };
  const gw = await startTestGateway({ ...env, NODE_ID: 'fo-a' });
  cleanups.push(() => gw.stop());
  const other = await startTestGateway({ ...env, NODE_ID: 'fo-b' });
  cleanups.push(() => other.stop());
  return {
    master,
    replica,
    proxy,
    link,
    gw,
    other,
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

/**
 * A subscriber on the other node while the replica lags: it must neither receive the
 * unconfirmed event nor hear of its head (a node that took that head for seen would start
 * a new epoch after the failover: 4011 for its subscribers).
 */
async function watchAcrossTheFailover(
  d: Deployment,
  until: 'e4' | '4011',
): Promise<{ seen: Record; closes: number[]; late: number; history: { status: number; body: any } }> {
  const sessionId = await d.gw.createSession(d.owner);
  const wire: Wire = { sockets: [] };
  const sub = testClient(d.other, { token: d.owner, WebSocket: recordingWebSocket(wire) }).subscribe(
    sessionId,
    {
      after: 0,
    },
  );
  const seen = record(sub);
  const { late } = await writeThenFreeze(d, sessionId);
  // History read on that node: a read that ends on the unconfirmed event.
  const history = await d.other.http('GET', `/v1/call/sessions/${sessionId}/events?after=0`, d.owner);
  await failover(d);
  await d.master.restart();
  await d.master.follow(d.replica);
  const after = await ingest(d, sessionId, 'e4');
  assert.ok(after.status === 201 || after.status === 200, JSON.stringify(after.body));
  const frames = () => wire.sockets.flatMap((w) => w.log);
  await untilTrue(
    () =>
      until === 'e4'
        ? frames().some((l) => l.frame.op === 'ev' && l.frame.event.eventId === 'e4')
        : wire.sockets.some((w) => w.closeCode === 4011),
    10_000,
    until,
  );
  return {
    seen: { ...seen, seqs: [...seen.seqs], types: [...seen.types] },
    closes: wire.sockets.map((w) => w.closeCode ?? 0),
    late,
    history,
  };
}

describe('a failover under two gateway nodes', () => {
  after(() => closeClients());

  it('REDIS_WAIT_REPLICAS=1: no node delivers or notices an event the replicas lack, so its subscribers go on in the same epoch', async () => {
    const d = await deploy(1);
    const { seen, closes, late, history } = await watchAcrossTheFailover(d, 'e4');
    assert.equal(late, 503);
    assert.equal(history.status, 503, JSON.stringify(history.body));
    assert.match(history.body.error.message, /0 of 1 replicas confirmed the events read/);
    assert.deepEqual(seen.seqs, [1, 2, 3, 4], 'e4 follows e2: e3 was never delivered');
    assert.ok(!closes.includes(4011), `closes: ${closes.join(',')}`);
  });

  it('control, REDIS_WAIT_REPLICAS=0: the other node delivers e3, the failover loses it, and its subscriber gets 4011', async () => {
    const d = await deploy(0);
    const { seen, closes, late, history } = await watchAcrossTheFailover(d, '4011');
    assert.equal(late, 201);
    assert.deepEqual(
      history.body.events.map((e: { event: { eventId: string } }) => e.event.eventId).slice(1),
      ['e1', 'e2', 'e3'],
      'the history read returned e3',
    );
    assert.ok(
      closes.includes(4011),
      `closes: ${closes.join(',')}, seqs ${seen.seqs.join(',')} ${seen.states.join(',')}`,
    );
  });
});
