/**
 * M1–M4 on one connected fleet: `sessions` topics × `perSession` subscribers.
 *
 *   connect (handshake rate and p99: M4) → GC → idle RSS per connection, Redis bytes,
 *   idle wire bytes (M3) → a ladder of publish rates, each a measured window (M1, M2).
 *
 * A rate point counts as sustainable when ≥ 99.99 % of the window's deliveries arrived
 * (after a drain), p99 < 50 ms, and no subscriber saw a gap or a duplicate.
 */
import { performance } from 'node:perf_hooks';
import { type CommandStats, commandStatsDelta, parseCommandStats } from '../../lib/redis-stats.ts';
import { nowMicros } from '../../lib/wire.ts';
import { OpenLoop } from '../driver.ts';
import { Fleet } from '../loadgen/fleet.ts';
import { TIMELINE_BUCKET_US, type Timeline } from '../loadgen/messages.ts';
import { percentilesMs } from '../loadgen/histogram.ts';
import { CLIENT_CORE, ArmServer, type ArmSpec } from '../servers.ts';
import { CpuSpan, corePercent, coreTicks } from '../proc.ts';
import { connectPublisher, createTopics, loadArmClient, sourceAddresses, warmBaseline } from './setup.ts';

export interface FanoutOptions {
  sessions: number;
  perSession: number;
  payloadBytes: number;
  /** Events per second per session, ascending. */
  rates: number[];
  warmupS: number;
  windowS: number;
  idleS: number;
  /** Handshakes in flight across the fleet. */
  concurrency: number;
  log: (line: string) => void;
}

export interface Latency {
  p50: number;
  p99: number;
  p999: number;
  max: number;
  count: number;
}

export interface RatePoint {
  rate: number;
  /** Deliveries the window's events owed, and the share of them that arrived. */
  expected: number;
  deliveredFraction: number;
  deliveriesPerS: number;
  latency: Latency;
  server: { user: number; system: number; total: number; percent: number };
  /** Deliveries per server CPU-second (user + system) and per user CPU-second. */
  perCpuS: number;
  perUserCpuS: number;
  redisPercent: number;
  /**
   * Redis's own per-command counts and microseconds over the window (`INFO commandstats`
   * deltas; scripts count once as evalsha, and their inner commands again by name): where
   * the arm's Redis time goes, on the core it shares with the load generator.
   */
  redisCommands?: CommandStats;
  /**
   * Forks of the arm's Redis during the window (AOF rewrites: with `appendonly yes` Redis
   * rewrites its AOF in a forked child once the file has doubled past 64 MB; the child runs
   * on the load generator's core, and copy-on-write slows the parent's writes meanwhile).
   */
  redisForks?: number;
  /**
   * Redis's latency monitor over the window: per event (`fork`, `aof-write`,
   * `aof-fsync-always`, `command`, …) the longest stall of 10 ms or more, in ms.
   */
  redisLatency?: Record<string, number>;
  /**
   * The server's GC pauses and event-loop stalls that began during the window or its
   * drain (BENCH_PAUSES=MS runs only): `[ms from the window's start, duration ms, what]`.
   */
  serverPauses?: [number, number, string][];
  clientCorePercent: number;
  /**
   * The window's deliveries by the send time of their event (TIMELINE_BUCKET_US buckets,
   * empty ones left out): `[ms from the window's start, deliveries, mean ms, max ms]`.
   * One event's fan-out (or one stall) shows as one bucket whose max stands out. Runs
   * before session 10 do not have it, nor workerP99Ms.
   */
  timeline?: [number, number, number, number][];
  /** WebSocket pings the server sent the clients during the window (and its drain). */
  pings?: number;
  /** Each load-generator process's own p99 (ms): one starved worker shows here. */
  workerP99Ms?: number[];
  clientBound: boolean;
  gaps: number;
  duplicates: number;
  closes: Record<string, number>;
  /**
   * The echo shape's publishes the gateway refused, by nack code, since the clients
   * connected (lifetime, like closes). Older result files lack it.
   */
  nacks?: Record<string, number>;
  publisherLagMs: number;
  sustainable: boolean;
}

