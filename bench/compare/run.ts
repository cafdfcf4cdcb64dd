/**
 * `npm run bench:compare -- --quick | --full [options]`: the gateway side by side with its
 * peers on one machine, in one run (issue 6, BENCHMARKS.md). See bench/README.md.
 *
 * Layout of a run: the orchestrator and its load-generator processes (and Redis) are
 * pinned to core 1, every server to core 0. Headline rounds run each arm in a rotated
 * order, so slow drift of the machine spreads over all arms; ratios are taken per round,
 * then their median is reported, next to the G/G′ ratio that shows the noise band.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { codeVersion, machineInfo } from '../lib/proc.ts';
import { repoRoot } from '../lib/repo-root.ts';
import { barChart } from './plot.ts';
import { CLIENT_CORE, ARMS, ARM_EXTRA_FLAGS, GATEWAY_EXTRA_FLAGS, type ArmSpec } from './servers.ts';
import { GATEWAY_ACK_MS, GATEWAY_ACK_OVERRIDDEN } from './gateway-acks.ts';
import { pin } from './proc.ts';
import {
  commonRate,
  extraRatios,
  fmt,
  maxKeptUp,
  maxSustainable,
  runM2Rate,
  median,
  medianRatios,
  pointAt,
  table,
  type Round,
} from './report.ts';
import { runCapacity, type CapacityResult } from './scenarios/capacity.ts';
import { runFanout, type FanoutOptions, type FanoutResult } from './scenarios/fanout.ts';
import { runRecovery, type RecoveryResult } from './scenarios/recovery.ts';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    full: { type: 'boolean', default: false },
    arms: { type: 'string' },
    rounds: { type: 'string' },
    subscribers: { type: 'string' },
    sessions: { type: 'string' },
    rates: { type: 'string' },
    payload: { type: 'string' },
    only: { type: 'string' },
    out: { type: 'string' },
    plots: { type: 'string' },
    steps: { type: 'string' },
    replot: { type: 'string' },
    rescore: { type: 'boolean', default: false },
    window: { type: 'string' },
    idle: { type: 'string' },
    'm5-clients': { type: 'string' },
    'm5-missed': { type: 'string' },
    'm5-signal': { type: 'string' },
    'm5-timeout': { type: 'string' },
  },
});

interface Plan {
  name: 'quick' | 'full';
  arms: string[];
  rounds: number;
  headline: Omit<FanoutOptions, 'log'>;
  /** Other fan-out shapes, one round each. */
  shapes: { sessions: number; perSession: number; rates: number[] }[];
  variants: string[];
  capacity: { arms: string[]; steps: number[] } | undefined;
  recovery: { arms: string[]; cases: { clients: number; missed: number; signal: 'SIGTERM' | 'SIGKILL' }[] };
}

const numbers = (s: string | undefined): number[] | undefined => s?.split(',').map(Number);

