/**
 * `npx tsx bench/tools/checkpoint-cost.ts [SUBSCRIBERS] [ROUNDS]`: what one checkpoint write
 * costs the gateway's process on the redis engine (issue 6: at low rates every delivered
 * event is acked, and an ack's checkpoint write cost about as much as the receive).
 *
 * On a private redis-server (its own core's work is not counted), SUBSCRIBERS subscribers
 * spread over 100 sessions each save one checkpoint per round, all in one tick, as the acks
 * of one fan-out do: alternately one saveCheckpoint per checkpoint and one saveCheckpoints
 * per session (what a session actor sends per tick). Prints the median process CPU (user +
 * system) per checkpoint of each way. Rounds are back to back: throughput cost, not latency.
 */
import { cpuUsage } from 'node:process';
import { RedisEngine } from '../../src/engine/redis/redis-engine.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { CONTRACT_LIMITS } from '../../test/engine/contract.ts';

const subscribers = Number(process.argv[2] ?? 10_000);
const rounds = Number(process.argv[3] ?? 40);
const server = await RedisServer.start({ aof: false });
const engine = await RedisEngine.connect({
  url: server.url,
  clock: new ManualClock(),
  limits: CONTRACT_LIMITS,
  keyPrefix: 'cp:',
});
try {
  const sessions = Array.from({ length: 100 }, (_, i) => `session-${i}`);
  const subs: { sid: string; id: string }[] = [];
  for (let i = 0; i < subscribers; i++) {
    const sid = sessions[i % sessions.length]!;
    subs.push({ sid, id: `sub-${i}` });
  }
  await Promise.all(
    subs.map((s) => engine.createSubscriber(s.sid, { id: s.id, userId: 'u', tenantId: 't', after: 0 })),
  );
  const bySession = new Map<string, { subscriberId: string; generation: number; seq: number }[]>();
  for (const s of subs) {
    const list = bySession.get(s.sid) ?? [];
    list.push({ subscriberId: s.id, generation: 1, seq: 0 });
    bySession.set(s.sid, list);
  }
  const ways = {
    // one call and one promise per checkpoint
    saveCheckpoint: (r: number) => Promise.all(subs.map((s) => engine.saveCheckpoint(s.sid, s.id, 1, r))),
    // one call and one promise per session, as a session actor makes per tick
    saveCheckpoints: (r: number) =>
      Promise.all(
        [...bySession].map(([sid, writes]) => {
          for (const w of writes) w.seq = r;
          return engine.saveCheckpoints(sid, writes);
        }),
      ),
  };
  console.log(
    `checkpoint writes: ${subscribers} per round over ${sessions.length} sessions, ${rounds} rounds each way, alternating`,
  );
  const samples: Record<string, number[]> = { saveCheckpoint: [], saveCheckpoints: [] };
  let seq = 0;
  for (let r = 0; r < rounds; r++) {
    for (const [name, run] of Object.entries(ways)) {
      const before = cpuUsage();
      await run(++seq);
      const used = cpuUsage(before);
      samples[name]!.push((used.user + used.system) / subscribers);
    }
  }
  for (const [name, values] of Object.entries(samples)) {
    const sorted = values.slice(rounds / 4).sort((a, b) => a - b); // the first quarter warms up
    console.log(
      `${name}: median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(2)} µs of process CPU per checkpoint`,
    );
  }
} finally {
  await engine.close();
  await server.stop();
}
