/**
 * bench:compare is a measuring instrument, so it gets tests like any other code: the
 * report's arithmetic on known inputs, and one tiny end-to-end run over every arm that
 * checks the JSON has the documented shape and that no arm lost, duplicated or reordered
 * an event on the way (a broken adapter would show up here, not in a one-hour run).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import {
  commonRate,
  m2Rate,
  maxKeptUp,
  maxSustainable,
  median,
  medianRatios,
  roundRatios,
  runM2Rate,
} from '../../bench/compare/report.ts';
import { slope, type CapacityResult } from '../../bench/compare/scenarios/capacity.ts';
import { commandStatsDelta, parseCommandStats } from '../../bench/lib/redis-stats.ts';
import { OpenLoop } from '../../bench/compare/driver.ts';
import { readStamp } from '../../bench/lib/wire.ts';
import type { FanoutResult, RatePoint } from '../../bench/compare/scenarios/fanout.ts';

/** Runs `node <args>` (bench/compare/run.ts) to the end; fails the test, with its output, unless it exits 0. */
async function runCompare(args: string[]): Promise<void> {
  const output: string[] = [];
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (c: Buffer) => output.push(c.toString()));
    child.stderr.on('data', (c: Buffer) => output.push(c.toString()));
    child.on('exit', resolve);
  });
  assert.equal(code, 0, output.join(''));
}

function point(rate: number, over: Partial<RatePoint> = {}): RatePoint {
  const latency = { p50: 5, p99: 20, p999: 30, max: 40, count: 100 };
  return {
    rate,
    expected: 100,
    deliveredFraction: 1,
    deliveriesPerS: rate * 1000,
    latency,
    server: { user: 1, system: 1, total: 2, percent: 50 },
    perCpuS: rate * 1000,
    perUserCpuS: rate * 2000,
    redisPercent: 0,
    clientCorePercent: 50,
    clientBound: false,
    gaps: 0,
    duplicates: 0,
    closes: {},
    publisherLagMs: 0,
    sustainable: true,
    ...over,
  };
}

function result(arm: string, points: RatePoint[], rssPerConnKB = 2): FanoutResult {
  const handshake = { p50: 1, p99: 2, p999: 3, max: 4, count: 10 };
  return {
    arm,
    sessions: 1,
    perSession: 1000,
    payloadBytes: 100,
    connect: { ready: 1000, failed: 0, ms: 1000, handshakesPerS: 1000, handshake },
    memory: { rssBaseMB: 50, rssConnectedMB: 52, rssPerConnKB, wireBytesPerConnPerMin: 0 },
    points,
  };
}