function plan(): Plan {
  const full = values.full && !values.quick;
  const arms = values.arms?.split(',') ?? ['G', "G'", 'U', 'S', 'W'];
  const perSession = Number(values.subscribers ?? 10_000);
  const sessions = Number(values.sessions ?? 1);
  const payloadBytes = Number(values.payload ?? 100);
  if (full) {
    return {
      name: 'full',
      arms,
      rounds: Number(values.rounds ?? 3),
      headline: {
        sessions,
        perSession,
        payloadBytes,
        rates: numbers(values.rates) ?? [2, 5, 10, 20, 30, 40],
        warmupS: 2,
        windowS: 10,
        idleS: 30,
        concurrency: 200,
      },
      shapes: [
        { sessions: 100, perSession: 100, rates: [0.5, 1, 2, 4] },
        // 10,000 sessions would need 20,000 sockets on one G process (a publisher
        // connection per session): 5,000 stays under the open-files limit.
        { sessions: 5000, perSession: 1, rates: [1, 2, 4] },
      ],
      variants: values.arms ? [] : ['Ga', 'Gm'],
      capacity: {
        arms: values.arms ? arms : ['G', 'U', 'S', 'W', 'G2'],
        steps: numbers(values.steps) ?? [5000, 10000, 15000, 18500],
      },
      recovery: {
        arms: ['G', 'S'],
        cases: [1000, 10000].flatMap((clients) =>
          [10, 100].flatMap((missed) =>
            (['SIGTERM', 'SIGKILL'] as const).map((signal) => ({ clients, missed, signal })),
          ),
        ),
      },
    };
  }
  return {
    name: 'quick',
    arms,
    rounds: Number(values.rounds ?? 2),
    headline: {
      sessions,
      perSession,
      payloadBytes,
      rates: numbers(values.rates) ?? [2, 5, 10, 20],
      warmupS: 1,
      windowS: Number(values.window ?? 5),
      idleS: Number(values.idle ?? 5),
      concurrency: 200,
    },
    shapes: [],
    variants: [],
    capacity: undefined,
    recovery: {
      arms: ['G', 'S'],
      cases: [
        {
          clients: Number(values['m5-clients'] ?? 1000),
          missed: Number(values['m5-missed'] ?? 10),
          signal: values['m5-signal'] === 'SIGTERM' ? 'SIGTERM' : 'SIGKILL',
        },
      ],
    },
  };
}

const log = (line: string): void => {
  console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
};

function spec(name: string): ArmSpec {
  const s = ARMS[name];
  if (!s) throw new Error(`unknown arm ${name}; known: ${Object.keys(ARMS).join(', ')}`);
  return s;
}

