import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { TestClient, subscribe, type Sub } from '../helpers/ws-client.ts';

/**
 * A gateway restart on the redis engine keeps seqs, epoch, checkpoints and resume:
 * everything a client needs lives in Redis, nothing in the gateway process.
 */
let redis: RedisServer;
before(async () => {
  redis = await RedisServer.start({ aof: true, appendfsync: 'always' });
});
after(async () => {
  await redis.stop();
});

for (const sub of ['json', 'msgpack'] as Sub[]) {
  describe(`gateway restart on redis [${sub}]`, () => {
    it('keeps seqs, epoch, checkpoints and resume tokens across a gateway restart', async () => {
      const env = { REDIS_URL: redis.url, REDIS_KEY_PREFIX: `restart-${sub}:` };
      let gw: TestGateway | undefined = await startTestGateway(env);
      try {
        const owner = await gw.token('alice');
        const agent = await gw.token('bot', 'agent');
        const sessionId = await gw.createSession(owner);
        const { client, welcome } = await subscribe(gw.wsUrl, { sessionId, token: owner, after: 0 }, sub);
        const publisher = (await subscribe(gw.wsUrl, { sessionId, token: agent }, sub)).client;
        for (let i = 1; i <= 5; i++) {
          publisher.send({
            op: 'pub',
            id: `e${i}`,
            type: 'transcript.partial',
            payload: { segmentId: 's', revision: i, text: `t${i}` },
          });
          assert.equal((await publisher.op('puback')).seq, i + 1);
        }
        const events = await client.events(6);
        assert.deepEqual(
          events.map((e) => e.seq),
          [1, 2, 3, 4, 5, 6],
        );
        client.send({ op: 'ack', seq: 4 });
        // A ping round trip proves the ack arrived; the drain then waits for its write.
        client.send({ op: 'ping', n: 1 });
        await client.op('pong');

        await gw.stop();
        assert.equal(await client.closeCode(), 1001);
        assert.equal(await publisher.closeCode(), 1001);
        gw = undefined;

        gw = await startTestGateway(env);
        // Resume without lastSeq: delivery restarts after the persisted checkpoint (4).
        const resumed = await TestClient.connect(gw.wsUrl, sub);
        resumed.send({
          op: 'hello',
          sessionId,
          resume: { token: welcome.resumeToken, epoch: welcome.epoch },
        });
        const again = await resumed.op('welcome');
        assert.equal(again.resumed, true);
        assert.equal(again.epoch, welcome.epoch);
        assert.equal(again.subscriberId, welcome.subscriberId);
        assert.equal(again.after, 4);
        assert.equal(again.headSeq, 6);
        assert.deepEqual(
          (await resumed.events(2)).map((e) => e.seq),
          [5, 6],
        );
        assert.equal((await resumed.op('replayed')).seq, 6);

        // Seqs continue, and a retried publish from before the restart is still deduped.
        const agent2 = (await subscribe(gw.wsUrl, { sessionId, token: agent }, sub)).client;
        agent2.send({
          op: 'pub',
          id: 'e3',
          type: 'transcript.partial',
          payload: { segmentId: 's', revision: 3, text: 't3' },
        });
        assert.equal((await agent2.op('puback')).seq, 4);
        agent2.send({
          op: 'pub',
          id: 'e6',
          type: 'transcript.partial',
          payload: { segmentId: 's', revision: 6, text: 't6' },
        });
        assert.equal((await agent2.op('puback')).seq, 7);
        assert.equal((await resumed.op('ev')).seq, 7);
        resumed.close();
        agent2.close();
      } finally {
        await gw?.stop();
      }
    });
  });
}
