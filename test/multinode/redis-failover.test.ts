import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FaultProxy } from '../../chaos/toolkit/fault-proxy.ts';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { sessionKeys, subscriberKey } from '../../src/engine/redis/keys.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { TestClient, subscribe, type Frame } from '../helpers/ws-client.ts';
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

/**
 * A subscriber created while the replica lags, on a node whose actor is already running
 * (a first subscriber keeps it, so the new hello reads nothing and only writes its record).
 * A failover that loses the record closes the connection 4009 (superseded: the resync's
 * generation check finds no record), and the SDK stops for good.
 */
async function subscribeDuringTheLag(
  d: Deployment,
  waitFor: 'e2' | '4009',
): Promise<{ seqs: number[]; closes: number[]; welcomedDuringTheLag: boolean }> {
  const sessionId = await d.gw.createSession(d.owner);
  assert.equal((await ingest(d, sessionId, 'e1')).status, 201);
  const first = record(testClient(d.gw, { token: d.owner }).subscribe(sessionId, { after: 0 }));
  await untilTrue(() => first.seqs.includes(1), 10_000, 'the first subscriber has e1');
  await until(async () => (await lost(d, sessionId, ['e1'])).length === 0, 'e1 on the replica');

  d.link.blackhole('drop');
  const wire: Wire = { sockets: [] };
  const late = record(
    testClient(d.gw, { token: d.owner, WebSocket: recordingWebSocket(wire) }).subscribe(sessionId, {
      after: 'latest',
    }),
  );
  const answered = (op: 'welcome' | 'close') =>
    wire.sockets.some((w) =>
      op === 'welcome' ? w.log.some((l) => l.frame.op === 'welcome') : w.closeCode !== undefined,
    );
  // N = 0: welcomed at once; N = 1: the first hello is refused after the WAIT's 1 s.
  await untilTrue(() => answered('welcome') || answered('close'), 10_000, 'an answer to the hello');
  const welcomedDuringTheLag = answered('welcome');

  await failover(d);
  await d.master.restart();
  await d.master.follow(d.replica);
  // 'latest': welcomed after e2, it would start after it
  await untilTrue(() => answered('welcome'), 15_000, 'a welcome');
  const e2 = await ingest(d, sessionId, 'e2');
  assert.ok(e2.status === 201 || e2.status === 200, JSON.stringify(e2.body));
  await untilTrue(
    () => (waitFor === 'e2' ? late.seqs.includes(3) : wire.sockets.some((w) => w.closeCode === 4009)),
    15_000,
    waitFor,
  );
  return { seqs: [...late.seqs], closes: wire.sockets.map((w) => w.closeCode ?? 0), welcomedDuringTheLag };
}

describe('a subscriber created during the lag, across the failover', () => {
  after(() => closeClients());

  it('REDIS_WAIT_REPLICAS=1: its hello is refused (1013) until a replica has its record, then it is served and never superseded', async () => {
    const d = await deploy(1);
    const { seqs, closes, welcomedDuringTheLag } = await subscribeDuringTheLag(d, 'e2');
    assert.equal(welcomedDuringTheLag, false);
    assert.ok(closes.includes(1013), `closes: ${closes.join(',')}`);
    assert.ok(!closes.includes(4009), `closes: ${closes.join(',')}`);
    assert.deepEqual(seqs, [3], 'e2 (seq 3: call.created is seq 1), and only it');
  });

  it('control, REDIS_WAIT_REPLICAS=0: it is welcomed during the lag, the failover loses its record, and it is closed 4009', async () => {
    const d = await deploy(0);
    const { closes, welcomedDuringTheLag } = await subscribeDuringTheLag(d, '4009');
    assert.equal(welcomedDuringTheLag, true);
    assert.ok(closes.includes(4009), `closes: ${closes.join(',')}`);
  });
});

/**
 * A resume while the replica lags, by a raw client (no lastSeq, so the stored checkpoint
 * decides where a resume starts). A failover that loses the takeover leaves the record a
 * generation behind the live connection: that connection's checkpoints are fenced, and
 * the next takeover hands out the same generation again, so a resume on the other node
 * does not supersede it: two live connections of one subscriber.
 */