export interface FanoutResult {
  arm: string;
  sessions: number;
  perSession: number;
  payloadBytes: number;
  connect: { ready: number; failed: number; ms: number; handshakesPerS: number; handshake: Latency };
  memory: {
    /** Server RSS after a GC before and after the warm-up (see `warmBaseline`). */
    rssColdMB?: number;
    rssBaseMB: number;
    rssConnectedMB: number;
    /** Growth per connection since the warm baseline, and since the cold one. */
    rssPerConnKB: number;
    rssPerConnKBCold?: number;
    redisBytesPerSession?: number;
    redisBytesPerConn?: number;
    wireBytesPerConnPerMin: number;
  };
  points: RatePoint[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Handshakes of the warm-up before the memory baseline (at most: the shape's size). */
const WARMUP = 5000;

async function redisUsedMemory(server: ArmServer): Promise<number | undefined> {
  if (!server.redis) return undefined;
  const client = await server.redis.client();
  try {
    const info = String(await client.command('INFO', 'memory'));
    const m = /used_memory:(\d+)/.exec(info);
    return m ? Number(m[1]) : undefined;
  } finally {
    client.close();
  }
}

/** Non-empty buckets as rows (see RatePoint.timeline), times in ms to 0.1. */
function timelineRows(t: Timeline): [number, number, number, number][] {
  const rows: [number, number, number, number][] = [];
  const ms = (us: number): number => Math.round(us / 100) / 10;
  t.count.forEach((count, i) => {
    if (count > 0) rows.push([ms(i * TIMELINE_BUCKET_US), count, ms(t.sumUs[i]! / count), ms(t.maxUs[i]!)]);
  });
  return rows;
}

/** The bucket with the largest max, and the median of the buckets' maxima. */
function worstBucket(rows: readonly [number, number, number, number][]): string {
  if (rows.length === 0) return '';
  const worst = rows.reduce((a, b) => (b[3] > a[3] ? b : a));
  const maxima = rows.map((r) => r[3]).sort((a, b) => a - b);
  return `, worst event ${worst[3]} ms at +${(worst[0] / 1000).toFixed(2)} s (median event max ${maxima[Math.floor(maxima.length / 2)]!} ms)`;
}

/** ", nacks so far: 12 (unavailable 12)" when the gateway refused any echo publish. */
function nackNote(nacks: Record<string, number>): string {
  const entries = Object.entries(nacks);
  if (entries.length === 0) return '';
  const total = entries.reduce((a, [, n]) => a + n, 0);
  return `, nacks so far: ${total} (${entries.map(([code, n]) => `${code} ${n}`).join(', ')})`;
}

function longestPause(pauses: [number, number, string][] | undefined): string {
  if (!pauses) return '';
  if (pauses.length === 0) return ', no server pause';
  const [at, ms, what] = pauses.reduce((a, b) => (b[1] > a[1] ? b : a));
  return `, ${pauses.length} server pause(s), longest ${what} ${ms} ms at +${(at / 1000).toFixed(2)} s`;
}

/** `LATENCY LATEST` rows `[event, unix s, latest ms, max ms]` as event → max ms. */
function parseLatencyLatest(reply: unknown): Record<string, number> {
  const out: Record<string, number> = {};
  if (!Array.isArray(reply)) return out;
  for (const row of reply) {
    if (Array.isArray(row) && typeof row[0] === 'string') out[row[0]] = Number(row[3]);
  }
  return out;
}

/** What the arm's Redis has counted so far: commands, forks and latency-monitor events. */
interface RedisSnapshot {
  commands: CommandStats;
  forks: number;
  latency: Record<string, number>;
}

/**
 * Reads the counters on one connection (a window's setup stays short: at 40 ev/s the
 * window's first event is due 25 ms after the warm-up's last), then with `resetLatency`
 * clears the latency monitor so the next snapshot holds only what came after.
 */
async function redisSnapshot(server: ArmServer, resetLatency: boolean): Promise<RedisSnapshot | undefined> {
  if (!server.redis) return undefined;
  const client = await server.redis.client();
  try {
    const commands = parseCommandStats(String(await client.command('INFO', 'commandstats')));
    const forks = /total_forks:(\d+)/.exec(String(await client.command('INFO', 'stats')));
    const latency = parseLatencyLatest(await client.command('LATENCY', 'LATEST'));
    if (resetLatency) await client.command('LATENCY', 'RESET');
    return { commands, forks: forks ? Number(forks[1]) : Number.NaN, latency };
  } finally {
    client.close();
  }
}

export async function runFanout(spec: ArmSpec, o: FanoutOptions): Promise<FanoutResult> {
  const server = await ArmServer.start(spec);
  let fleet: Fleet | undefined;
  try {
    const arm = await loadArmClient(spec.kind);
    const setup = await createTopics(server, o.sessions);
    const total = o.sessions * o.perSession;
    fleet = await Fleet.start(Math.max(2, Math.ceil(total / 9000)), {
      kind: spec.kind,
      url: server.url,
      ...(setup.token !== undefined ? { token: setup.token } : {}),
      ackEvery: 32,
      localAddresses: sourceAddresses(8),
    });
    const warm = await warmBaseline(server, fleet, setup.topics, Math.min(total, WARMUP), o.concurrency);
    const rssBase = warm.rss;
    const redisBase = await redisUsedMemory(server);
    const connected = await fleet.connect(setup.topics, o.perSession, o.concurrency);
    const handshake = percentilesMs(connected.histogram);
    o.log(
      `${spec.name}: ${connected.ready}/${total} connected in ${(connected.ms / 1000).toFixed(1)} s, handshake p99 ${handshake.p99} ms`,
    );

    await sleep(1000);
    await server.gc();
    const rssConnected = server.rss;
    const redisConnected = await redisUsedMemory(server);
    const bytesFrom = await fleet.bytes();
    await sleep(o.idleS * 1000);
    const bytesTo = await fleet.bytes();
    const idleBytes = bytesTo.read - bytesFrom.read + (bytesTo.written - bytesFrom.written);

    // Many sessions with one client each: every client publishes on its own connection
    // (G would otherwise need a second socket per session, past the open-files limit).
    const echo = o.perSession === 1 && o.sessions > 1;
    const publisher = echo ? undefined : await connectPublisher(arm, server, setup);
    const loop = publisher ? new OpenLoop(publisher, setup.topics, o.payloadBytes) : undefined;
    // G's stream starts with call.created: the gateway seq is the publisher's + 1.
    const seqOffset = spec.kind === 'gateway' ? 1 : 0;
    const echoRun = (rate: number, seconds: number, fromUs: number, toUs: number, drainMs: number) =>
      fleet!.echo({
        ratePerSub: rate,
        seconds,
        payloadBytes: o.payloadBytes,
        fromUs,
        toUs,
        seqOffset,
        drainMs,
      });
    const points: RatePoint[] = [];
    for (const rate of o.rates) {
      if (loop) await loop.run(rate, o.warmupS);
      else await echoRun(rate, o.warmupS, 0, 0, 0);
      const redisFrom = await redisSnapshot(server, true);
      const fromUs = nowMicros() + 20_000;
      const toUs = fromUs + o.windowS * 1e6;
      await fleet.openWindow(fromUs, toUs);
      const cpu = new CpuSpan(server.pids);
      const redisCpu = server.redis?.pid !== undefined ? new CpuSpan([server.redis.pid]) : undefined;
      const core0 = coreTicks(Number(CLIENT_CORE));
      let publisherLagMs = 0;
      let windowSent: number;
      if (loop) {
        loop.maxLagMs = 0;
        windowSent = await loop.run(rate, o.windowS + 0.02, { fromUs, toUs });
        publisherLagMs = loop.maxLagMs;
      } else {
        const r = await echoRun(rate, o.windowS + 0.02, fromUs, toUs, 0);
        windowSent = r.inWindow;
        publisherLagMs = r.maxLagMs;
      }
      const serverCpu = cpu.stop();
      const clientCorePercent = corePercent(core0, coreTicks(Number(CLIENT_CORE)));
      const redisPercent = redisCpu?.stop().percent ?? 0;
      const redisTo = await redisSnapshot(server, false);
      const windowReport = await fleet.report();
      // drain: wait until every subscriber holds its topic's last event (or 10 s)
      let report;
      if (loop && publisher) {
        await publisher.drain();
        const drainUntil = performance.now() + 10_000;
        report = await fleet.report();
        while (performance.now() < drainUntil) {
          const behind = setup.topics.some(
            (t) => (report!.lastSeq[t]?.min ?? -1) < loop.seq.get(t)! + seqOffset,
          );
          if (!behind) break;
          await sleep(200);
          report = await fleet.report();
        }
      } else {
        await echoRun(rate, 0, 0, 0, 10_000);
        report = await fleet.report();
      }
      const expected = windowSent * o.perSession;
      const latency = percentilesMs(report.latency);
      const deliveredFraction = expected > 0 ? report.latency.totalCount / expected : 0;
      const deliveriesPerS = windowReport.deliveredPerS;
      const delivered = deliveriesPerS * serverCpu.wallS;
      const point: RatePoint = {
        rate,
        expected,
        deliveredFraction,
        deliveriesPerS,
        latency,
        server: {
          user: serverCpu.user,
          system: serverCpu.system,
          total: serverCpu.total,
          percent: serverCpu.percent,
        },
        // below one clock tick (10 ms) of CPU the ratio means nothing: left undefined
        perCpuS: serverCpu.total > 0 ? delivered / serverCpu.total : Number.NaN,
        perUserCpuS: serverCpu.user > 0 ? delivered / serverCpu.user : Number.NaN,
        redisPercent,
        ...(redisFrom && redisTo
          ? {
              redisCommands: commandStatsDelta(redisFrom.commands, redisTo.commands),
              redisForks: redisTo.forks - redisFrom.forks,
              redisLatency: redisTo.latency,
            }
          : {}),
        ...(process.env['BENCH_PAUSES']
          ? {
              serverPauses: server.pauses
                .filter((p) => p.atUs >= fromUs)
                .map((p): [number, number, string] => [Math.round((p.atUs - fromUs) / 1000), p.ms, p.what]),
            }
          : {}),
        clientCorePercent,
        timeline: timelineRows(report.timeline),
        workerP99Ms: report.workers.map((w) => w.p99Ms),
        pings: report.windowPings,
        clientBound: clientCorePercent >= 85,
        gaps: report.gaps,
        duplicates: report.duplicates,
        closes: report.closes,
        nacks: report.nacks,
        publisherLagMs,
        sustainable:
          deliveredFraction >= 0.9999 && latency.p99 < 50 && report.gaps === 0 && report.duplicates === 0,
      };
      points.push(point);
      o.log(
        `${spec.name} ${rate}/s×${o.sessions}×${o.perSession}: ${Math.round(deliveriesPerS)} deliv/s, ` +
          `${(deliveredFraction * 100).toFixed(3)}% delivered, p50 ${latency.p50} p99 ${latency.p99} ms, ` +
          `server ${serverCpu.percent.toFixed(0)}% (user ${((serverCpu.user / serverCpu.wallS) * 100).toFixed(0)}%), ` +
          `${Math.round(point.perCpuS)}/cpu-s, client core ${clientCorePercent.toFixed(0)}%` +
          (server.redis
            ? ` (redis ${redisPercent.toFixed(0)}%${point.redisForks ? `, ${point.redisForks} fork(s)` : ''}` +
              `${Object.entries(point.redisLatency ?? {})
                .map(([event, ms]) => `, ${event} ${ms} ms`)
                .join('')})`
            : '') +
          `${point.clientBound ? ' CLIENT-BOUND' : ''}${point.sustainable ? '' : ' (not sustainable)'}` +
          `${worstBucket(point.timeline ?? [])}${point.pings ? `, ${point.pings} server pings` : ''}, worker p99 ${point.workerP99Ms?.join('/') ?? '?'} ms` +
          nackNote(report.nacks) +
          longestPause(point.serverPauses),
      );
      // far past saturation: higher rates only cost time
      if (deliveredFraction < 0.5 || latency.p99 > 5000) break;
    }
    publisher?.close();
    const conns = Math.max(1, connected.ready);
    return {
      arm: spec.name,
      sessions: o.sessions,
      perSession: o.perSession,
      payloadBytes: o.payloadBytes,
      connect: {
        ready: connected.ready,
        failed: connected.failed,
        ms: connected.ms,
        handshakesPerS: connected.ready / (connected.ms / 1000),
        handshake,
      },
      memory: {
        rssColdMB: warm.cold / 2 ** 20,
        rssBaseMB: rssBase / 2 ** 20,
        rssConnectedMB: rssConnected / 2 ** 20,
        rssPerConnKB: (rssConnected - rssBase) / conns / 1024,
        rssPerConnKBCold: (rssConnected - warm.cold) / conns / 1024,
        ...(redisBase !== undefined && redisConnected !== undefined
          ? {
              redisBytesPerSession: (redisConnected - redisBase) / o.sessions,
              redisBytesPerConn: (redisConnected - redisBase) / conns,
            }
          : {}),
        wireBytesPerConnPerMin: (idleBytes / conns) * (60 / o.idleS),
      },
      points,
    };
  } finally {
    await fleet?.close();
    await server.close();
  }
}
