import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import path from 'node:path';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { GatewayProcess, processToken } from '../../chaos/toolkit/gateway-process.ts';
import { TestClient, subscribe, type Frame } from '../helpers/ws-client.ts';
import { sessionKeys } from '../../src/engine/redis/keys.ts';
import { until } from '../helpers/until.ts';

/**
 * Redis trouble under a real gateway process (issue 3, point 4): one private
 * redis-server (AOF, appendfsync always) and one gateway process with
 * REDIS_COMMAND_TIMEOUT_MS=500.
 *
 * - Redis frozen (SIGSTOP): publishes, HTTP ingest, /readyz and hello answer within a
 *   bounded time, memory stays bounded under a publish storm; after SIGCONT everything
 *   resumes within seconds and a retried publish is stored once.
 * - Redis kill -9 and restart with AOF: same epoch, seqs continue, resume works.
 * - History lost (FLUSHALL, only a session's stream keys, restart without persistence,
 *   truncated AOF): a new epoch, 4011 for old-epoch clients, seqs never reused under
 *   the old epoch.
 *
 * The tests run in order on one Redis and one gateway; each uses its own session.
 */

const COMMAND_TIMEOUT_MS = 500;
/** "Answered within a bounded time": ~3× the command timeout. */
const BOUND_MS = 3 * COMMAND_TIMEOUT_MS;
const PREFIX = 'rt:';
const MB = 1024 * 1024;
/** Bound on the gateway's RSS growth during the publish storm while Redis is frozen. */
const RSS_BOUND = 100 * MB;

let redis: RedisServer;
let gw: GatewayProcess;
let owner: string;
let agent: string;

before(async () => {
  redis = await RedisServer.start({ aof: true, appendfsync: 'always' });
  gw = await GatewayProcess.start({
    REDIS_URL: redis.url,
    REDIS_KEY_PREFIX: PREFIX,
    REDIS_COMMAND_TIMEOUT_MS: String(COMMAND_TIMEOUT_MS),
    RESUME_WINDOW_MS: '10000',
    NODE_ID: 'rt-gw',
  });
  owner = await processToken('alice');
  agent = await processToken('bot', 'agent');
});
// Whatever the previous test left behind, each starts with Redis up and the gateway ready.
beforeEach(async () => {
  redis.resume();
  await gw.waitForReady(200, 10_000);
});
after(async () => {
  redis?.resume();
  await gw?.stop();
  await redis?.stop();
});

function transcript(id: string, i: number, text = `t${i}`): Frame {
  return { op: 'pub', id, type: 'transcript.partial', payload: { segmentId: 's', revision: i, text } };
}

function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
}

/** Every `ev` seq a client receives, in arrival order, whether or not the test consumed the frame. */
function recordSeqs(client: TestClient): number[] {
  const seqs: number[] = [];
  client.ws.on('message', (data: Buffer) => {
    const f = JSON.parse(data.toString()) as Frame;
    if (f.op === 'ev') seqs.push(f.seq as number);
  });
  return seqs;
}

/** Publishes and waits for its answer (puback or nack), with the time it took. */
async function publishOnce(
  client: TestClient,
  id: string,
  i: number,
  timeoutMs = 10_000,
): Promise<{ frame: Frame; ms: number }> {
  const started = performance.now();
  client.send(transcript(id, i));
  const frame = await client.next((f) => (f.op === 'puback' || f.op === 'nack') && f.id === id, timeoutMs);
  return { frame, ms: performance.now() - started };
}

async function puback(client: TestClient, id: string, i: number): Promise<number> {
  const { frame } = await publishOnce(client, id, i);
  assert.equal(frame.op, 'puback', `publish ${id}: ${JSON.stringify(frame)}`);
  return frame.seq as number;
}

/** HTTP ingest of one transcript event. */
async function ingest(sessionId: string, eventId: string, i: number): Promise<{ status: number; body: any }> {
  return gw.http('POST', `/v1/call/sessions/${sessionId}/events`, {
    token: agent,
    body: { eventId, type: 'transcript.final', payload: { segmentId: 'h', revision: i, text: `h${i}` } },
  });
}