async function main(): Promise<void> {
  if (values.replot) {
    // Redraw the plots of a saved run and print its summary, both from its raw values by
    // this report code: --replot FILE.json [--plots DIR] [--rescore]. With --rescore the
    // file's derived `ratios` are rewritten too (after a fix to how they are derived), and
    // `rescoredAt` says when; the raw values are never touched.
    const saved = JSON.parse(readFileSync(values.replot, 'utf8')) as Parameters<typeof summary>[0] & {
      plan: string;
    };
    const dir = values.plots ?? path.dirname(values.replot);
    writePlots(saved.rounds, dir, saved.plan);
    saved.ratios = {
      ...medianRatios(saved.rounds),
      ...extraRatios(saved.shapes, saved.capacity, saved.recovery),
    };
    console.log('\n' + summary(saved));
    if (values.rescore) {
      writeFileSync(
        values.replot,
        JSON.stringify({ ...saved, rescoredAt: new Date().toISOString() }, null, 2) + '\n',
      );
      log(`rewrote the ratios of ${values.replot}`);
    }
    log(`redrew the plots of ${values.replot} in ${dir}`);
    return;
  }
  const p = plan();
  p.recovery.arms = p.recovery.arms.filter((a) => p.arms.includes(a));
  const only = values.only?.split(',');
  const wants = (part: string): boolean => !only || only.includes(part);
  const machine = { ...machineInfo(), serverCore: 0, clientCore: Number(CLIENT_CORE) };
  pin(process.pid, CLIENT_CORE);
  const began = Date.now();
  log(
    `bench:compare ${p.name}: arms ${p.arms.join(' ')}, ${p.rounds} round(s); server on core 0, clients + Redis on core 1`,
  );
  if (ARM_EXTRA_FLAGS.length > 0)
    log(`every arm runs with the extra Node flags ${ARM_EXTRA_FLAGS.join(' ')}`);
  if (GATEWAY_EXTRA_FLAGS.length > 0) {
    log(`NOT A COMPARISON: the gateway arms run with extra Node flags ${GATEWAY_EXTRA_FLAGS.join(' ')}`);
  }
  if (GATEWAY_ACK_OVERRIDDEN) {
    log(
      `NOT A COMPARISON: the G clients ack after ${GATEWAY_ACK_MS} ms (BENCH_G_ACK_MS), not the SDK's default`,
    );
  }

  const rounds: Round[] = [];
  if (wants('headline')) {
    for (let r = 0; r < p.rounds; r++) {
      const order = p.arms.map((_, i) => p.arms[(i + r) % p.arms.length]!);
      const fanout: FanoutResult[] = [];
      for (const name of order) fanout.push(await runFanout(spec(name), { ...p.headline, log }));
      rounds.push({ round: r + 1, order, fanout });
    }
  }
  const shapes: FanoutResult[] = [];
  if (wants('shapes')) {
    for (const shape of p.shapes) {
      for (const name of p.arms.filter((a) => a !== "G'")) {
        shapes.push(await runFanout(spec(name), { ...p.headline, ...shape, log }));
      }
    }
  }
  const variants: FanoutResult[] = [];
  if (wants('variants'))
    for (const name of p.variants) variants.push(await runFanout(spec(name), { ...p.headline, log }));
  const capacity: CapacityResult[] = [];
  if (wants('capacity') && p.capacity) {
    for (const name of p.capacity.arms) {
      capacity.push(
        await runCapacity(spec(name), { steps: p.capacity.steps, topics: 100, concurrency: 200, log }),
      );
    }
  }
  const recovery: RecoveryResult[] = [];
  if (wants('recovery')) {
    for (const c of p.recovery.cases) {
      for (const name of p.recovery.arms) {
        recovery.push(
          await runRecovery(spec(name), {
            ...c,
            topics: 10,
            payloadBytes: p.headline.payloadBytes,
            concurrency: 200,
            timeoutMs: Number(values['m5-timeout'] ?? 60) * 1000,
            log,
          }),
        );
      }
    }
  }

  const ratios = { ...medianRatios(rounds), ...extraRatios(shapes, capacity, recovery) };
  const result = {
    date: new Date().toISOString(),
    plan: p.name,
    minutes: (Date.now() - began) / 60_000,
    machine,
    code: codeVersion(repoRoot),
    arms: Object.fromEntries(
      [...new Set([...p.arms, ...p.variants, ...(p.capacity?.arms ?? []), ...p.recovery.arms])].map((a) => [
        a,
        spec(a),
      ]),
    ),
    config: p,
    ...(ARM_EXTRA_FLAGS.length > 0 ? { nodeFlags: ARM_EXTRA_FLAGS } : {}),
    ...(GATEWAY_EXTRA_FLAGS.length > 0 ? { gatewayFlags: GATEWAY_EXTRA_FLAGS } : {}),
    gatewayAckMs: GATEWAY_ACK_MS,
    rounds,
    shapes,
    variants,
    capacity,
    recovery,
    ratios,
  };
  const day = result.date.slice(0, 10);
  const out =
    values.out ??
    path.join(repoRoot, 'bench/results', `${day}-compare${p.name === 'quick' ? '-quick' : ''}.json`);
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
  const plotsDir = values.plots ?? path.dirname(out);
  mkdirSync(plotsDir, { recursive: true });
  writePlots(rounds, plotsDir, p.name);
  console.log('\n' + summary(result));
  log(
    `wrote ${path.relative(repoRoot, out)} and plots in ${path.relative(repoRoot, plotsDir) || '.'} (${result.minutes.toFixed(1)} min)`,
  );
}

