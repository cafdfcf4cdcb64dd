import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { RedisCluster } from '../../chaos/toolkit/redis-cluster.ts';
import { sessionKeys } from '../../src/engine/redis/keys.ts';
import type { PublishResult } from '../../client/index.ts';
import { assertExactlyOnce, closeClients, history, until } from '../client/support.ts';
import type { TestGateway } from '../helpers/gateway.ts';
import { publishNth, startNodes, watch } from './cluster-support.ts';

/**
 * Resharding under two gateway nodes: a session's slot moves to another master while it
 * is published to, as `redis-cli --cluster reshard` moves it (IMPORTING / MIGRATING, its
 * keys MIGRATEd one by one, then the new owner announced). While the slot is split
 * between the two masters, a script finds some of its keys gone (TRYAGAIN) or all of
 * them (ASK); none runs on half the session. Afterwards the session lives on the new
 * master: every publish stored once, in order; the subscriber on the other node gets
 * every event once without starting over, and hears of new ones through its notices,
 * which moved with the slot (Redis unsubscribes the channel on the old master and the
 * client subscribes again). The head audit is off, so it cannot stand in for a notice.
 */
const PREFIX = 'rsh:';
let cluster: RedisCluster;
const nodes: TestGateway[] = [];

before(async () => {
  cluster = await RedisCluster.start({ masters: 3 });
  const env = {
    REDIS_CLUSTER_NODES: cluster.nodes.join(','),
    REDIS_KEY_PREFIX: PREFIX,
    REDIS_COMMAND_TIMEOUT_MS: '2000',
    HEAD_AUDIT_MS: '0',
  };
  nodes.push(...(await startNodes('r', env)));
});
after(async () => {
  await closeClients();
  await Promise.allSettled(nodes.map((n) => n.stop()));
  await cluster.stop();
});

describe('a Redis Cluster reshards under gateway nodes', () => {
  it("moves a session's slot while it is published to: every publish stored once and in order, delivered once, notices follow the slot", async () => {
    const [a, b] = nodes as [TestGateway, TestGateway];
    const owner = await a.token('alice');
    const {
      sessionId,
      slot,
      master: from,
      watcher,
      seen,
      watcherWire,
      publisher,
    } = await watch(cluster, PREFIX, [a, b], await a.createSession(owner));
    const to = (await cluster.topology()).map((m) => m.master).find((port) => port !== from)!;
    let n = 0;
    const publish = (): Promise<PublishResult> => publishNth(publisher, sessionId, ++n);
    for (let i = 0; i < 3; i++) await publish();
    await until(() => seen.seqs.length === 4, 5000, 'events before the move');

    const newMaster = await cluster.monitor(to);
    // A publish after each key moved: these meet the slot split between the masters.
    const during: Array<Promise<PublishResult>> = [];
    let keysMoved = 0;
    await cluster.migrateSlot(slot, to, async (moved) => {
      keysMoved = moved;
      during.push(publish());
      await sleep(50);
    });
    assert.ok(keysMoved >= 3, `the session's keys moved one by one (${keysMoved})`);
    assert.equal(await cluster.masterOf(slot), to);

    const results = await Promise.all(during);
    assert.deepEqual(
      results.map((r) => r.seq),
      results.map((_, i) => 5 + i),
      'stored once each, in the order published',
    );
    // After the move: new events reach the other node's subscriber by notice.
    for (let i = 0; i < 3; i++) await publish();
    const last = 1 + n;
    await until(
      () => seen.seqs.length === last,
      5000,
      () => `every event delivered (${seen.seqs.join(',')} of 1..${last})`,
    );
    assertExactlyOnce(seen.seqs, 1, last);
    // Both nodes watch the session's channel on its new master now.
    const channel = sessionKeys(PREFIX, sessionId).channel;
    const subscribed = newMaster.lines.filter((line) =>
      new RegExp(`"ssubscribe" "${channel.replace(/[{}]/g, '\\$&')}"`, 'i').test(line),
    );
    newMaster.stop();
    assert.equal(
      subscribed.length,
      2,
      `SSUBSCRIBE of ${channel} on the new master: ${subscribed.join(' | ')}`,
    );
    assert.equal(watcher.stats.freshStarts, 1, 'resumed, never started over');
    for (const socket of watcherWire.sockets)
      assert.ok(
        [undefined, 1000, 1013].includes(socket.closeCode),
        `watcher closed with ${String(socket.closeCode)}`,
      );
    const stored = await history(a, { sessionId, ownerToken: owner, agentToken: '' });
    assert.deepEqual(
      stored.map((e) => e.seq),
      Array.from({ length: last }, (_, i) => i + 1),
    );
    // Nothing of the session is left on the old master.
    const left = (await cluster.keysByNode(`${PREFIX}{${encodeURIComponent(sessionId)}}*`)).get(from);
    assert.deepEqual(left, []);
  });
});
