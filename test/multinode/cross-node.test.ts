import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { TestClient, subscribe, type Frame, type Sub } from '../helpers/ws-client.ts';

/**
 * Several gateway nodes on one Redis behave as one gateway. Each node here is a gateway
 * with its own Redis connections in this process; test/multinode/processes.test.ts does
 * the same with real processes and kill -9.
 */
let redis: RedisServer;
let run = 0;
const nodes: TestGateway[] = [];

before(async () => {
  redis = await RedisServer.start({ aof: true, appendfsync: 'everysec' });
});
after(async () => {
  await Promise.allSettled(nodes.map((n) => n.stop()));
  await redis.stop();
});

/** `count` nodes sharing one key prefix: one logical gateway. */
async function cluster(count: number): Promise<TestGateway[]> {
  const env = { REDIS_URL: redis.url, REDIS_KEY_PREFIX: `mn${++run}:` };
  const started = await Promise.all(
    Array.from({ length: count }, (_, i) => startTestGateway({ ...env, NODE_ID: `n${i}` })),
  );
  nodes.push(...started);
  return started;
}

function transcript(i: number): Frame {
  return {
    op: 'pub',
    id: `x${i}`,
    type: 'transcript.partial',
    payload: { segmentId: 's', revision: i, text: `t${i}` },
  };
}

