/**
 * M3 and M4: ramp idle connections up in steps (to ~18,500, under the 20,000 open-files
 * limit of one server process, or 4 GiB of server RSS), and at every step record the
 * handshake rate and p99 (G verifies a JWT in every hello), and RSS per connection after
 * a GC at the steps the report names (5k, 15k).
 *
 * RSS per connection counts from a warm baseline (`warmBaseline`: the first step's
 * handshakes once, with clients that close as soon as they are ready); the cold reading,
 * from before the warm-up, is kept beside it.
 */
import { Fleet } from '../loadgen/fleet.ts';
import { percentilesMs } from '../loadgen/histogram.ts';
import { CpuSpan, corePercent, coreTicks } from '../proc.ts';
import { median } from '../report.ts';
import { CLIENT_CORE, ArmServer, type ArmSpec } from '../servers.ts';
import type { Latency } from './fanout.ts';
import { createTopics, sourceAddresses, warmBaseline } from './setup.ts';

export interface CapacityOptions {
  steps: number[];
  topics: number;
  concurrency: number;
  log: (line: string) => void;
}

export interface CapacityStep {
  connections: number;
  failed: number;
  handshakesPerS: number;
  handshake: Latency;
  rssMB: number;
  /** RSS growth per connection since the warm baseline. */
  rssPerConnKB: number;
  /** The same since the cold baseline (before the warm-up; absent in files before s17). */
  rssPerConnKBCold?: number;
  /** Private memory (RssAnon) and its growth per connection since the base. */
  rssAnonMB: number;
  rssAnonPerConnKB: number;
  /** Server CPU (user + system) over the step's handshakes, % of one core. */
  serverPercent: number;
  /** The user-mode part of it (the rest is the kernel: on loopback, much of the TCP path). */
  serverUserPercent: number;
  /**
   * Handshakes per server CPU-second: what one server core would do if the handshakes
   * alone kept it busy. The rate above is bounded by whichever side saturates first.
   */
  perCpuS: number;
  /** The load generator's core (clients + Redis); ≥ 85 % marks the step client-bound. */
  clientCorePercent: number;
  clientBound: boolean;
  /** Redis's part of that core (G and S keep their subscribers' records there; absent before s17). */
  redisPercent?: number;
}

export interface CapacityResult {
  arm: string;
  held: number;
  /** Server RSS after a GC before and after the warm-up churn, and that churn's size (s17 on). */
  baseColdMB?: number;
  baseMB?: number;
  warmup?: number;
  /** Connections per GiB of server RSS growth at the last step, from the warm and the cold baseline. */
  connectionsPerGiB: number;
  connectionsPerGiBCold?: number;
  /**
   * RSS per extra connection: the least-squares slope of RSS over the steps, in KB. It
   * leaves out what the first step's warm-up adds once (JIT code, heap growth) and the
   * error of the one base reading, which for a lean arm is the size of all its
   * connections together. NaN with fewer than two steps.
   */
  marginalKBPerConn: number;
  /** Connections per GiB at that marginal cost. */
  connectionsPerGiBMarginal: number;
  /** The best step's handshake rate among steps with p99 < 100 ms (0 if none). */
  handshakesPerS: number;
  /** Median over the steps of handshakes per server CPU-second. */
  handshakesPerCpuS: number;
  steps: CapacityStep[];
}

const LIMIT_BYTES = 4 * 2 ** 30;

