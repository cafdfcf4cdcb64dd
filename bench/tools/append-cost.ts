/**
 * `npx tsx bench/tools/append-cost.ts [SESSIONS] [ROUNDS]`: what appending costs the
 * gateway's process on the redis engine, per event, in the many-sessions shape (issue 6:
 * 5,000 sessions with one event each per tick, each its own batch in one script call).
 *
 * On a private redis-server (its work is not counted), each round appends one event to
 * each of SESSIONS sessions in one tick; prints the median process CPU (user + system)
 * per event over the rounds after the first quarter (warm-up). Run it on two builds to
 * compare them; rounds are back to back: throughput cost, not latency.
 */
import { cpuUsage } from 'node:process';
import { RedisEngine } from '../../src/engine/redis/redis-engine.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { CONTRACT_LIMITS, makeEvent } from '../../test/engine/contract.ts';

const sessions = Number(process.argv[2] ?? 5000);
const rounds = Number(process.argv[3] ?? 40);
const server = await RedisServer.start({ aof: false });
const engine = await RedisEngine.connect({
  url: server.url,
  clock: new ManualClock(),
  limits: CONTRACT_LIMITS,
  keyPrefix: 'ap:',
});
try {
  const sids = Array.from({ length: sessions }, (_, i) => `session-${i}`);
  const perEventUs: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const events = sids.map((sid) => makeEvent(sid, `r${r}`));
    const before = cpuUsage();
    await Promise.all(sids.map((sid, i) => engine.append(sid, [events[i]!])));
    const used = cpuUsage(before);
    perEventUs.push((used.user + used.system) / sessions);
  }
  const sorted = perEventUs.slice(rounds / 4).sort((a, b) => a - b);
  console.log(
    `append: ${sessions} sessions × 1 event per round, ${rounds} rounds: median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(2)} µs of process CPU per event`,
  );
} finally {
  await engine.close();
  await server.stop();
}