/** Publishes on `client` and waits for the puback, or for the socket to close (then undefined). */
async function pubackOrClose(client: TestClient, id: string, i: number): Promise<number | undefined> {
  client.send(transcript(id, i));
  try {
    const f = await client.next((x) => (x.op === 'puback' || x.op === 'nack') && x.id === id, 5000);
    assert.equal(f.op, 'puback', JSON.stringify(f));
    return f.seq as number;
  } catch (err) {
    if (client.closeInfo) return undefined;
    throw err;
  }
}

/** The whole stored history over HTTP, page by page (the first page's status on an error). */
async function history(sessionId: string): Promise<{ status: number; body: any }> {
  const first = await gw.http('GET', `/v1/call/sessions/${sessionId}/events?after=0&limit=1000`, {
    token: owner,
  });
  if (first.status !== 200) return first;
  const events = [...(first.body.events as { seq: number }[])];
  while (events.length > 0 && events.at(-1)!.seq < first.body.headSeq) {
    const next = await gw.http(
      'GET',
      `/v1/call/sessions/${sessionId}/events?after=${events.at(-1)!.seq}&limit=1000`,
      {
        token: owner,
      },
    );
    assert.equal(next.status, 200);
    if ((next.body.events as unknown[]).length === 0) break;
    events.push(...(next.body.events as { seq: number }[]));
  }
  return { status: 200, body: { ...first.body, events } };
}

/** The session's epoch and head as Redis holds them (raw, not through the gateway). */
async function storedHead(sessionId: string): Promise<{ epoch: string | null; head: number | null }> {
  const [epoch, head] = (await redis.command(
    'HMGET',
    sessionKeys(PREFIX, sessionId).meta,
    'epoch',
    'head',
  )) as [string | null, string | null];
  return { epoch, head: head === null ? null : Number(head) };
}

/** A session with a live subscriber (from seq 0, seqs recorded) and a publisher. */
async function sessionWithClients(): Promise<{
  sessionId: string;
  sub: TestClient;
  subSeqs: number[];
  welcome: Frame;
  pub: TestClient;
}> {
  const sessionId = await gw.createSession(owner);
  const sub = await TestClient.connect(gw.wsUrl);
  const subSeqs = recordSeqs(sub);
  sub.send({ op: 'hello', sessionId, token: owner, after: 0 });
  const welcome = await sub.op('welcome');
  const { client: pub } = await subscribe(gw.wsUrl, { sessionId, token: agent });
  return { sessionId, sub, subSeqs, welcome, pub };
}

