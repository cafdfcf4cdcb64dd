/**
 * How long an append waits behind a burst of checkpoint writes on a Redis Cluster: the
 * checkpoints of N sessions (one subscriber each) saved in one tick, then one append, on
 * the redis engine and a private 3-master cluster. On a cluster each session's checkpoint
 * is a script call of its own, and each master's connection answers in order, so the
 * append waits behind whatever the checkpoint queue's pace lets out on its master
 * (tick-queue.ts). Prints the median over rounds of the append's wait and of the whole
 * burst, in ms. Run it on two builds to compare them.
 *
 *   npx tsx bench/tools/cluster-checkpoint-burst.ts [sessions=3000] [rounds=7]
 */
import { RedisCluster } from '../../chaos/toolkit/redis-cluster.ts';
import { RedisEngine } from '../../src/engine/redis/redis-engine.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { CONTRACT_LIMITS, makeEvent } from '../../test/engine/contract.ts';

const sessions = Number(process.argv[2] ?? 3000);
const rounds = Number(process.argv[3] ?? 7);

const cluster = await RedisCluster.start();
const engine = await RedisEngine.connect({
  clusterNodes: cluster.nodes,
  clock: new ManualClock(),
  limits: CONTRACT_LIMITS,
  keyPrefix: 'burst:',
});
try {
  const ids = Array.from({ length: sessions }, (_, i) => `s${i}`);
  for (let i = 0; i < ids.length; i += 500)
    await Promise.all(
      ids
        .slice(i, i + 500)
        .map((id) => engine.createSubscriber(id, { id: 'a', userId: 'u', tenantId: 't', after: 0 })),
    );
  // warm-up: both scripts loaded on every master
  await Promise.all(ids.map((id) => engine.saveCheckpoint(id, 'a', 1, 1)));
  await engine.append('probe', [makeEvent('probe', 'warm')]);
  const waits: number[] = [];
  const bursts: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const start = performance.now();
    const burst = Promise.all(ids.map((id) => engine.saveCheckpoint(id, 'a', 1, 2 + round)));
    const sent = performance.now();
    await engine.append('probe', [makeEvent('probe', `e${round}`)]);
    waits.push(performance.now() - sent);
    await burst;
    bursts.push(performance.now() - start);
  }
  const median = (values: number[]): string =>
    [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!.toFixed(1);
  console.log(
    `${sessions} sessions: append behind the burst median ${median(waits)} ms ` +
      `[${waits.map((ms) => ms.toFixed(1)).join(', ')}]; whole burst median ${median(bursts)} ms`,
  );
} finally {
  await engine.close();
  await cluster.stop();
}