/** The headline arms' medians over rounds at the G/slowest common comparison point. */
function headlineRows(rounds: Round[]): {
  arm: string;
  rate: number | undefined;
  perCpuS: number;
  perUserCpuS: number;
  max: number;
  keptUp: number;
  m2Rate: number | undefined;
  p50: number;
  p99: number;
  p999: number;
  rss: number;
  rssCold: number;
  hs: number;
  hsP99: number;
  wire: number;
}[] {
  const arms = rounds[0]?.order.slice().sort() ?? [];
  const m2 = runM2Rate(rounds);
  return arms.map((arm) => {
    const per = rounds.map((r) => {
      const mine = r.fanout.find((f) => f.arm === arm)!;
      const rate = commonRate(r.fanout);
      const point = pointAt(mine, rate);
      return { mine, rate, point, m2, m2Point: pointAt(mine, m2) };
    });
    return {
      arm,
      rate: per[0]?.rate,
      perCpuS: median(per.map((x) => x.point?.perCpuS ?? Number.NaN)),
      perUserCpuS: median(per.map((x) => x.point?.perUserCpuS ?? Number.NaN)),
      max: median(per.map((x) => maxSustainable(x.mine))),
      keptUp: median(per.map((x) => maxKeptUp(x.mine))),
      m2Rate: per[0]?.m2,
      p50: median(per.map((x) => x.m2Point?.latency.p50 ?? Number.NaN)),
      p99: median(per.map((x) => x.m2Point?.latency.p99 ?? Number.NaN)),
      p999: median(per.map((x) => x.m2Point?.latency.p999 ?? Number.NaN)),
      rss: median(per.map((x) => x.mine.memory.rssPerConnKB)),
      rssCold: median(per.map((x) => x.mine.memory.rssPerConnKBCold ?? Number.NaN)),
      hs: median(per.map((x) => x.mine.connect.handshakesPerS)),
      hsP99: median(per.map((x) => x.mine.connect.handshake.p99)),
      wire: median(per.map((x) => x.mine.memory.wireBytesPerConnPerMin)),
    };
  });
}

function writePlots(rounds: Round[], dir: string, name: string): void {
  if (rounds.length === 0) return;
  const rows = headlineRows(rounds);
  const shape = `${rounds[0]!.fanout[0]!.sessions} × ${rounds[0]!.fanout[0]!.perSession}`;
  writeFileSync(
    path.join(dir, `compare-${name}-throughput.svg`),
    barChart({
      title: `Fan-out ${shape}: deliveries per server CPU-second at ${rows[0]?.rate ?? '?'} ev/s`,
      unit: 'deliveries / CPU-s',
      series: ['user + system', 'user only'],
      groups: rows.map((r) => ({ label: r.arm, values: [r.perCpuS, r.perUserCpuS] })),
    }),
  );
  writeFileSync(
    path.join(dir, `compare-${name}-latency.svg`),
    barChart({
      title: `Fan-out ${shape}: publish → deliver latency at ${rows[0]?.m2Rate ?? '?'} ev/s (log scale)`,
      unit: 'ms',
      series: ['p50', 'p99', 'p99.9'],
      groups: rows.map((r) => ({ label: r.arm, values: [r.p50, r.p99, r.p999] })),
      log: true,
    }),
  );
}

