import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RedisCluster } from '../../chaos/toolkit/redis-cluster.ts';
import { sessionKeys } from '../../src/engine/redis/keys.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { subscribe, type Frame, type TestClient } from '../helpers/ws-client.ts';

const PREFIX = 'sm:';
let cluster: RedisCluster;
let gw: TestGateway;

before(async () => {
  cluster = await RedisCluster.start();
  gw = await startTestGateway({ REDIS_CLUSTER_NODES: cluster.nodes.join(','), REDIS_KEY_PREFIX: PREFIX });
});
after(async () => {
  await gw?.stop();
  await cluster?.stop();
});

function transcript(id: string): Frame {
  return { op: 'pub', id, type: 'transcript.partial', payload: { segmentId: 's', revision: 0, text: id } };
}

async function masterOf(sessionId: string): Promise<number> {
  return cluster.masterOf(await cluster.keyslot(sessionKeys(PREFIX, sessionId).meta));
}

/**
 * A master that stops answering (SIGSTOP, shorter than the node timeout, so nothing fails
 * over) holds up the calls for its own sessions until it answers or they time out, and
 * no other session's: each session queues its engine calls in a lane of its own on a
 * cluster (see tick-queue.ts). With one lane for the whole node the publish below waited
 * for the stopped master's round: about 2 s, the command timeout.
 */
describe('one slow master of a Redis Cluster', () => {
  it('holds up only the sessions it stores', async () => {
    const owner = await gw.token('alice');
    const agent = await gw.token('bot', 'agent');
    const byMaster = new Map<number, string>();
    while (byMaster.size < 2) {
      const sessionId = await gw.createSession(owner);
      const master = await masterOf(sessionId);
      if (!byMaster.has(master)) byMaster.set(master, sessionId);
    }
    const [[slowMaster, slowSession], [, fastSession]] = [...byMaster] as [
      [number, string],
      [number, string],
    ];
    const pubs: TestClient[] = [];
    for (const sessionId of [slowSession, fastSession]) {
      const { client } = await subscribe(gw.wsUrl, { sessionId, token: agent });
      pubs.push(client);
      client.send(transcript('warm'));
      await client.next((f) => f.op === 'puback');
    }
    const [slowPub, fastPub] = pubs as [TestClient, TestClient];

    // SIGSTOP, for less than the node timeout: the cluster stays up, the master answers nothing
    cluster.pause(slowMaster);
    let resumed = false;
    try {
      slowPub.send(transcript('held'));
      await new Promise((r) => setTimeout(r, 50));
      const t0 = performance.now();
      fastPub.send(transcript('free'));
      const ack = await fastPub.next((f) => f.op === 'puback' || f.op === 'nack');
      // a subscriber joining meanwhile: a session read and a subscriber create on the live master
      const { client: watcher } = await subscribe(gw.wsUrl, {
        sessionId: fastSession,
        token: owner,
        after: 0,
      });
      const seqs = (await watcher.events(2)).map((e) => e.seq);
      const ms = performance.now() - t0;
      assert.equal(ack.op, 'puback');
      assert.deepEqual(seqs, [1, 2]);
      assert.ok(ms < 1000, `the other master's session served in ${ms.toFixed(0)} ms`);
      assert.equal(
        slowPub.frames.some((f) => f.op === 'puback' || f.op === 'nack'),
        false,
        'the stopped master answered nothing meanwhile',
      );
      watcher.close();
      await cluster.resume(slowMaster);
      resumed = true;
      // what the stopped master held is answered once it runs again (or refused as retryable)
      const held = await slowPub.next((f) => f.op === 'puback' || f.op === 'nack');
      assert.equal(held.id, 'held');
      if (held.op === 'nack') assert.equal(held.code, 'unavailable');
    } finally {
      if (!resumed) await cluster.resume(slowMaster);
    }
    for (const pub of pubs) pub.close();
  });
});