export async function runCapacity(spec: ArmSpec, o: CapacityOptions): Promise<CapacityResult> {
  const server = await ArmServer.start(spec);
  let fleet: Fleet | undefined;
  try {
    const setup = await createTopics(server, o.topics);
    const top = o.steps[o.steps.length - 1]!;
    fleet = await Fleet.start(Math.max(2, Math.ceil(top / 9000)), {
      kind: spec.kind,
      url: server.url,
      ...(setup.token !== undefined ? { token: setup.token } : {}),
      ackEvery: 32,
      localAddresses: sourceAddresses(8),
    });
    const warm = await warmBaseline(server, fleet, setup.topics, o.steps[0]!, o.concurrency);
    const { cold, rss: base, rssAnon: baseAnon } = warm;
    o.log(
      `${spec.name} M3 baseline: ${(cold / 2 ** 20).toFixed(1)} MB cold, ${(base / 2 ** 20).toFixed(1)} MB ` +
        `after ${warm.warmup} handshakes closed again${warm.failed ? ` (${warm.failed} failed)` : ''}`,
    );
    const steps: CapacityStep[] = [];
    let held = 0;
    for (const target of o.steps) {
      const perTopic = Math.ceil((target - held) / o.topics);
      if (perTopic <= 0) continue;
      const cpu = new CpuSpan(server.pids);
      const redisCpu = server.redis?.pid !== undefined ? new CpuSpan([server.redis.pid]) : undefined;
      const core0 = coreTicks(Number(CLIENT_CORE));
      const reply = await fleet.connect(setup.topics, perTopic, o.concurrency);
      const serverCpu = cpu.stop();
      const redisPercent = redisCpu?.stop().percent ?? 0;
      const clientCorePercent = corePercent(core0, coreTicks(Number(CLIENT_CORE)));
      held += reply.ready;
      await server.gc();
      const rss = server.rss;
      const rssAnon = server.rssAnon;
      const step: CapacityStep = {
        connections: held,
        failed: reply.failed,
        handshakesPerS: reply.ready / (reply.ms / 1000),
        handshake: percentilesMs(reply.histogram),
        rssMB: rss / 2 ** 20,
        rssPerConnKB: (rss - base) / Math.max(1, held) / 1024,
        rssPerConnKBCold: (rss - cold) / Math.max(1, held) / 1024,
        rssAnonMB: rssAnon / 2 ** 20,
        rssAnonPerConnKB: (rssAnon - baseAnon) / Math.max(1, held) / 1024,
        serverPercent: serverCpu.percent,
        serverUserPercent: serverCpu.wallS > 0 ? (serverCpu.user / serverCpu.wallS) * 100 : Number.NaN,
        perCpuS: serverCpu.total > 0 ? reply.ready / serverCpu.total : Number.NaN,
        clientCorePercent,
        clientBound: clientCorePercent >= 85,
        redisPercent,
      };
      steps.push(step);
      o.log(
        `${spec.name} M4 ${held} conns: ${Math.round(step.handshakesPerS)} handshakes/s, p99 ${step.handshake.p99} ms, ` +
          `server ${step.serverPercent.toFixed(0)}% (user ${step.serverUserPercent.toFixed(0)}%, ${Math.round(step.perCpuS)}/cpu-s), client core ${clientCorePercent.toFixed(0)}% (Redis ${redisPercent.toFixed(0)}%)` +
          `${step.clientBound ? ' CLIENT-BOUND' : ''}, ` +
          `RSS ${step.rssMB.toFixed(0)} MB (${step.rssPerConnKB.toFixed(2)} KB/conn, cold ${step.rssPerConnKBCold?.toFixed(2) ?? '—'}), ` +
          `anon ${step.rssAnonMB.toFixed(0)} MB (${step.rssAnonPerConnKB.toFixed(2)} KB/conn)${reply.failed ? `, ${reply.failed} failed` : ''}`,
      );
      if (reply.failed > (target - held + reply.ready) * 0.01 || rss > LIMIT_BYTES) break;
    }
    const last = steps[steps.length - 1];
    const marginal = slope(steps.map((s) => [s.connections, s.rssMB * 1024]));
    const good = steps.filter((s) => s.handshake.p99 < 100);
    return {
      arm: spec.name,
      held,
      baseColdMB: cold / 2 ** 20,
      baseMB: base / 2 ** 20,
      warmup: warm.warmup,
      // below a few thousand connections the RSS delta is GC and JIT noise (it can be negative)
      connectionsPerGiB: perGiB(last?.rssPerConnKB),
      connectionsPerGiBCold: perGiB(last?.rssPerConnKBCold),
      marginalKBPerConn: marginal,
      connectionsPerGiBMarginal: marginal > 0 ? 2 ** 20 / marginal : Number.NaN,
      handshakesPerS: good.length ? Math.max(...good.map((s) => s.handshakesPerS)) : 0,
      handshakesPerCpuS: median(steps.map((s) => s.perCpuS)),
      steps,
    };
  } finally {
    await fleet?.close();
    await server.close();
  }
}

const perGiB = (kbPerConn: number | undefined): number =>
  kbPerConn !== undefined && kbPerConn > 0 ? 2 ** 30 / (kbPerConn * 1024) : Number.NaN;

/** Least-squares slope of y over x; NaN with fewer than two distinct x. */
export function slope(points: [x: number, y: number][]): number {
  const n = points.length;
  if (n < 2) return Number.NaN;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (const [x, y] of points) {
    sxy += (x - mx) * (y - my);
    sxx += (x - mx) ** 2;
  }
  return sxx > 0 ? sxy / sxx : Number.NaN;
}