describe('bench:compare report', () => {
  it('compares arms at the highest rate both delivered completely, and takes medians of per-round ratios', () => {
    const g = result(
      'G',
      [point(5), point(10), point(20, { deliveredFraction: 0.9, sustainable: false })],
      3,
    );
    const u = result('U', [point(5, { perCpuS: 10_000 }), point(10, { perCpuS: 20_000 }), point(20)], 1.5);
    assert.equal(commonRate([g, u]), 10, '20/s is out: G lost deliveries there');
    assert.equal(maxSustainable(g), 10);
    assert.equal(maxSustainable(u), 20);
    const ratios = roundRatios({ round: 1, order: ['G', 'U'], fanout: [g, u] });
    assert.equal(ratios['M1.G/U'], 10_000 / 20_000);
    assert.equal(ratios['M1.max.G/U'], 0.5);
    assert.equal(ratios['M3.G/U'], 2);
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 2, Number.NaN, 3]), 2.5, 'NaN rounds are left out');
  });

  it("M2 latency is compared at half the slowest arm's kept-up maximum", () => {
    const lat = (p99: number) => ({ p50: 1, p99, p999: p99, max: p99, count: 1 });
    const g = result('G', [
      point(2, { latency: lat(10) }),
      point(5, { latency: lat(30) }),
      point(10),
      point(20),
    ]);
    // S keeps up to 10/s (p99 < 1 s), falls behind at 20/s
    const s = result('S', [
      point(2, { latency: lat(40) }),
      point(5, { latency: lat(90) }),
      point(10, { latency: lat(800), sustainable: false }),
      point(20, { latency: lat(4000), sustainable: false }),
    ]);
    assert.equal(maxKeptUp(s), 10);
    assert.equal(maxKeptUp(g), 20);
    assert.equal(m2Rate([g, s]), 5);
    const ratios = roundRatios({ round: 1, order: ['G', 'S'], fanout: [g, s] });
    assert.equal(ratios['M2.p99.G/S'], 30 / 90);
    assert.equal(ratios['M1.keptUp.G/S'], 2);
  });

  it('M2 falls back to the lowest rung, never a higher rate, and one load holds for every round', () => {
    const lat = (p99: number) => ({ p50: 1, p99, p999: p99, max: p99, count: 1 });
    const g = result('G', [point(2, { latency: lat(10) }), point(5, { latency: lat(20) }), point(10)]);
    // S keeps up at 2/s only: half of that is below the ladder
    const slow = result('S', [
      point(2, { latency: lat(40) }),
      point(5, { latency: lat(2000), sustainable: false }),
      point(10, { latency: lat(5000), sustainable: false }),
    ]);
    // in another round S kept up to 10/s: its own common load would be 5/s
    const fast = result('S', [point(2, { latency: lat(50) }), point(5, { latency: lat(40) }), point(10)]);
    assert.equal(m2Rate([g, slow]), 2);
    assert.equal(m2Rate([g, fast]), 5);
    const rounds = [
      { round: 1, order: ['G', 'S'], fanout: [g, slow] },
      { round: 2, order: ['G', 'S'], fanout: [g, fast] },
    ];
    assert.equal(runM2Rate(rounds), 2);
    // both rounds at 2/s: 10/40 and 10/50, median 0.225
    assert.equal(medianRatios(rounds)['M2.p99.G/S'], (10 / 40 + 10 / 50) / 2);
  });

  it('memory per connection is also read as the slope over the steps, blind to a fixed warm-up', () => {
    // 1 KB per connection plus 8 MB the first step added once: the slope sees only the 1 KB
    const base = 100 * 1024;
    const steps = [5000, 10000, 15000, 18500].map((n): [number, number] => [n, base + 8192 + n]);
    assert.ok(Math.abs(slope(steps) - 1) < 1e-9);
    assert.ok(Number.isNaN(slope([[5000, 1]])));
    assert.ok(
      Number.isNaN(
        slope([
          [5000, 1],
          [5000, 2],
        ]),
      ),
    );
  });

  it("reads Redis's per-command counters and what a window added to them", () => {
    const info = (xadd: number, usec: number): string =>
      `# Commandstats\r\ncmdstat_xadd:calls=${xadd},usec=${usec},usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n` +
      'cmdstat_config|resetstat:calls=1,usec=5,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n';
    const from = parseCommandStats(info(10, 40));
    assert.deepEqual(from, { xadd: { calls: 10, usec: 40 }, 'config|resetstat': { calls: 1, usec: 5 } });
    const to = { ...parseCommandStats(info(25, 100)), hset: { calls: 3, usec: 2 } };
    assert.deepEqual(commandStatsDelta(from, to), {
      xadd: { calls: 15, usec: 60 },
      hset: { calls: 3, usec: 2 },
    });
  });

  it('the open loop keeps one schedule across back-to-back runs, and starts afresh after a pause', async () => {
    const due: number[] = [];
    const publisher = {
      publish: (_topic: string, payload: string) => due.push(readStamp(Buffer.from(payload), 0)),
      pending: 0,
      drain: () => Promise.resolve(),
      close: () => {},
    };
    const loop = new OpenLoop(publisher, ['t'], 100);
    // a warm-up, then at once the window: 10 ev/s, so every event 100 ms after the last
    await loop.run(10, 0.3);
    await loop.run(10, 0.3);
    assert.equal(due.length, 6);
    for (let i = 1; i < due.length; i++) assert.equal(due[i]! - due[i - 1]!, 100_000, `event ${i}`);
    // after a pause longer than the interval, the next run starts now, not in the past
    await new Promise((resolve) => setTimeout(resolve, 250));
    await loop.run(10, 0.1);
    assert.ok(due[6]! - due[5]! >= 250_000, `${due[6]! - due[5]!} µs after the last`);
  });

  it('a point with a gap is never a comparison point', () => {
    const g = result('G', [point(5), point(10, { gaps: 1 })]);
    const s = result('S', [point(5), point(10)]);
    assert.equal(commonRate([g, s]), 5);
  });
});

