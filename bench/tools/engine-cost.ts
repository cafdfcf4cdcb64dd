/**
 * What the redis engine's hot calls cost the gateway's process, per item (issue 6), on a
 * private redis-server whose own work is not counted. Rounds run back to back, all of a
 * round's calls in one tick, as a busy node makes them: throughput cost, not latency. Each
 * mode prints the median process CPU (user + system) per item over the rounds after the
 * first quarter (warm-up), and the young-generation collections of the whole run per 1,000
 * items (all ways together): fewer means less allocated, and unlike CPU time it hardly
 * moves with the machine's noise. Run it on two builds to compare them.
 *
 * It also prints what the same calls cost redis-server (its process CPU over the rounds
 * after the first quarter, per item) and Redis's own per-command counts and times
 * (`INFO commandstats`), per item: on the benchmark machine Redis shares a core with the
 * load generator, so its cost per event decides where the rig saturates. `--aof` runs
 * Redis as the benchmark does (appendonly yes, appendfsync everysec); `--watch` watches
 * every session first, so each append's notice is delivered to this process as it is to
 * a gateway whose actors watch their sessions. `--replicas N` gives the server N replicas
 * (REPLICAOF, in sync before the first round) and `--wait` makes the engine wait for all
 * of them on every write of events (REDIS_WAIT_REPLICAS=N). Each mode also prints the
 * median wall time of a round: WAIT costs the gateway little CPU but holds the
 * connection, so its price is in the time a round takes.
 *
 *   npx tsx bench/tools/engine-cost.ts append [SESSIONS=5000] [ROUNDS=40]
 *     one event appended to each of SESSIONS sessions per round (the many-sessions shape)
 *   npx tsx bench/tools/engine-cost.ts checkpoint [SUBSCRIBERS=10000] [ROUNDS=40]
 *     one checkpoint per subscriber (over 100 sessions) per round, alternately as one
 *     saveCheckpoint each and as one saveCheckpoints per session (what a session actor
 *     sends per tick)
 *   npx tsx bench/tools/engine-cost.ts peek [SESSIONS=5000] [ROUNDS=40]
 *     the head of each of SESSIONS sessions (ten events each) per round, as the head
 *     audit reads it (peekHeads in batches of AUDIT_BATCH) and as one head call each
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { cpuSeconds } from '../lib/proc.ts';
import { parseCommandStats } from '../lib/redis-stats.ts';
import { cpuUsage } from 'node:process';
import { RedisEngine } from '../../src/engine/redis/redis-engine.ts';
import type { CheckpointWrite } from '../../src/engine/engine.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { CONTRACT_LIMITS, makeEvent } from '../../test/engine/contract.ts';
import { AUDIT_BATCH } from '../../src/session/head-audit.ts';

type Round = (round: number) => Promise<unknown>;

const argv = process.argv.slice(2);
const flag = (name: string): boolean => {
  const at = argv.indexOf(name);
  if (at >= 0) argv.splice(at, 1);
  return at >= 0;
};
const option = (name: string): string | undefined => {
  const at = argv.indexOf(name);
  if (at < 0) return undefined;
  const [, value] = argv.splice(at, 2);
  return value;
};
const aof = flag('--aof');
const watchAll = flag('--watch');
const wait = flag('--wait');
const replicaCount = Number(option('--replicas') ?? 0);
const [mode, countArg, roundsArg] = argv;
if (
  (mode !== 'append' && mode !== 'checkpoint' && mode !== 'peek') ||
  !Number.isInteger(replicaCount) ||
  replicaCount < 0
) {
  console.error(
    'usage: engine-cost.ts append|checkpoint|peek [COUNT] [ROUNDS] [--aof] [--watch] [--replicas N [--wait]]',
  );
  process.exit(2);
}
const rounds = Number(roundsArg ?? 40);
let scavenges = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries())
    if ((entry as { detail?: { kind?: number } }).detail?.kind === 1) scavenges++;
}).observe({ entryTypes: ['gc'] });
const server = await RedisServer.start(aof ? { aof: true, appendfsync: 'everysec' } : { aof: false });
const replicas = await startReplicas(replicaCount);
const engine = await RedisEngine.connect({
  url: server.url,
  clock: new ManualClock(),
  // the default retention (HISTORY_MAX_EVENTS): streams stay under it, as in the benchmark
  limits: { ...CONTRACT_LIMITS, historyMaxEvents: 100_000 },
  keyPrefix: 'cost:',
  waitReplicas: wait ? replicaCount : 0,
});
try {
  const ways =
    mode === 'append'
      ? appendWays(Number(countArg ?? 5000))
      : mode === 'peek'
        ? await peekWays(Number(countArg ?? 5000))
        : await checkpointWays(Number(countArg ?? 10_000));
  const samples = new Map<string, number[]>([...ways.runs.keys()].map((name) => [name, []]));
  const walls = new Map<string, number[]>([...ways.runs.keys()].map((name) => [name, []]));
  const warmRounds = Math.floor(rounds / 4);
  let redisFrom = Number.NaN;
  for (let r = 1; r <= rounds; r++) {
    if (r === warmRounds + 1) {
      await server.command('CONFIG', 'RESETSTAT');
      redisFrom = cpuSeconds(server.pid!);
    }
    for (const [name, run] of ways.runs) {
      const before = cpuUsage();
      const started = performance.now();
      await run(r);
      walls.get(name)!.push(performance.now() - started);
      const used = cpuUsage(before);
      samples.get(name)!.push((used.user + used.system) / ways.items);
    }
  }
  const measured = ways.items * (rounds - warmRounds) * ways.runs.size;
  const redisUs = ((cpuSeconds(server.pid!) - redisFrom) * 1e6) / measured;
  const stats = Object.entries(parseCommandStats(String(await server.command('INFO', 'commandstats'))));
  await new Promise((resolve) => setTimeout(resolve, 10)); // let the gc observer report
  const perThousand = (scavenges * 1000) / (ways.items * rounds * ways.runs.size);
  console.log(
    `${mode}: ${ways.items} per round, ${rounds} rounds, ${perThousand.toFixed(2)} scavenges per 1,000 items` +
      (replicaCount > 0 ? `, ${replicaCount} replica(s)${wait ? ', waited for' : ''}` : ''),
  );
  for (const [name, values] of samples) {
    console.log(
      `${name}: median ${median(values).toFixed(2)} µs of process CPU per item, ` +
        `${median(walls.get(name)!).toFixed(1)} ms per round`,
    );
  }
  console.log(`redis-server: ${redisUs.toFixed(2)} µs of CPU per item (all ways, after warm-up)`);
  for (const [command, s] of stats.sort(([, a], [, b]) => b.usec - a.usec).slice(0, 12)) {
    if (command === 'config|resetstat') continue;
    console.log(
      `  ${command.padEnd(12)} ${(s.calls / measured).toFixed(2).padStart(6)} calls, ` +
        `${(s.usec / measured).toFixed(2).padStart(6)} µs per item`,
    );
  }
} finally {
  await engine.close();
  for (const replica of replicas) await replica.stop();
  await server.stop();
}

/** The median of the rounds after the warm-up quarter. */
function median(values: number[]): number {
  const sorted = values.slice(Math.floor(rounds / 4)).sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function startReplicas(count: number): Promise<RedisServer[]> {
  if (count === 0) return [];
  const started: RedisServer[] = [];
  for (let i = 0; i < count; i++) {
    const replica = await RedisServer.start({ aof: false });
    await replica.follow(server);
    started.push(replica);
  }
  await server.replicasInSync(count);
  return started;
}

function appendWays(sessions: number): { items: number; runs: Map<string, Round> } {
  const sids = Array.from({ length: sessions }, (_, i) => `session-${i}`);
  if (watchAll) for (const sid of sids) engine.watch(sid, () => {});
  const append: Round = (r) => {
    const events = sids.map((sid) => makeEvent(sid, `r${r}`));
    return Promise.all(sids.map((sid, i) => engine.append(sid, [events[i]!])));
  };
  return { items: sessions, runs: new Map([['append', append]]) };
}

async function checkpointWays(subscribers: number): Promise<{ items: number; runs: Map<string, Round> }> {
  const bySession = new Map<string, CheckpointWrite[]>();
  for (let i = 0; i < subscribers; i++) {
    const sid = `session-${i % 100}`;
    await engine.createSubscriber(sid, { id: `sub-${i}`, userId: 'u', tenantId: 't', after: 0 });
    const list = bySession.get(sid) ?? [];
    list.push({ subscriberId: `sub-${i}`, generation: 1, seq: 0 });
    bySession.set(sid, list);
  }
  const all = [...bySession];
  let seq = 0;
  // one call and one promise per checkpoint
  const single: Round = () => {
    seq++;
    return Promise.all(
      all.flatMap(([sid, writes]) => writes.map((w) => engine.saveCheckpoint(sid, w.subscriberId, 1, seq))),
    );
  };
  // one call and one promise per session
  const grouped: Round = () => {
    seq++;
    return Promise.all(
      all.map(([sid, writes]) => {
        for (const w of writes) w.seq = seq;
        return engine.saveCheckpoints(sid, writes);
      }),
    );
  };
  return {
    items: subscribers,
    runs: new Map([
      ['saveCheckpoint', single],
      ['saveCheckpoints', grouped],
    ]),
  };
}

async function peekWays(sessions: number): Promise<{ items: number; runs: Map<string, Round> }> {
  const sids = Array.from({ length: sessions }, (_, i) => `session-${i}`);
  for (let n = 0; n < 10; n++)
    await Promise.all(sids.map((sid) => engine.append(sid, [makeEvent(sid, `e${n}`)])));
  // what one audit round sends: batches one after another
  const peek: Round = async () => {
    for (let at = 0; at < sids.length; at += AUDIT_BATCH)
      await engine.peekHeads(sids.slice(at, at + AUDIT_BATCH));
  };
  // what a resync of each session sends
  const head: Round = () => Promise.all(sids.map((sid) => engine.head(sid)));
  return {
    items: sessions,
    runs: new Map([
      ['peekHeads', peek],
      ['head', head],
    ]),
  };
}