describe('Redis trouble under a real gateway process', () => {
  it('Redis frozen (SIGSTOP): bounded nack/503/1013, /readyz 503, bounded memory; after SIGCONT it all resumes and a retried publish is stored once', async () => {
    const { sessionId, sub, subSeqs, pub } = await sessionWithClients();
    // More publishers for the storm, attached while Redis still answers.
    const stormers = await Promise.all(
      range(1, 4).map(async () => (await subscribe(gw.wsUrl, { sessionId, token: agent })).client),
    );
    try {
      assert.equal(await puback(pub, 'a1', 1), 2);
      await until(() => subSeqs.length === 2, 5000, 'seq 2 delivered');
      const rssBefore = gw.rssBytes();

      redis.pause();
      try {
        // A publish is answered, not left hanging.
        const probe = await publishOnce(pub, 'x1', 2);
        assert.equal(probe.frame.op, 'nack', JSON.stringify(probe.frame));
        assert.equal(probe.frame.code, 'unavailable');
        assert.equal(probe.frame.retryable, true);
        assert.ok(probe.ms <= BOUND_MS, `pub answered after ${Math.round(probe.ms)} ms (bound ${BOUND_MS})`);

        // HTTP ingest: 503 unavailable.
        let t = performance.now();
        const ingest = await gw.http('POST', `/v1/call/sessions/${sessionId}/events`, {
          token: agent,
          body: {
            eventId: 'h1',
            type: 'transcript.final',
            payload: { segmentId: 'h', revision: 0, text: 'http' },
          },
        });
        const ingestMs = performance.now() - t;
        assert.equal(ingest.status, 503, JSON.stringify(ingest.body));
        assert.equal(ingest.body.error.code, 'unavailable');
        assert.ok(ingestMs <= BOUND_MS, `ingest answered after ${Math.round(ingestMs)} ms`);

        // Not ready.
        t = performance.now();
        const ready = await gw.http('GET', '/readyz');
        assert.equal(ready.status, 503);
        assert.ok(performance.now() - t <= BOUND_MS, 'readyz answered in time');

        // A new hello is turned away with 1013 "try again later".
        t = performance.now();
        const late = await TestClient.connect(gw.wsUrl);
        late.send({ op: 'hello', sessionId, token: owner, after: 0 });
        assert.equal(await late.closeCode(BOUND_MS + 1000), 1013);
        assert.ok(
          performance.now() - t <= BOUND_MS,
          `hello refused after ${Math.round(performance.now() - t)} ms`,
        );

        // A publish storm for ~3 s: every publish is answered (nack, retryable) in bounded
        // time, and the gateway's memory does not grow with the number of publishes.
        const text = 'x'.repeat(4000);
        let sent = 0;
        let answered = 0;
        let maxMs = 0;
        const codes = new Map<string, number>();
        const unexpected: Frame[] = [];
        const stormEnd = Date.now() + 3000;
        const samples: number[] = [];
        const sampler = setInterval(() => samples.push(Math.round(gw.rssBytes() / MB)), 250);
        sampler.unref();
        await Promise.all(
          stormers.map(async (client, c) => {
            const pending = new Map<string, number>();
            client.ws.on('message', (data: Buffer) => {
              const f = JSON.parse(data.toString()) as Frame;
              if (f.op !== 'nack' && f.op !== 'puback') return;
              const sentAt = pending.get(f.id);
              if (sentAt === undefined) return;
              pending.delete(f.id);
              answered++;
              maxMs = Math.max(maxMs, performance.now() - sentAt);
              if (f.op === 'nack' && f.retryable === true) codes.set(f.code, (codes.get(f.code) ?? 0) + 1);
              else unexpected.push(f);
            });
            let k = 0;
            while (Date.now() < stormEnd) {
              while (pending.size < 64 && Date.now() < stormEnd) {
                const id = `storm-${c}-${++k}`;
                pending.set(id, performance.now());
                client.send(transcript(id, k, text));
                sent++;
              }
              await new Promise((r) => setTimeout(r, 2));
            }
            await until(
              () => pending.size === 0,
              BOUND_MS + 2000,
              `storm publisher ${c} to get every answer`,
            );
          }),
        );
        clearInterval(sampler);
        for (const c of stormers) c.drain();
        const rssAfter = gw.rssBytes();
        const growth = rssAfter - rssBefore;
        assert.deepEqual(unexpected, [], 'only retryable nacks while Redis is frozen');
        assert.equal(answered, sent);
        assert.ok((codes.get('unavailable') ?? 0) > 0, `nack codes: ${JSON.stringify([...codes])}`);
        assert.ok(maxMs <= BOUND_MS + 500, `slowest storm answer ${Math.round(maxMs)} ms`);
        // Generous: V8's garbage alone swings RSS by tens of MB at this rate; keeping the
        // publishes (4 KB each, tens of thousands) would cost far more than the bound.
        assert.ok(
          growth < RSS_BOUND,
          `RSS grew by ${(growth / MB).toFixed(1)} MB over ${sent} publishes of 4 KB ` +
            `(${(rssBefore / MB).toFixed(0)} MB → samples ${JSON.stringify(samples)} → ${(rssAfter / MB).toFixed(0)} MB)`,
        );
        assert.ok(sent >= 2000, `the storm sent ${sent} publishes`);
      } finally {
        redis.resume();
      }

      // Back within seconds.
      const readyAfterMs = await gw.waitForReady(200, 10_000);
      assert.ok(readyAfterMs <= 5000, `/readyz 200 ${readyAfterMs} ms after SIGCONT`);

      // The retried publish is answered; x1 may have been stored by the command that timed
      // out (Redis ran it when it woke up): either way it is stored exactly once.
      const retried = await publishOnce(pub, 'x1', 2);
      assert.equal(retried.frame.op, 'puback', JSON.stringify(retried.frame));
      const x1Seq = retried.frame.seq as number;
      const again = await publishOnce(pub, 'x1', 2);
      assert.equal(again.frame.seq, x1Seq, 'a second retry gets the same seq');

      // Live delivery works again.
      const a2Seq = await puback(pub, 'a2', 3);
      await until(() => subSeqs.at(-1) === a2Seq, 5000, `the subscriber to get seq ${a2Seq}`);

      const page = await history(sessionId);
      assert.equal(page.status, 200);
      const events = page.body.events as { seq: number; event: { eventId: string } }[];
      assert.equal(page.body.headSeq, a2Seq);
      assert.deepEqual(
        events.map((e) => e.seq),
        range(1, a2Seq),
      );
      const ids = events.map((e) => e.event.eventId);
      assert.equal(ids.filter((id) => id === 'x1').length, 1, 'x1 stored exactly once');
      assert.equal(events[x1Seq - 1]!.event.eventId, 'x1');
      assert.equal(new Set(ids).size, ids.length, 'no eventId stored twice');
      // The subscriber that stayed connected got every stored event once, in order
      // (including those Redis applied late, after it woke up).
      assert.deepEqual(subSeqs, range(1, a2Seq));
    } finally {
      for (const c of [sub, pub, ...stormers]) c.close();
    }
  });

  it('Redis kill -9 and restart with AOF: the gateway reconnects by itself; same epoch, seqs continue, dedupe and resume work', async () => {
    const { sessionId, sub, subSeqs, welcome, pub } = await sessionWithClients();
    try {
      for (let i = 1; i <= 5; i++) assert.equal(await puback(pub, `b${i}`, i), i + 1);
      await until(() => subSeqs.length === 6, 5000, 'seqs 1..6');
      sub.send({ op: 'ack', seq: 6 });
      const key = `${sessionKeys(PREFIX, sessionId).subPrefix}${welcome.subscriberId as string}`;
      const deadline = Date.now() + 5000;
      while (Number(await redis.command('HGET', key, 'cp')) !== 6) {
        if (Date.now() > deadline) throw new Error('checkpoint 6 never written');
        await new Promise((r) => setTimeout(r, 20));
      }

      await redis.kill();
      const down = await publishOnce(pub, 'b6', 6);
      assert.equal(down.frame.op, 'nack');
      assert.equal(down.frame.code, 'unavailable');
      assert.equal(down.frame.retryable, true);
      assert.ok(down.ms <= BOUND_MS, `answered after ${Math.round(down.ms)} ms`);
      assert.equal((await gw.http('GET', '/readyz')).status, 503);

      await redis.restart();
      const readyMs = await gw.waitForReady(200, 10_000);
      assert.ok(readyMs <= 5000, `ready ${readyMs} ms after Redis came back`);

      // Seqs continue; the retry of a publish from before the crash is deduplicated.
      assert.equal(await puback(pub, 'b6', 6), 7);
      assert.equal(await puback(pub, 'b3', 3), 4, 'b3 keeps its seq across the Redis restart');
      await until(() => subSeqs.at(-1) === 7, 5000, 'live delivery of seq 7');
      assert.deepEqual(subSeqs, range(1, 7));

      const page = await history(sessionId);
      assert.equal(page.body.epoch, welcome.epoch, 'same epoch after a restart with AOF');
      assert.equal(page.body.headSeq, 7);
      assert.deepEqual(
        (page.body.events as { event: { eventId: string } }[]).map((e) => e.event.eventId).slice(1),
        ['b1', 'b2', 'b3', 'b4', 'b5', 'b6'],
      );

      // Resume (after a clean close) from the checkpoint written before the crash.
      sub.close();
      await sub.closed;
      const resumed = await TestClient.connect(gw.wsUrl);
      resumed.send({ op: 'hello', sessionId, resume: { token: welcome.resumeToken, epoch: welcome.epoch } });
      const w = await resumed.op('welcome');
      assert.equal(w.resumed, true);
      assert.equal(w.epoch, welcome.epoch);
      assert.equal(w.after, 6);
      assert.equal(w.headSeq, 7);
      assert.deepEqual(
        (await resumed.events(1)).map((e) => e.seq),
        [7],
      );
      assert.equal((await resumed.op('replayed')).seq, 7);
      resumed.close();
    } finally {
      sub.close();
      pub.close();
    }
  });

  it('FLUSHALL: the next append starts a new epoch at seq 1 and closes old-epoch subscribers with 4011', async () => {
    const { sessionId, sub, subSeqs, welcome, pub } = await sessionWithClients();
    try {
      for (let i = 1; i <= 3; i++) await puback(pub, `c${i}`, i);
      await until(() => subSeqs.length === 4, 5000, 'seqs 1..4');
      await redis.flushall();

      // The publisher's own connection is an old-epoch subscriber too: it may be closed
      // (4011) before its puback goes out; the event is stored all the same.
      const seq = await pubackOrClose(pub, 'c4', 4);
      if (seq !== undefined) assert.equal(seq, 1, 'seqs restart at 1, under the new epoch');
      else assert.equal(pub.closeInfo?.code, 4011);
      const stored = await storedHead(sessionId);
      assert.notEqual(stored.epoch, welcome.epoch, 'a new epoch');
      assert.equal(stored.head, 1);
      assert.equal(await sub.closeCode(5000), 4011);
      assert.deepEqual(subSeqs, range(1, 4), 'nothing of the new epoch on the old-epoch connection');
    } finally {
      sub.close();
      pub.close();
    }
  });

  it('FLUSHALL: resuming with the old epoch gets 4011; the session record went with it, so fresh hellos and HTTP get session_not_found', async () => {
    // Session records live in the same Redis: FLUSHALL loses the session itself, not only its
    // history. Resumes need no record (the token is signed and bound to the session) and learn
    // of the new epoch; everything that needs the record answers session_not_found (docs/operations.md).
    const { sessionId, sub, subSeqs, welcome, pub } = await sessionWithClients();
    try {
      for (let i = 1; i <= 3; i++) await puback(pub, `d${i}`, i);
      await until(() => subSeqs.length === 4, 5000, 'seqs 1..4');
      sub.close();
      await sub.closed;
      await redis.flushall();
      await pubackOrClose(pub, 'd4', 4);
      assert.equal((await storedHead(sessionId)).head, 1);

      const resumed = await TestClient.connect(gw.wsUrl);
      resumed.send({
        op: 'hello',
        sessionId,
        resume: { token: welcome.resumeToken, lastSeq: 4, epoch: welcome.epoch },
      });
      assert.equal(await resumed.closeCode(5000), 4011, 'old-epoch resume');
      const fresh = await TestClient.connect(gw.wsUrl);
      fresh.send({ op: 'hello', sessionId, token: owner, after: 0 });
      assert.equal(await fresh.closeCode(5000), 4004, 'fresh hello: the session record is gone');
      const page = await history(sessionId);
      assert.equal(page.status, 404);
    } finally {
      sub.close();
      pub.close();
    }
  });

  it('a session’s history keys lost (record kept): new epoch, 4011 for old-epoch clients, seqs from 1 under the new epoch', async () => {
    const { sessionId, sub, subSeqs, welcome, pub } = await sessionWithClients();
    const closed = await TestClient.connect(gw.wsUrl);
    closed.send({ op: 'hello', sessionId, token: owner, after: 0 });
    const closedWelcome = await closed.op('welcome');
    try {
      for (let i = 1; i <= 3; i++) await puback(pub, `k${i}`, i);
      await until(() => subSeqs.length === 4, 5000, 'seqs 1..4');
      await closed.events(4);
      closed.close();
      await closed.closed;

      const k = sessionKeys(PREFIX, sessionId);
      await redis.command('DEL', k.stream, k.meta, k.ids);

      // The next append notices: new epoch, seq 1; the live old-epoch subscribers get 4011.
      const appended = await ingest(sessionId, 'k4', 4);
      assert.equal(appended.status, 201, JSON.stringify(appended.body));
      assert.equal(appended.body.seq, 1);
      assert.equal(await sub.closeCode(5000), 4011);
      assert.equal(await pub.closeCode(5000), 4011);
      assert.deepEqual(subSeqs, range(1, 4));
      const stored = await storedHead(sessionId);
      assert.notEqual(stored.epoch, welcome.epoch);

      // Resuming with the old epoch: 4011.
      const resumed = await TestClient.connect(gw.wsUrl);
      resumed.send({
        op: 'hello',
        sessionId,
        resume: { token: closedWelcome.resumeToken, lastSeq: 4, epoch: closedWelcome.epoch },
      });
      assert.equal(await resumed.closeCode(5000), 4011);

      // A fresh subscriber: the new epoch, from seq 1.
      const { client: fresh, welcome: fw } = await subscribe(gw.wsUrl, { sessionId, token: owner, after: 0 });
      assert.equal(fw.epoch, stored.epoch);
      assert.equal(fw.headSeq, 1);
      const [ev] = await fresh.events(1);
      assert.equal(ev!.seq, 1);
      assert.equal(ev!.event.eventId, 'k4');
      const page = await history(sessionId);
      assert.equal(page.body.epoch, stored.epoch);
      assert.deepEqual(
        (page.body.events as { seq: number; event: { eventId: string } }[]).map((e) => [
          e.seq,
          e.event.eventId,
        ]),
        [[1, 'k4']],
      );
      fresh.close();
    } finally {
      sub.close();
      pub.close();
    }
  });

  it('truncated AOF (the last appends lost, the rest kept): no seq is reused under the old epoch', async () => {
    const { sessionId, sub, subSeqs, welcome, pub } = await sessionWithClients();
    try {
      for (let i = 1; i <= 4; i++) await puback(pub, `g${i}`, i); // head 5
      await until(() => subSeqs.length === 5, 5000, 'seqs 1..5');
      // appendfsync always: every acknowledged write is in the file. Nothing else writes
      // (nobody acks), so this size is exactly "history up to seq 5".
      const incr = incrementalAof();
      const keep = statSync(incr).size;
      for (let i = 5; i <= 7; i++) await puback(pub, `g${i}`, i); // 6..8
      await until(() => subSeqs.length === 8, 5000, 'seqs 1..8');

      await truncateAof(incr, keep, async () => {
        assert.deepEqual(
          await storedHead(sessionId),
          { epoch: welcome.epoch, head: 5 },
          'the AOF lost seqs 6..8',
        );
      });

      const appended = await ingest(sessionId, 'g8', 8);
      assert.equal(appended.status, 201, JSON.stringify(appended.body));
      const seq = appended.body.seq as number;
      const stored = await storedHead(sessionId);
      const problems: string[] = [];
      if (stored.epoch === welcome.epoch && seq <= 8)
        problems.push(
          `seq ${seq} was assigned again under the old epoch ${String(welcome.epoch)} (it was g${seq - 1} before)`,
        );
      const closeCode = await sub.closeCode(3000).catch(() => undefined);
      if (closeCode !== 4011)
        problems.push(
          `the live subscriber (delivered up to 8 under the old epoch) was ${closeCode === undefined ? 'left open' : `closed with ${closeCode}`}, expected 4011`,
        );
      assert.deepEqual(problems, []);
    } finally {
      sub.close();
      pub.close();
    }
  });

  it('truncated AOF while the session had no connection here: the idle actor neither serves its cache nor reuses seqs under the old epoch', async () => {
    const { sessionId, sub, subSeqs, welcome, pub } = await sessionWithClients();
    let keep: number;
    const incr = incrementalAof();
    try {
      for (let i = 1; i <= 4; i++) await puback(pub, `h${i}`, i); // head 5
      await until(() => subSeqs.length === 5, 5000, 'seqs 1..5');
      keep = statSync(incr).size;
      for (let i = 5; i <= 7; i++) await puback(pub, `h${i}`, i); // 6..8, cached by the actor
      await until(() => subSeqs.length === 8, 5000, 'seqs 1..8');
    } finally {
      sub.close();
      pub.close();
    }
    // The actor outlives its connections (ACTOR_IDLE_MS) with seqs 1..8 in its cache.
    await until(async () => (await openConnections()) === 0, 5000, 'connections closed on the gateway');

    await truncateAof(incr, keep, async () => {
      assert.deepEqual(
        await storedHead(sessionId),
        { epoch: welcome.epoch, head: 5 },
        'the AOF lost seqs 6..8',
      );
    });

    const { client: fresh, welcome: again } = await subscribe(gw.wsUrl, {
      sessionId,
      token: owner,
      after: 0,
    });
    try {
      const problems: string[] = [];
      if (again.epoch === welcome.epoch)
        problems.push(
          `the fresh hello was welcomed under the old epoch at head ${String(again.headSeq)}: the rolled-back head was accepted`,
        );
      const appended = await ingest(sessionId, 'h8', 8);
      assert.equal(appended.status, 201, JSON.stringify(appended.body));
      const stored = await storedHead(sessionId);
      if (stored.epoch === welcome.epoch && (appended.body.seq as number) <= 8)
        problems.push(`seq ${String(appended.body.seq)} was assigned again under the old epoch`);
      const first = await fresh.op('ev', 3000);
      if (first.event.eventId !== 'h8')
        problems.push(
          `the fresh subscriber got ${String(first.event.eventId)} at seq ${String(first.seq)} first, not the new epoch's h8`,
        );
      assert.deepEqual(problems, []);
    } finally {
      fresh.close();
    }
  });

  it('restart without persistence: a connected old-epoch subscriber is closed with 4011 on resync, without any append, even when the first resync attempt fails', async () => {
    const { sessionId, sub, subSeqs, welcome, pub } = await sessionWithClients();
    try {
      for (let i = 1; i <= 3; i++) await puback(pub, `r${i}`, i);
      await until(() => subSeqs.length === 4, 5000, 'seqs 1..4');

      // The disk is gone with the process: Redis comes back empty. It does not run scripts
      // at first (CLIENT PAUSE WRITE, as while it loads or fails over), so the gateway's
      // first resync after reconnecting fails; the gateway is frozen meanwhile so that it
      // reconnects only once all this is in place.
      const mark = gw.logs.length;
      gw.pause();
      try {
        await redis.kill();
        rmSync(path.join(redis.dir, 'appendonlydir'), { recursive: true, force: true });
        await redis.restart();
        assert.deepEqual(await storedHead(sessionId), { epoch: null, head: null }, 'Redis came back empty');
        await redis.command('CLIENT', 'PAUSE', 30_000, 'WRITE');
      } finally {
        gw.resume();
      }
      try {
        await gw.waitForLog((l) => l.level === 'warn' && /resync/i.test(String(l.msg)), 10_000, mark);
      } finally {
        await redis.command('CLIENT', 'UNPAUSE');
      }
      await gw.waitForReady(200, 10_000);

      // No publish: the gateway must still notice the lost history by itself.
      const code = await sub.closeCode(5000).catch(() => undefined);
      assert.equal(
        code,
        4011,
        `the old-epoch subscriber was ${code === undefined ? 'left open' : `closed with ${code}`} 5 s after Redis served again; ` +
          `gateway warnings since the restart: ${JSON.stringify(
            gw.logs
              .slice(mark)
              .filter((l) => l.level === 'warn')
              .map((l) => l.msg),
          )}`,
      );
      assert.deepEqual(subSeqs, range(1, 4));
      const stored = await storedHead(sessionId);
      assert.notEqual(stored.epoch, welcome.epoch);
    } finally {
      await redis.command('CLIENT', 'UNPAUSE').catch(() => undefined);
      sub.close();
      pub.close();
    }
  });
});

