/**
 * How long an append waits behind a burst of checkpoint writes on a Redis Cluster: the
 * checkpoints of N sessions (one subscriber each) saved in one tick, then one append, on
 * the redis engine and a private 3-master cluster. On a cluster each session's checkpoint
 * is a script call of its own, and each master's connection answers in order, so the
 * append waits behind whatever the checkpoint queue's pace lets out on its master
 * (tick-queue.ts). Prints the median over rounds of the append's wait and of the whole
 * burst, in ms. Run it on two builds to compare them.
 *
 * `--stall`: one master is stopped (SIGSTOP) before each burst and started again after
 * it. Its sessions' checkpoints time out (REDIS_COMMAND_TIMEOUT_MS, 2 s); the tool prints
 * how long the other masters' sessions took to have theirs written, which is what the
 * pace budget that all masters share costs while one of them stalls.
 *
 *   npx tsx bench/tools/cluster-checkpoint-burst.ts [sessions=3000] [rounds=7] [--stall]
 */
import calculateSlot from 'cluster-key-slot';
import { RedisCluster } from '../../chaos/toolkit/redis-cluster.ts';
import { sessionKeys } from '../../src/engine/redis/keys.ts';
import { RedisEngine } from '../../src/engine/redis/redis-engine.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { CONTRACT_LIMITS, makeEvent } from '../../test/engine/contract.ts';

const args = process.argv.slice(2);
const stall = args.includes('--stall');
const [sessionsArg, roundsArg] = args.filter((arg) => !arg.startsWith('--'));
const sessions = Number(sessionsArg ?? 3000);
const rounds = Number(roundsArg ?? 7);

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
  const median = (values: number[]): string =>
    [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!.toFixed(1);
  await (stall ? stalledBursts(ids) : bursts(ids));

  /** Each round: one master stopped, every session's checkpoint saved, the others' timed. */
  async function stalledBursts(ids: string[]): Promise<void> {
    const masters = await mastersOf(ids);
    const stopped = masters.get(ids[0]!)!;
    const healthy = ids.filter((id) => masters.get(id) !== stopped).length;
    const times: number[] = [];
    let timedOut = 0;
    for (let round = 0; round < rounds; round++) {
      cluster.pause(stopped);
      const start = performance.now();
      // in session order: the stopped master's sessions are spread through the burst
      const writes = ids.map((id) => engine.saveCheckpoint(id, 'a', 1, 2 + round));
      const stalled = Promise.allSettled(writes.filter((_, i) => masters.get(ids[i]!) === stopped));
      await Promise.all(writes.filter((_, i) => masters.get(ids[i]!) !== stopped));
      times.push(performance.now() - start);
      await cluster.resume(stopped);
      timedOut += (await stalled).filter((r) => r.status === 'rejected').length;
    }
    console.log(
      `${sessions} sessions, one master of 3 stopped: the other ${healthy} sessions' checkpoints ` +
        `written in median ${median(times)} ms [${times.map((ms) => ms.toFixed(0)).join(', ')}]; ` +
        `${timedOut} checkpoints on the stopped master failed`,
    );
  }

  async function bursts(ids: string[]): Promise<void> {
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
    console.log(
      `${sessions} sessions: append behind the burst median ${median(waits)} ms ` +
        `[${waits.map((ms) => ms.toFixed(1)).join(', ')}]; whole burst median ${median(bursts)} ms`,
    );
  }
} finally {
  await engine.close();
  await cluster.stop();
}

/** The port of each session's master, from one CLUSTER SLOTS. */
async function mastersOf(ids: string[]): Promise<Map<string, number>> {
  const ranges = (await cluster.command(undefined, 'CLUSTER', 'SLOTS')) as [
    number,
    number,
    [string, number],
  ][];
  const portOf = (slot: number): number => ranges.find(([from, to]) => slot >= from && slot <= to)![2][1];
  return new Map(ids.map((id) => [id, portOf(calculateSlot(sessionKeys('burst:', id).meta))]));
}