for (const sub of ['json', 'msgpack'] as Sub[]) {
  describe(`several nodes on one Redis [${sub}]`, () => {
    it('delivers every event in seq order on every node, whichever node accepted it', async () => {
      const [a, b, c] = await cluster(3);
      const owner = await a!.token('alice');
      const agent = await a!.token('bot', 'agent');
      const sessionId = await a!.createSession(owner);
      const watchers = await Promise.all(
        [a!, b!, c!].map((n) => subscribe(n.wsUrl, { sessionId, token: owner, after: 0 }, sub)),
      );
      const pubs = await Promise.all(
        [b!, c!].map((n) => subscribe(n.wsUrl, { sessionId, token: agent }, sub)),
      );
      // Interleave publishes from two nodes plus HTTP ingest on a third.
      const acks: Promise<Frame>[] = [];
      for (let i = 0; i < 30; i++) {
        const pub = pubs[i % 2]!.client;
        pub.send(transcript(i));
        acks.push(pub.next((f) => f.op === 'puback' && f.id === `x${i}`));
        if (i % 10 === 0) {
          const res = await a!.http('POST', `/v1/call/sessions/${sessionId}/events`, agent, {
            eventId: `h${i}`,
            type: 'transcript.final',
            payload: { segmentId: 'h', revision: i, text: 'http' },
          });
          assert.equal(res.status, 201);
        }
      }
      const pubacks = await Promise.all(acks);
      const total = 1 + 30 + 3;
      for (const { client } of watchers) {
        const events = await client.events(total);
        assert.deepEqual(
          events.map((e) => e.seq),
          Array.from({ length: total }, (_, i) => i + 1),
        );
        for (const p of pubacks) {
          assert.equal(
            events[p.seq - 1]!.event.eventId,
            p.id,
            `seq ${String(p.seq)} is the event its puback named`,
          );
        }
      }
      for (const { client } of [...watchers, ...pubs]) client.close();
    });

    it('resumes on another node after a clean disconnect, from the checkpoint, with nothing lost or repeated', async () => {
      const [a, b] = await cluster(2);
      const owner = await a!.token('alice');
      const agent = await a!.token('bot', 'agent');
      const sessionId = await a!.createSession(owner);
      const { client, welcome } = await subscribe(a!.wsUrl, { sessionId, token: owner, after: 0 }, sub);
      const pub = (await subscribe(b!.wsUrl, { sessionId, token: agent }, sub)).client;
      for (let i = 0; i < 5; i++) {
        pub.send(transcript(i));
        await pub.op('puback');
      }
      await client.events(6);
      client.send({ op: 'ack', seq: 4 });
      client.send({ op: 'ping' });
      await client.op('pong');
      client.close();
      await client.closed;
      // Publishing goes on while the subscriber is away.
      for (let i = 5; i < 8; i++) {
        pub.send(transcript(i));
        await pub.op('puback');
      }
      const resumed = await TestClient.connect(b!.wsUrl, sub);
      resumed.send({ op: 'hello', sessionId, resume: { token: welcome.resumeToken, epoch: welcome.epoch } });
      const again = await resumed.op('welcome');
      assert.equal(again.resumed, true);
      assert.equal(again.after, 4, 'the checkpoint written on node A');
      assert.deepEqual(
        (await resumed.events(5)).map((e) => e.seq),
        [5, 6, 7, 8, 9],
      );
      resumed.close();
      pub.close();
    });

    it('duplicate resumes racing on different nodes leave exactly one live connection; the others get 4009', async () => {
      const [a, b, c] = await cluster(3);
      const owner = await a!.token('alice');
      const agent = await a!.token('bot', 'agent');
      const sessionId = await a!.createSession(owner);
      const { client: original, welcome } = await subscribe(
        a!.wsUrl,
        { sessionId, token: owner, after: 0 },
        sub,
      );
      await original.op('replayed');
      const racers = await Promise.all([a!, b!, c!, b!].map((n) => TestClient.connect(n.wsUrl, sub)));
      for (const r of racers) r.send({ op: 'hello', sessionId, resume: { token: welcome.resumeToken } });
      // Every racer is either welcomed or refused; then exactly one of all five stays open.
      await Promise.all(racers.map((r) => Promise.race([r.op('welcome').catch(() => undefined), r.closed])));
      assert.equal(await original.closeCode(), 4009);
      const deadline = Date.now() + 5000;
      let open: TestClient[];
      for (;;) {
        open = racers.filter((r) => r.closeInfo === undefined);
        if (open.length <= 1 || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.equal(open.length, 1, 'exactly one survivor');
      for (const r of racers) if (r !== open[0]) assert.equal(await r.closeCode(), 4009);
      // The survivor gets new events exactly once.
      const survivor = open[0]!;
      const pub = (await subscribe(c!.wsUrl, { sessionId, token: agent }, sub)).client;
      pub.send(transcript(1));
      const { seq } = await pub.op('puback');
      const got = await survivor.next((f) => f.op === 'ev' && f.seq === seq);
      assert.equal(got.seq, 2);
      const seen = survivor.drain().filter((f) => f.op === 'ev' && f.seq === seq);
      assert.equal(seen.length, 0, 'no duplicate delivery');
      survivor.close();
      pub.close();
    });

    it('a superseded node cannot move the checkpoint: late acks there are ignored', async () => {
      const [a, b] = await cluster(2);
      const owner = await a!.token('alice');
      const agent = await a!.token('bot', 'agent');
      const sessionId = await a!.createSession(owner);
      const { client: onA, welcome } = await subscribe(a!.wsUrl, { sessionId, token: owner, after: 0 }, sub);
      const pub = (await subscribe(b!.wsUrl, { sessionId, token: agent }, sub)).client;
      for (let i = 0; i < 6; i++) {
        pub.send(transcript(i));
        await pub.op('puback');
      }
      await onA.events(7);
      onA.send({ op: 'ack', seq: 2 });
      onA.send({ op: 'ping' });
      await onA.op('pong');
      // Resume on B with lastSeq 3; A learns of the takeover and closes its connection.
      const onB = await TestClient.connect(b!.wsUrl, sub);
      onB.send({ op: 'hello', sessionId, resume: { token: welcome.resumeToken, lastSeq: 3 } });
      const w = await onB.op('welcome');
      // A late ack still in flight to A (sent after the takeover) must change nothing.
      onA.send({ op: 'ack', seq: 7 });
      assert.equal(await onA.closeCode(), 4009);
      const record = await b!.gateway.engine.getSubscriber(sessionId, w.subscriberId as string);
      assert.equal(record?.checkpoint, 3, "the resume's lastSeq, stored with its takeover; not A's late 7");
      assert.equal(record?.generation, 2);
      onB.close();
      pub.close();
    });
  });
}