describe('bench:compare end to end (tiny)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'lo-compare-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('the capacity ramp records server CPU (and its user part) and the load generator core per step, and handshakes per CPU-second', async () => {
    const out = path.join(dir, 'capacity.json');
    const args = [
      '--import',
      'tsx',
      'bench/compare/run.ts',
      '--full',
      '--arms',
      'G,U,G2',
      '--only',
      'capacity',
    ];
    args.push('--steps', '100,200', '--out', out);
    await runCompare(args);
    const json = JSON.parse(readFileSync(out, 'utf8')) as {
      capacity: CapacityResult[];
      ratios: Record<string, number | null>;
    };
    assert.deepEqual(json.capacity.map((c) => c.arm).sort(), ['G', 'G2', 'U']);
    for (const c of json.capacity) {
      assert.equal(c.held, 200, `${c.arm} held every connection`);
      assert.deepEqual(
        c.steps.map((s) => s.connections),
        [100, 200],
      );
      for (const s of c.steps) {
        assert.ok(s.serverPercent >= 0 && s.serverPercent <= 400, `${c.arm} server CPU ${s.serverPercent}`);
        assert.ok(
          s.serverUserPercent >= 0 && s.serverUserPercent <= s.serverPercent,
          `${c.arm} user CPU ${s.serverUserPercent} of ${s.serverPercent}`,
        );
        assert.ok(
          s.clientCorePercent >= 0 && s.clientCorePercent <= 100,
          `${c.arm} core 1 ${s.clientCorePercent}`,
        );
        assert.equal(s.clientBound, s.clientCorePercent >= 85);
        // Redis's share of that core: G keeps every subscriber's record there, U has no Redis
        if (c.arm === 'U') assert.equal(s.redisPercent, 0);
        else
          assert.ok(
            s.redisPercent! >= 0 && s.redisPercent! <= 100,
            `${c.arm} Redis ${String(s.redisPercent)}%`,
          );
        // below one 10 ms clock tick of CPU the per-CPU rate is undefined (NaN → null in JSON)
        assert.ok(s.perCpuS === null || s.perCpuS > 0, `${c.arm} handshakes per CPU-s ${s.perCpuS}`);
      }
    }
    assert.ok('M4.ramp.handshakesPerCpuS.G/U' in json.ratios);
    assert.ok('M4.connsPerGiB.marginal.G/U' in json.ratios);
    assert.ok('M4.connsPerGiB.cold.G/U' in json.ratios);
    // the memory baseline comes after the first step's handshakes, made and closed again,
    // once per server process (G2: WORKERS=2)
    for (const c of json.capacity) {
      assert.equal(c.warmup, c.arm === 'G2' ? 200 : 100, `${c.arm} warm-up handshakes`);
      assert.ok(
        c.baseColdMB! > 0 && c.baseMB! > 0,
        `${c.arm} baselines ${String(c.baseColdMB)} / ${String(c.baseMB)}`,
      );
      const last = c.steps[c.steps.length - 1]!;
      const coldGrowth = (last.rssPerConnKBCold! * last.connections) / 1024;
      const warmGrowth = (last.rssPerConnKB * last.connections) / 1024;
      // the two readings differ by exactly the warm-up's own growth
      assert.ok(
        Math.abs(coldGrowth - warmGrowth - (c.baseMB! - c.baseColdMB!)) < 0.01,
        `${c.arm} cold ${coldGrowth} MB = warm ${warmGrowth} MB + warm-up ${c.baseMB! - c.baseColdMB!} MB`,
      );
    }
    for (const c of json.capacity) {
      assert.ok(typeof c.steps[0]!.rssAnonMB === 'number' && c.steps[0]!.rssAnonMB > 0, `${c.arm} RssAnon`);
    }
  });

  it('runs every arm, writes the documented JSON and plots, and no arm loses or repeats an event', async () => {
    const out = path.join(dir, 'compare.json');
    const args = [
      '--import',
      'tsx',
      'bench/compare/run.ts',
      '--quick',
      '--rounds',
      '1',
      '--arms',
      "G,G',U,S,W",
      '--subscribers',
      '40',
      '--rates',
      '5',
      '--window',
      '1',
      '--idle',
      '1',
      '--m5-clients',
      '20',
      '--m5-missed',
      '5',
      '--m5-signal',
      'SIGTERM',
      '--m5-timeout',
      '20',
      '--out',
      out,
    ];
    await runCompare(args);
    const json = JSON.parse(readFileSync(out, 'utf8')) as {
      machine: { nproc: number };
      arms: Record<string, unknown>;
      rounds: { fanout: FanoutResult[] }[];
      recovery: {
        arm: string;
        caughtUp: number;
        total: number;
        gaps: number;
        duplicates: number;
        downMs: number;
        exitMs: number;
        startMs: number;
        serverCpuPercent: number;
        clientCorePercent: number;
        clientBound: boolean;
      }[];
      ratios: Record<string, number | null>;
    };
    assert.ok(json.machine.nproc >= 1);
    assert.deepEqual(Object.keys(json.arms).sort(), ['G', "G'", 'S', 'U', 'W']);
    const fanout = json.rounds[0]!.fanout;
    assert.equal(fanout.length, 5);
    for (const f of fanout) {
      assert.equal(f.connect.ready, 40, `${f.arm} connected every subscriber`);
      const p = f.points[0]!;
      assert.equal(p.gaps, 0, `${f.arm} gaps`);
      assert.equal(p.duplicates, 0, `${f.arm} duplicates`);
      // the warm-up before the memory baseline closed its own clients: no close is counted
      assert.deepEqual(p.closes, {}, `${f.arm} closes`);
      assert.ok(f.memory.rssColdMB! > 0 && f.memory.rssBaseMB > 0, `${f.arm} cold and warm baselines`);
      assert.ok(p.expected > 0 && p.deliveredFraction === 1, `${f.arm} delivered ${p.deliveredFraction}`);
      // a tiny run may use less than one 10 ms clock tick of server CPU: measured, maybe 0
      assert.ok(Number.isFinite(p.server.total) && p.server.total >= 0, `${f.arm} server CPU was read`);
      // the arms on Redis record its commands over the window: G's appends are scripts
      if (f.arm.startsWith('G'))
        assert.ok((p.redisCommands?.evalsha?.calls ?? 0) > 0, `${f.arm} evalsha counted`);
      if (f.arm === 'U' || f.arm === 'W') assert.equal(p.redisCommands, undefined, `${f.arm} has no Redis`);
    }
    for (const key of ['M3.G/U', 'M3.G/S', 'M3.cold.G/U', 'M4.handshakes.G/U', 'M4.handshakes.G/S']) {
      assert.equal(typeof json.ratios[key], 'number', `ratio ${key}`);
    }
    // A tiny run can use less server CPU than one clock tick (M1 then has no value), and
    // with one rate there is no M2 common load: the keys are there, values may be null.
    for (const key of ['M1.G/U', 'M1.G/S', 'M1.G/W', "M1.G/G'", 'M1.user.G/U', 'M2.p99.G/U']) {
      assert.ok(key in json.ratios, `ratio ${key}`);
    }
    // SIGTERM: both arms with recovery get every missed event back, once
    for (const arm of ['G', 'S']) {
      const r = json.recovery.find((x) => x.arm === arm)!;
      assert.equal(r.caughtUp, r.total, `${arm} caught up`);
      assert.equal(r.gaps + r.duplicates, 0, `${arm} recovered without gaps or duplicates`);
      // the outage runs from the signal to the restarted server's `listening`: a real restart
      assert.ok(r.downMs > 50 && r.downMs < 30_000, `${arm} outage ${r.downMs} ms`);
      // ...and holds its parts: the old server's exit and the new one's start
      assert.ok(r.exitMs > 0 && r.startMs > 0 && r.exitMs + r.startMs <= r.downMs, `${arm} outage parts`);
      // ...and says which core was the limit while the clients came back
      assert.ok(
        r.serverCpuPercent > 0 && r.serverCpuPercent <= 110,
        `${arm} server CPU ${r.serverCpuPercent}%`,
      );
      assert.ok(
        r.clientCorePercent > 0 && r.clientCorePercent <= 100,
        `${arm} client core ${r.clientCorePercent}%`,
      );
      assert.equal(r.clientBound, r.clientCorePercent >= 85);
    }
    for (const plot of ['compare-quick-throughput.svg', 'compare-quick-latency.svg']) {
      const svg = readFileSync(path.join(dir, plot), 'utf8');
      assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
      assert.ok((svg.match(/<rect /g) ?? []).length > 5, `${plot} has bars`);
    }
    assert.ok(existsSync(out));
  });
});
