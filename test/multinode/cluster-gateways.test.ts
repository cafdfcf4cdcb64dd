import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RedisCluster } from '../../chaos/toolkit/redis-cluster.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { TestClient, subscribe, type Frame } from '../helpers/ws-client.ts';

/**
 * Gateway nodes on a local 3-master Redis Cluster: sessions spread over the masters,
 * events fan out across nodes in order (sharded pub/sub), and a resume on another node
 * supersedes the old connection.
 */
let cluster: RedisCluster;
const nodes: TestGateway[] = [];

before(async () => {
  cluster = await RedisCluster.start();
  const env = { REDIS_CLUSTER_NODES: cluster.nodes.join(','), REDIS_KEY_PREFIX: 'cg:' };
  nodes.push(...(await Promise.all([0, 1].map((i) => startTestGateway({ ...env, NODE_ID: `c${i}` })))));
});
after(async () => {
  await Promise.allSettled(nodes.map((n) => n.stop()));
  await cluster.stop();
});

function transcript(i: number): Frame {
  return {
    op: 'pub',
    id: `c${i}`,
    type: 'transcript.partial',
    payload: { segmentId: 's', revision: i, text: `t${i}` },
  };
}

describe('gateway nodes on a Redis Cluster', () => {
  it('fans out in seq order across nodes for sessions on every master, and supersedes across nodes', async () => {
    const [a, b] = nodes as [TestGateway, TestGateway];
    const owner = await a.token('alice');
    const agent = await a.token('bot', 'agent');
    // Enough sessions that their hash tags land on all three masters.
    const sessions = await Promise.all(Array.from({ length: 6 }, () => a.createSession(owner)));
    for (const sessionId of sessions) {
      const { client: watcher, welcome } = await subscribe(a.wsUrl, { sessionId, token: owner, after: 0 });
      const pub = (await subscribe(b.wsUrl, { sessionId, token: agent })).client;
      for (let i = 0; i < 5; i++) {
        pub.send(transcript(i));
        await pub.next((f) => f.op === 'puback' && f.id === `c${i}`);
      }
      assert.deepEqual(
        (await watcher.events(6)).map((e) => e.seq),
        [1, 2, 3, 4, 5, 6],
      );
      const resumed = await TestClient.connect(b.wsUrl);
      resumed.send({ op: 'hello', sessionId, resume: { token: welcome.resumeToken, lastSeq: 6 } });
      assert.equal((await resumed.op('welcome')).resumed, true);
      assert.equal(await watcher.closeCode(), 4009);
      resumed.close();
      pub.close();
    }
  });
});