async function resumeDuringTheLag(
  d: Deployment,
  checkpointStored: boolean,
): Promise<{
  lagAnswer: string;
  live: TestClient;
  resumed: { client: TestClient; welcome: Frame };
  sessionId: string;
}> {
  const sessionId = await d.gw.createSession(d.owner);
  assert.equal((await ingest(d, sessionId, 'e1')).status, 201);
  // keeps the session's actor running on node A, so a resume there reads nothing first
  const keeper = await subscribe(d.gw.wsUrl, { sessionId, token: d.owner, after: 'latest' });
  cleanups.push(async () => keeper.client.close());
  const first = await subscribe(d.gw.wsUrl, { sessionId, token: d.owner, after: 0 });
  const { subscriberId, resumeToken } = first.welcome;
  assert.deepEqual(
    (await first.client.events(2)).map((f) => f.seq),
    [1, 2],
  );
  first.client.send({ op: 'ack', seq: 2 });
  const key = subscriberKey(sessionKeys(PREFIX, sessionId), subscriberId);
  await until(
    async () => String(await d.replica.command('HGET', key, 'cp')) === '2',
    'checkpoint 2 on the replica',
  );

  d.link.blackhole('drop');
  first.client.close();
  await first.client.closed;
  const resume = async (gw: TestGateway): Promise<{ client: TestClient; answer: Frame | number }> => {
    const client = await TestClient.connect(gw.wsUrl);
    cleanups.push(async () => client.close());
    client.send({ op: 'hello', sessionId, resume: { token: resumeToken } });
    const answer = await client.op('welcome', 5000).catch(() => client.closeCode());
    return { client, answer };
  };
  const lag = await resume(d.gw);
  const lagAnswer = typeof lag.answer === 'number' ? `closed ${lag.answer}` : 'welcome';

  await failover(d);
  await d.master.restart();
  await d.master.follow(d.replica);
  let live = lag.client;
  if (typeof lag.answer === 'number') {
    const again = await resume(d.gw);
    assert.equal(
      typeof again.answer,
      'object',
      `the resume after the failover: ${JSON.stringify(again.answer)}`,
    );
    live = again.client;
  }
  assert.ok([200, 201].includes((await ingest(d, sessionId, 'e2')).status));
  assert.equal((await live.op('ev')).seq, 3);
  live.send({ op: 'ack', seq: 3 });
  if (checkpointStored)
    await until(
      async () => String(await d.replica.command('HGET', key, 'cp')) === '3',
      'checkpoint 3 stored',
    );
  // the same subscriber resumed on node B while the live connection stays open
  const other = await resume(d.other);
  assert.equal(typeof other.answer, 'object', `the resume on node B: ${JSON.stringify(other.answer)}`);
  return { lagAnswer, live, resumed: { client: other.client, welcome: other.answer as Frame }, sessionId };
}

describe('a resume during the lag, across the failover', () => {
  it('REDIS_WAIT_REPLICAS=1: the resume is refused (1013) until a replica has the takeover; afterwards its checkpoints are stored, and a resume elsewhere supersedes it (4009) and starts after its acks', async () => {
    const d = await deploy(1);
    const { lagAnswer, live, resumed } = await resumeDuringTheLag(d, true);
    assert.equal(lagAnswer, 'closed 1013');
    assert.equal(await live.closeCode(), 4009);
    assert.equal(resumed.welcome.after, 3, 'it starts after the ack of seq 3');
  });

  it('control, REDIS_WAIT_REPLICAS=0: the failover loses the takeover, and a resume on the other node leaves two live connections of one subscriber', async () => {
    const d = await deploy(0);
    const { lagAnswer, live, resumed, sessionId } = await resumeDuringTheLag(d, false);
    assert.equal(lagAnswer, 'welcome');
    assert.ok([200, 201].includes((await ingest(d, sessionId, 'e3')).status));
    assert.equal((await resumed.client.next((f) => f.op === 'ev' && f.seq === 4)).seq, 4);
    assert.equal(
      (await live.next((f) => f.op === 'ev' && f.seq === 4)).seq,
      4,
      'the older connection was not superseded',
    );
  });
});