function summary(r: {
  machine: object;
  rounds: Round[];
  shapes: FanoutResult[];
  variants: FanoutResult[];
  capacity: CapacityResult[];
  recovery: RecoveryResult[];
  ratios: Record<string, number>;
}): string {
  const parts: string[] = [`machine: ${JSON.stringify(r.machine)}`];
  if (r.rounds.length) {
    const rows = headlineRows(r.rounds);
    parts.push(
      `\nHeadline fan-out (median of ${r.rounds.length} round(s)). M1 columns at the comparison rate (the highest rate every arm delivered ≥ 99.99 % without loss); ` +
        `latency at the M2 common load (half the slowest arm's kept-up max); kept-up = ≥ 99.99 % delivered, no loss, p99 < 1 s:`,
      table(
        [
          'arm',
          'M1 rate ev/s',
          'deliv/CPU-s',
          'deliv/user-CPU-s',
          'max sustainable ev/s',
          'max kept-up ev/s',
          'M2 rate ev/s',
          'p50 ms',
          'p99 ms',
          'p99.9 ms',
          'RSS/conn KB',
          'cold',
          'handshakes/s',
          'handshake p99 ms',
          'idle B/conn/min',
        ],
        rows.map((x) => [
          x.arm,
          x.rate,
          x.perCpuS,
          x.perUserCpuS,
          x.max,
          x.keptUp,
          x.m2Rate,
          x.p50,
          x.p99,
          x.p999,
          x.rss,
          x.rssCold,
          x.hs,
          x.hsP99,
          x.wire,
        ]),
      ),
      '\nEvery rate point, every round:',
      table(
        [
          'round',
          'arm',
          'rate',
          'deliv/s',
          'delivered %',
          'p50',
          'p99',
          'p99.9',
          'server CPU %',
          'user %',
          'deliv/CPU-s',
          'client core %',
          'gaps/dups',
          'notes',
        ],
        r.rounds.flatMap((round) =>
          round.fanout.flatMap((f) =>
            f.points.map((pt) => [
              round.round,
              f.arm,
              pt.rate,
              pt.deliveriesPerS,
              (pt.deliveredFraction * 100).toFixed(3),
              pt.latency.p50,
              pt.latency.p99,
              pt.latency.p999,
              pt.server.percent,
              (pt.server.user / (pt.server.total / (pt.server.percent / 100))) * 100,
              pt.perCpuS,
              pt.clientCorePercent,
              `${pt.gaps}/${pt.duplicates}`,
              [
                pt.clientBound ? 'client-bound' : '',
                pt.sustainable ? '' : 'not sustainable',
                Object.keys(pt.closes).length ? `closes ${JSON.stringify(pt.closes)}` : '',
              ]
                .filter(Boolean)
                .join('; '),
            ]),
          ),
        ),
      ),
    );
  }
  for (const f of [...r.shapes, ...r.variants]) {
    parts.push(
      `\n${f.arm} ${f.sessions}×${f.perSession}: ` +
        f.points
          .map(
            (p) =>
              `${p.rate}/s → ${fmt(p.perCpuS)}/CPU-s, p99 ${p.latency.p99} ms${p.sustainable ? '' : ' (ns)'}`,
          )
          .join('; '),
    );
  }
  if (r.capacity.length) {
    parts.push(
      '\nCapacity ramp (M3/M4):',
      table(
        [
          'arm',
          'held',
          'conns/GiB',
          'marginal KB/conn',
          'best handshakes/s (p99<100ms)',
          'handshakes/server-CPU-s (median step)',
          'client-bound steps',
          'RSS/conn KB by step (cold)',
        ],
        r.capacity.map((c) => [
          c.arm,
          c.held,
          c.connectionsPerGiB,
          c.marginalKBPerConn,
          c.handshakesPerS,
          c.handshakesPerCpuS,
          `${c.steps.filter((s) => s.clientBound).length}/${c.steps.length}`,
          c.steps
            .map(
              (s) =>
                `${s.connections}: ${s.rssPerConnKB.toFixed(2)}` +
                (s.rssPerConnKBCold !== undefined ? ` (${s.rssPerConnKBCold.toFixed(2)})` : ''),
            )
            .join(', '),
        ]),
      ),
    );
  }
  if (r.recovery.length) {
    parts.push(
      '\nRecovery (M5):',
      table(
        [
          'arm',
          'signal',
          'clients',
          'missed',
          'caught up',
          'outage ms',
          'p50 ms',
          'p99 ms',
          'max ms',
          'p99 from signal ms',
          'gaps',
          'dups',
          'recovered',
          'fresh',
          'listen overflows',
          'server %',
          'client core %',
        ],
        r.recovery.map((x) => [
          x.arm,
          x.signal,
          x.clients,
          x.missed,
          `${x.caughtUp}/${x.total}`,
          Math.round(x.downMs),
          x.catchup.p50,
          x.catchup.p99,
          x.catchup.max,
          // every client's time from the signal is its time from `listening` plus the outage
          x.caughtUp > 0 ? Math.round(x.catchup.p99 + x.downMs) : '—',
          x.gaps,
          x.duplicates,
          x.recovered,
          x.freshStarts,
          x.listenOverflows,
          // older result files lack these: `—`
          x.serverCpuPercent?.toFixed(0) ?? '—',
          x.clientCorePercent === undefined
            ? '—'
            : `${x.clientCorePercent.toFixed(0)}${x.clientBound ? ' bound' : ''}`,
        ]),
      ),
    );
  }
  parts.push(
    "\nRatios (medians of per-round ratios; G/G' is the noise band):",
    table(
      ['ratio', 'value'],
      Object.entries(r.ratios)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([k, v]) => [k, v]),
    ),
  );
  return parts.join('\n');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