/**
 * Kills Redis, cuts its AOF back to `keep` bytes and restarts it, then runs `check` on
 * the restored data before the gateway can touch it. The gateway is frozen throughout:
 * once it reconnects it resyncs each session with the head it has seen, and on finding
 * the stored head behind that it starts a new epoch at once (check_seen). That is the
 * behaviour under test, but it would overwrite the very state `check` is meant to read.
 */
async function truncateAof(incr: string, keep: number, check: () => Promise<void>): Promise<void> {
  gw.pause();
  try {
    await redis.kill();
    truncateSync(incr, keep);
    await redis.restart();
    await check();
  } finally {
    gw.resume();
  }
  await gw.waitForReady(200, 10_000);
}

/** The gateway's open WebSocket count, from its own /metrics. */
async function openConnections(): Promise<number> {
  const res = await fetch(`${gw.url}/metrics`);
  const text = await res.text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('lifeos_ws_connections{')) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

/** The AOF file Redis appends to now (Redis 7 multi-part AOF). */
function incrementalAof(): string {
  const dir = path.join(redis.dir, 'appendonlydir');
  const incr = readdirSync(dir).filter((f) => f.endsWith('.incr.aof'));
  assert.equal(incr.length, 1, `one incremental AOF file in ${JSON.stringify(readdirSync(dir))}`);
  return path.join(dir, incr[0]!);
}
