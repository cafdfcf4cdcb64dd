/**
 * `npm run bench:smoke` — one publisher, N subscribers on one session, against the memory
 * and the redis engine. A benchmark, not a test: it measures and prints, it asserts nothing
 * about timing. See bench/README.md for what each number means and recorded results.
 *
 *   npm run bench:smoke -- [--subscribers 1000] [--rate 200[,500,…]] [--seconds 10]
 *                          [--warmup 2] [--engine memory|redis|both] [--codec json|msgpack]
 *                          [--workers 2] [--ack-every 32] [--parse fast|full]
 *                          [--text-bytes 100] [--drain-timeout 10] [--out file.json]
 *
 * Processes: this one (orchestrator + the publisher), the gateway (its bundle, as
 * bench:compare's G arms run it: `benchGateway` in bench/compare/servers.ts), a private
 * redis-server for the redis arm, and `--workers` forked subscriber processes
 * (bench/subscriber-worker.ts). All on 127.0.0.1; all killed on exit and on ctrl-c.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { JwtVerifier } from '../src/auth/jwt.ts';
import { RedisServer } from '../chaos/toolkit/redis-server.ts';
import { GatewayProcess } from '../chaos/toolkit/gateway-process.ts';
import { benchGateway } from './compare/servers.ts';
import { repoRoot } from './lib/repo-root.ts';
import { Histogram } from './lib/histogram.ts';
import type {
  CodecName,
  ConnectResult,
  FromWorker,
  ParseMode,
  ToWorker,
  WindowReport,
} from './lib/messages.ts';
import {
  codeVersion,
  CpuMeter,
  machineCpu,
  machineCpuPercent,
  machineInfo,
  memory,
  type MachineInfo,
} from './lib/proc.ts';
import { Publisher } from './lib/publisher.ts';
import { nowMicros } from './lib/wire.ts';

// ── options ──────────────────────────────────────────────────────────────────────────

const USAGE = `usage: npm run bench:smoke -- [options]
  --subscribers N        subscriber connections on the session (default 1000)
  --rate R[,R2,…]        publish rate(s), events/s; each is its own run (default 200)
  --seconds S            measured seconds per rate (default 10)
  --warmup S             unmeasured seconds before each measurement (default 2)
  --engine E             memory | redis | both (default both)
  --codec C              json | msgpack (default json)
  --workers W            subscriber processes (default 2)
  --ack-every K          cumulative ack every K events (default 32; capped at maxInFlight/2)
  --parse M              fast (scan ev frames in place) | full (decode every frame) (default fast)
  --text-bytes B         size of each event's transcript text (default 100)
  --drain-timeout S      how long to wait for subscribers to catch up after a step (default 10)
  --connect-concurrency N  handshakes in flight per worker (default 50)
  --reuse                run all rates on one gateway and one set of connections
                         (default: a fresh gateway, redis-server and subscribers per rate)
  --out FILE             also write the results as JSON`;

const { values: args } = parseArgs({
  options: {
    subscribers: { type: 'string', default: '1000' },
    rate: { type: 'string', default: '200' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    engine: { type: 'string', default: 'both' },
    codec: { type: 'string', default: 'json' },
    workers: { type: 'string', default: '2' },
    'ack-every': { type: 'string', default: '32' },
    parse: { type: 'string', default: 'fast' },
    'text-bytes': { type: 'string', default: '100' },
    'drain-timeout': { type: 'string', default: '10' },
    'connect-concurrency': { type: 'string', default: '50' },
    out: { type: 'string' },
    reuse: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});

function fail(message: string): never {
  process.stderr.write(`${message}\n\n${USAGE}\n`);
  process.exit(2);
}

function positive(name: string, raw: string | undefined, allowZero = false): number {
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0 || (!allowZero && n === 0)) fail(`--${name} must be a positive number`);
  return n;
}

if (args.help) {
  console.log(USAGE);
  process.exit(0);
}

const opts = {
  subscribers: Math.floor(positive('subscribers', args.subscribers)),
  rates: (args.rate ?? '').split(',').map((r) => positive('rate', r.trim())),
  seconds: positive('seconds', args.seconds),
  warmup: positive('warmup', args.warmup, true),
  engines: ((): ('memory' | 'redis')[] => {
    if (args.engine === 'both') return ['memory', 'redis'];
    if (args.engine === 'memory' || args.engine === 'redis') return [args.engine];
    return fail('--engine must be memory, redis or both');
  })(),
  codec: ((): CodecName =>
    args.codec === 'json' || args.codec === 'msgpack'
      ? args.codec
      : fail('--codec must be json or msgpack'))(),
  workers: Math.floor(positive('workers', args.workers)),
  ackEvery: Math.floor(positive('ack-every', args['ack-every'])),
  parse: ((): ParseMode =>
    args.parse === 'fast' || args.parse === 'full' ? args.parse : fail('--parse must be fast or full'))(),
  textBytes: Math.floor(positive('text-bytes', args['text-bytes'])),
  drainTimeoutMs: positive('drain-timeout', args['drain-timeout']) * 1000,
  connectConcurrency: Math.floor(positive('connect-concurrency', args['connect-concurrency'])),
  out: args.out,
  reuse: args.reuse ?? false,
};

// ── cleanup on exit and ctrl-c ──────────────────────────────────────────────────────

const workerProcesses = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of workerProcesses) child.kill('SIGKILL');
  // GatewayProcess and RedisServer install their own exit hooks (SIGKILL + temp dir removal).
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    process.stderr.write(`\n${signal}: stopping the gateway, redis-server and workers\n`);
    process.exit(130);
  });
}

// ── worker processes ────────────────────────────────────────────────────────────────

const workerScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'subscriber-worker.ts');

class WorkerHandle {
  readonly child: ChildProcess;
  readonly #waiting = new Map<string, ((message: FromWorker) => void)[]>();
  #fatal: Error | undefined;
  #onFatal: ((err: Error) => void)[] = [];

  constructor() {
    this.child = fork(workerScript, [], {
      execArgv: ['--import', 'tsx'],
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    workerProcesses.add(this.child);
    this.child.on('message', (message: FromWorker) => {
      if (message.t === 'fatal') return this.#die(new Error(`worker: ${message.message}`));
      const queue = this.#waiting.get(message.t);
      const resolve = queue?.shift();
      if (resolve) resolve(message);
    });
    this.child.once('exit', (code, signal) => {
      workerProcesses.delete(this.child);
      this.#die(new Error(`worker exited (${String(code ?? signal)})`));
    });
  }

  #die(err: Error): void {
    this.#fatal ??= err;
    for (const reject of this.#onFatal) reject(err);
    this.#onFatal = [];
  }

  /** Sends `message` and resolves with the next reply of type `reply`. */
  ask<T extends FromWorker['t']>(
    message: ToWorker,
    reply: T,
    timeoutMs = 120_000,
  ): Promise<Extract<FromWorker, { t: T }>> {
    if (this.#fatal) return Promise.reject(this.#fatal);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker did not answer ${message.t}`)), timeoutMs);
      const done = (m: FromWorker): void => {
        clearTimeout(timer);
        resolve(m as Extract<FromWorker, { t: T }>);
      };
      const queue = this.#waiting.get(reply) ?? [];
      queue.push(done);
      this.#waiting.set(reply, queue);
      this.#onFatal.push((err) => {
        clearTimeout(timer);
        reject(err);
      });
      this.child.send(message);
    });
  }

  /** Estimates worker clock − parent clock (µs) from the fastest of `rounds` IPC round trips. */
  async clockOffset(rounds = 30): Promise<number> {
    let best = { rtt: Number.POSITIVE_INFINITY, offset: 0 };
    for (let id = 0; id < rounds; id++) {
      const sent = nowMicros();
      const { workerUs } = await this.ask({ t: 'clock', id }, 'clock');
      const received = nowMicros();
      const rtt = received - sent;
      if (rtt < best.rtt) best = { rtt, offset: workerUs - (sent + received) / 2 };
    }
    return best.offset;
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    try {
      await this.ask({ t: 'close' }, 'closed', 5000);
    } catch {
      /* already gone */
    }
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(timer);
  }
}

// ── results ─────────────────────────────────────────────────────────────────────────

interface StepResult {
  rate: number;
  /** Events sent in the window, and of those the ones stored (puback). */
  published: number;
  accepted: number;
  /** Accepted events per second. */
  publishRate: number;
  deliveredPerSec: number;
  expectedPerSec: number;
  latencyMs: {
    p50: number;
    p90: number;
    p99: number;
    p999: number;
    max: number;
    mean: number;
    count: number;
  };
  /** (events accepted in the window × subscribers) − latency samples: not delivered by the end of the drain. */
  missing: number;
  afterWindow: number;
  pubackMs: { p50: number; p99: number; max: number };
  scheduleLagMs: { p99: number; max: number };
  nacks: Record<string, number>;
  gatewayCpu: number;
  /** Gateway CPU time per delivered event, µs (gateway CPU ÷ deliveries). */
  gatewayUsPerDelivery: number;
  redisCpu: number | undefined;
  /** Whole machine, percent of all cores. */
  machineBusy: number;
  machineSteal: number;
  /** CPU used by processes that are not part of this benchmark, percent of one core. */
  otherCpu: number;
  workerElu: number[];
  workerCpu: number[];
  publisherElu: number;
  publisherCpu: number;
  clientBound: boolean;
  drainBehind: number;
  drainMs: number;
  gaps: number;
  duplicates: number;
  closes: Record<string, number>;
  errorFrames: Record<string, number>;
  gatewayCloses: Record<string, number>;
  gatewayReplays: number;
  gatewayGapFills: number;
  gatewayHeadNotices: number;
  gatewayLoopLagP99Ms: number;
  notes: string[];
}

interface ArmResult {
  engine: 'memory' | 'redis';
  status: 'ok' | 'skipped' | 'failed';
  reason?: string;
  transport?: string;
  connect?: {
    ok: number;
    failed: number;
    seconds: number;
    handshakeP50Ms: number;
    handshakeP99Ms: number;
    errors: string[];
  };
  rss?: { beforeMB: number; afterConnectMB: number; perConnectionKB: number; endMB: number; peakMB: number };
  workerRssMB?: number[];
  steps: StepResult[];
  gatewayProblems: string[];
  gatewayExit?: number | null;
}

const nproc = machineInfo().nproc;
/** Shortest notice the workers get of a measurement window (when --warmup is shorter). */
const MARK_LEAD_MS = 500;
const ms = (us: number): number => Math.round(us) / 1000;
const MB = (bytes: number): number => Math.round((bytes / 2 ** 20) * 10) / 10;

interface GatewayCounters {
  closes: Record<string, number>;
  /** Per-connection catch-up reads from the engine. */
  replays: number;
  /** Shared cache fills from the engine after a cross-node head notice (0 if the gateway has none). */
  gapFills: number;
  headNotices: number;
  lagP99Ms: number;
}

async function scrapeMetrics(url: string): Promise<GatewayCounters> {
  const closes: Record<string, number> = {};
  let replays = 0;
  let gapFills = 0;
  let headNotices = 0;
  let lagP99Ms = Number.NaN;
  try {
    const text = await (await fetch(`${url}/metrics`)).text();
    for (const line of text.split('\n')) {
      const close = /^lifeos_ws_closes_total\{code="(\d+)"\} (\S+)/.exec(line);
      if (close) closes[close[1]!] = Number(close[2]);
      const replay = /^lifeos_replays_total (\S+)/.exec(line);
      if (replay) replays = Number(replay[1]);
      const fill = /^lifeos_gap_fills_total (\S+)/.exec(line);
      if (fill) gapFills = Number(fill[1]);
      const notice = /^lifeos_remote_notices_total\{kind="head"\} (\S+)/.exec(line);
      if (notice) headNotices = Number(notice[1]);
      const lag = /^nodejs_eventloop_lag_p99_seconds(?:\{[^}]*\})? (\S+)/.exec(line);
      if (lag) lagP99Ms = Number(lag[1]) * 1000;
    }
  } catch {
    /* the gateway is gone: report what we have */
  }
  return { closes, replays, gapFills, headNotices, lagP99Ms };
}

function diffCounts(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v - (before[k] ?? 0) > 0) out[k] = v - (before[k] ?? 0);
  return out;
}

function sumCounts(list: Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const counts of list) for (const [k, v] of Object.entries(counts)) out[k] = (out[k] ?? 0) + v;
  return out;
}

const fmtCounts = (counts: Record<string, number>): string =>
  Object.entries(counts)
    .map(([k, v]) => `${k}×${v}`)
    .join(' ');

// ── one arm: one engine, one gateway, N subscribers, each rate in turn ──────────────

async function runArm(engine: 'memory' | 'redis', rates: number[]): Promise<ArmResult> {
  const result: ArmResult = { engine, status: 'ok', steps: [], gatewayProblems: [] };
  const secret = randomBytes(32).toString('hex');
  const env: Record<string, string> = {
    PORT: '0',
    HOST: '127.0.0.1',
    AUTH_JWT_SECRET: secret,
    LOG_LEVEL: 'info',
    NODE_ID: `bench-${engine}`,
  };
  let redis: RedisServer | undefined;
  let gateway: GatewayProcess | undefined;
  const workers: WorkerHandle[] = [];
  let publisher: Publisher | undefined;
  try {
    if (engine === 'redis') {
      try {
        redis = await RedisServer.start({ aof: true, appendfsync: 'everysec' });
      } catch (err) {
        return { ...result, status: 'skipped', reason: `redis-server: ${String(err).split('\n')[0] ?? ''}` };
      }
      env.REDIS_URL = redis.url;
    }
    try {
      // the gateway inherits this environment (but REDIS_URL): `MAX_IN_FLIGHT=512 npm run bench:smoke`
      const inherited = Object.entries(process.env).filter(
        (e): e is [string, string] => e[1] !== undefined && e[0] !== 'REDIS_URL',
      );
      gateway = await GatewayProcess.start(
        { ...Object.fromEntries(inherited), ...env },
        await benchGateway(),
      );
    } catch (err) {
      const text = err instanceof Error ? err.message : String(err);
      const reason = text
        .split('\n')
        .filter((l) => l.trim() !== '')
        .slice(0, 3)
        .join(' | ');
      return { ...result, status: 'skipped', reason: `gateway did not start: ${reason}` };
    }
    result.transport = String(gateway.listening['transport']);
    const redisPid = redis
      ? Number(/process_id:(\d+)/.exec(String(await redis.command('INFO', 'server')))?.[1])
      : undefined;

    // tokens and the session
    const jwt = new JwtVerifier(secret);
    const tid = 'bench';
    const owner = await jwt.sign({ sub: 'bench-owner', tid, role: 'user' });
    const agent = await jwt.sign({ sub: 'bench-publisher', tid, role: 'agent' });
    const created = await fetch(`${gateway.url}/v1/call/sessions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${owner}`, 'idempotency-key': `bench-${Date.now()}` },
    });
    const session = (await created.json()) as { id?: string };
    if (created.status !== 201 || !session.id)
      throw new Error(`create session: ${created.status} ${JSON.stringify(session)}`);
    const sessionId = session.id;

    // subscriber workers
    const share = (w: number): number =>
      Math.floor(opts.subscribers / opts.workers) + (w < opts.subscribers % opts.workers ? 1 : 0);
    for (let w = 0; w < opts.workers; w++) workers.push(new WorkerHandle());
    await Promise.all(
      workers.map(async (worker, w) =>
        worker.ask(
          {
            t: 'init',
            workerId: w,
            wsUrl: gateway!.wsUrl,
            sessionId,
            token: await jwt.sign({ sub: `bench-subscriber-${w}`, tid, role: 'agent' }),
            subscribers: share(w),
            codec: opts.codec,
            parse: opts.parse,
            ackEvery: opts.ackEvery,
            connectConcurrency: opts.connectConcurrency,
          },
          'ready',
        ),
      ),
    );
    const offsets = await Promise.all(workers.map((w) => w.clockOffset()));

    await sleep(500);
    const before = memory(gateway.pid);
    const connectStart = performance.now();
    const connects: ConnectResult[] = await Promise.all(
      workers.map((w) => w.ask({ t: 'connect' }, 'connected')),
    );
    const connectSeconds = (performance.now() - connectStart) / 1000;
    const handshake = new Histogram();
    for (const c of connects) handshake.merge(c.handshake);
    const connected = connects.reduce((n, c) => n + c.ok, 0);
    result.connect = {
      ok: connected,
      failed: connects.reduce((n, c) => n + c.failed, 0),
      seconds: Math.round(connectSeconds * 100) / 100,
      handshakeP50Ms: ms(handshake.quantile(0.5)),
      handshakeP99Ms: ms(handshake.quantile(0.99)),
      errors: connects.flatMap((c) => c.errors).slice(0, 5),
    };
    if (connected === 0) throw new Error(`no subscriber connected: ${result.connect.errors.join('; ')}`);
    await sleep(1000);
    const afterConnect = memory(gateway.pid);
    result.rss = {
      beforeMB: MB(before.rss),
      afterConnectMB: MB(afterConnect.rss),
      perConnectionKB: Math.round(((afterConnect.rss - before.rss) / connected / 1024) * 10) / 10,
      endMB: Number.NaN,
      peakMB: Number.NaN,
    };
    printArmHeader(result, connected);

    publisher = new Publisher({
      wsUrl: gateway.wsUrl,
      sessionId,
      token: agent,
      codec: opts.codec,
      textBytes: opts.textBytes,
      ackEvery: opts.ackEvery,
    });
    await publisher.connect();

    for (const rate of rates) {
      const step = await runStep(rate, connected, gateway, redisPid, workers, offsets, publisher);
      result.steps.push(step);
      printStep(step);
      if (publisher.closedWith !== undefined)
        throw new Error(`publisher closed with ${publisher.closedWith}`);
      await sleep(300);
    }

    const end = memory(gateway.pid);
    result.rss.endMB = MB(end.rss);
    result.rss.peakMB = MB(end.hwm);
    const reports = await Promise.all(workers.map((w) => w.ask({ t: 'report' }, 'report')));
    result.workerRssMB = reports.map((r) => MB(r.rss));
    console.log(
      `  gateway RSS at end ${result.rss.endMB} MB (peak ${result.rss.peakMB} MB); worker RSS ${result.workerRssMB.join(' / ')} MB`,
    );
  } catch (err) {
    result.status = 'failed';
    result.reason = err instanceof Error ? err.message : String(err);
    console.log(`  ${engine}: FAILED — ${result.reason}`);
  } finally {
    publisher?.close();
    await Promise.all(workers.map((w) => w.close()));
    if (gateway) {
      result.gatewayProblems = [
        ...new Set(gateway.problems.map((p) => `${String(p.level)}: ${String(p.msg)}`)),
      ];
      result.gatewayExit = (await gateway.stop(15_000)).code;
    }
    await redis?.stop();
  }
  return result;
}

async function runStep(
  rate: number,
  subscribers: number,
  gateway: GatewayProcess,
  redisPid: number | undefined,
  workers: WorkerHandle[],
  offsets: number[],
  publisher: Publisher,
): Promise<StepResult> {
  // The window opens at markUs, after the warm-up. The workers are told now, so that even
  // one whose event loop is backlogged by then knows which events to measure.
  const markUs = nowMicros() + Math.max(opts.warmup * 1000, MARK_LEAD_MS) * 1000;
  publisher.mark(markUs);
  const marked = Promise.all(
    workers.map((w, i) => w.ask({ t: 'mark', markUs, offsetUs: offsets[i]! }, 'marked')),
  );
  publisher.start(rate);
  await sleep(Math.max(0, (markUs - nowMicros()) / 1000 - 200));
  const metricsBefore = await scrapeMetrics(gateway.url); // also restarts its loop-lag histogram
  await sleep(Math.max(0, (markUs - nowMicros()) / 1000));
  const gatewayCpu = new CpuMeter(gateway.pid);
  const redisCpu = redisPid ? new CpuMeter(redisPid) : undefined;
  const machineStart = machineCpu();
  const elu0 = performance.eventLoopUtilization();
  const cpu0 = process.cpuUsage();

  await sleep(opts.seconds * 1000);
  await marked;

  // close it
  publisher.stop();
  const stopUs = nowMicros();
  const gatewayCpuPct = gatewayCpu.percent();
  const redisCpuPct = redisCpu?.percent();
  const machine = machineCpuPercent(machineStart, machineCpu());
  const publisherElu = performance.eventLoopUtilization(elu0).utilization;
  const windowSeconds = (stopUs - markUs) / 1e6;
  const parentCpu = process.cpuUsage(cpu0);
  const publisherCpu = ((parentCpu.user + parentCpu.system) / 1e6 / windowSeconds) * 100;
  await Promise.all(workers.map((w) => w.ask({ t: 'stop', stopUs }, 'stopped')));
  const metricsAfter = await scrapeMetrics(gateway.url);

  // let everything published arrive
  const drainStart = performance.now();
  await publisher.settle(10_000);
  const lastSeq = publisher.maxSeq;
  const drained = await Promise.all(
    workers.map((w) => w.ask({ t: 'drain', seq: lastSeq, timeoutMs: opts.drainTimeoutMs }, 'drained')),
  );
  const drainMs = performance.now() - drainStart;
  const reports: WindowReport[] = await Promise.all(workers.map((w) => w.ask({ t: 'report' }, 'report')));

  const latency = new Histogram();
  for (const r of reports) latency.merge(r.latency);
  const deliveredPerSec = reports.reduce(
    (sum, r) => sum + (r.windowMs > 0 ? r.windowDeliveries / (r.windowMs / 1000) : 0),
    0,
  );
  const published = publisher.windowPublished;
  const accepted = publisher.windowAccepted;
  const publishRate = accepted / windowSeconds;
  const workerElu = reports.map((r) => Math.round(r.elu * 100));
  const workerCpu = reports.map((r) => Math.round(r.cpuPercent));
  const clientBound = Math.max(...workerElu) >= 85 || publisherElu >= 0.85;
  const missing = Math.max(0, accepted * subscribers - latency.count);
  const ours =
    gatewayCpuPct + (redisCpuPct ?? 0) + publisherCpu + reports.reduce((n, r) => n + r.cpuPercent, 0);
  const otherCpu = machine.busy * nproc - ours;
  const step: StepResult = {
    rate,
    published,
    accepted,
    publishRate: Math.round(publishRate * 10) / 10,
    deliveredPerSec: Math.round(deliveredPerSec),
    expectedPerSec: Math.round(publishRate * subscribers),
    latencyMs: {
      p50: ms(latency.quantile(0.5)),
      p90: ms(latency.quantile(0.9)),
      p99: ms(latency.quantile(0.99)),
      p999: ms(latency.quantile(0.999)),
      max: ms(latency.max),
      mean: ms(latency.mean),
      count: latency.count,
    },
    missing,
    afterWindow: reports.reduce((n, r) => n + r.lateDeliveries, 0),
    pubackMs: {
      p50: ms(publisher.puback.quantile(0.5)),
      p99: ms(publisher.puback.quantile(0.99)),
      max: ms(publisher.puback.max),
    },
    scheduleLagMs: { p99: ms(publisher.scheduleLag.quantile(0.99)), max: ms(publisher.scheduleLag.max) },
    nacks: publisher.nacks,
    gatewayCpu: Math.round(gatewayCpuPct),
    gatewayUsPerDelivery: Math.round((gatewayCpuPct * 1e4 * 100) / deliveredPerSec) / 100,
    redisCpu: redisCpuPct === undefined ? undefined : Math.round(redisCpuPct),
    machineBusy: Math.round(machine.busy),
    machineSteal: Math.round(machine.steal * 10) / 10,
    otherCpu: Math.round(otherCpu),
    workerElu,
    workerCpu,
    publisherElu: Math.round(publisherElu * 100),
    publisherCpu: Math.round(publisherCpu),
    clientBound,
    drainBehind: drained.reduce((n, d) => n + d.behind, 0),
    drainMs: Math.round(drainMs),
    gaps: reports.reduce((n, r) => n + r.gaps, 0),
    duplicates: reports.reduce((n, r) => n + r.duplicates, 0),
    closes: sumCounts(reports.map((r) => r.closes)),
    errorFrames: sumCounts(reports.map((r) => r.errorFrames)),
    gatewayCloses: diffCounts(metricsAfter.closes, metricsBefore.closes),
    gatewayReplays: metricsAfter.replays - metricsBefore.replays,
    gatewayGapFills: metricsAfter.gapFills - metricsBefore.gapFills,
    gatewayHeadNotices: metricsAfter.headNotices - metricsBefore.headNotices,
    gatewayLoopLagP99Ms: Math.round(metricsAfter.lagP99Ms * 100) / 100,
    notes: [],
  };
  const notes = step.notes;
  if (clientBound) {
    const cpu = Math.max(...workerCpu);
    notes.push(
      cpu >= 70
        ? 'client-bound'
        : `client-bound (CPU-starved: workers ELU ${Math.max(...workerElu)}% but CPU ${cpu}%)`,
    );
  }
  if (step.otherCpu >= 20) notes.push(`noisy: other processes used ${step.otherCpu}% of a core`);
  if (step.deliveredPerSec < step.expectedPerSec * 0.97) notes.push('behind');
  if (published / windowSeconds < rate * 0.97) notes.push('publisher-short');
  if (step.drainBehind > 0) notes.push(`${step.drainBehind} subs not drained`);
  if (missing > 0) notes.push(`${missing} undelivered`);
  const markLate = Math.max(...reports.map((r) => r.markLateMs));
  if (markLate > 0) notes.push(`window mark reached a worker ${Math.round(markLate)} ms late`);
  if (step.gaps || step.duplicates) notes.push(`gaps ${step.gaps} dups ${step.duplicates}`);
  if (Object.keys(step.closes).length) notes.push(`closes ${fmtCounts(step.closes)}`);
  if (Object.keys(step.nacks).length) notes.push(`nacks ${fmtCounts(step.nacks)}`);
  if (Object.keys(step.errorFrames).length) notes.push(`errors ${fmtCounts(step.errorFrames)}`);
  if (step.gatewayReplays > 0) notes.push(`${step.gatewayReplays} engine catch-ups`);
  if (step.gatewayGapFills > 0) notes.push(`${step.gatewayGapFills} gap fills`);
  return step;
}

// ── printing ────────────────────────────────────────────────────────────────────────

const num = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—');
const f = (n: number | undefined, digits = 2): string =>
  n === undefined || !Number.isFinite(n) ? '—' : n.toFixed(n >= 100 ? 0 : n >= 10 ? 1 : digits);
const pct = (n: number | undefined): string =>
  n === undefined || !Number.isFinite(n) ? '—' : `${Math.round(n)}%`;

function printArmHeader(arm: ArmResult, connected: number): void {
  const c = arm.connect!;
  const r = arm.rss!;
  console.log(
    `\n▶ engine ${arm.engine} · codec ${opts.codec} · ${connected} subscribers in ${opts.workers} worker process(es) · transport ${arm.transport ?? '?'}`,
  );
  console.log(
    `  connect: ${c.ok} ok, ${c.failed} failed in ${c.seconds} s (upgrade→welcome p50 ${f(c.handshakeP50Ms)} ms, p99 ${f(c.handshakeP99Ms)} ms)`,
  );
  if (c.errors.length) console.log(`  connect errors: ${c.errors.join('; ')}`);
  console.log(
    `  gateway RSS: ${r.beforeMB} MB before, ${r.afterConnectMB} MB with ${connected} subscribers → ${r.perConnectionKB} KB per connection`,
  );
  console.log(
    '  rate/s  stored/s  delivered/s   expected/s   p50 ms  p99 ms  p999 ms  max ms  puback p50/p99 ms  gw CPU  gw µs/ev  redis CPU  workers ELU/CPU  pub CPU  machine (others)  notes',
  );
}

function printStep(s: StepResult): void {
  const cols = [
    num(s.rate).padStart(6),
    f(s.publishRate, 1).padStart(8),
    num(s.deliveredPerSec).padStart(12),
    num(s.expectedPerSec).padStart(12),
    f(s.latencyMs.p50).padStart(8),
    f(s.latencyMs.p99).padStart(7),
    f(s.latencyMs.p999).padStart(8),
    f(s.latencyMs.max).padStart(7),
    `${f(s.pubackMs.p50)}/${f(s.pubackMs.p99)}`.padStart(18),
    pct(s.gatewayCpu).padStart(7),
    f(s.gatewayUsPerDelivery).padStart(8),
    pct(s.redisCpu).padStart(10),
    s.workerElu
      .map((e, i) => `${e}%/${s.workerCpu[i] ?? NaN}%`)
      .join(' ')
      .padStart(15),
    pct(s.publisherCpu).padStart(8),
    `${pct(s.machineBusy)} (${pct(s.otherCpu)})${s.machineSteal >= 1 ? ` steal ${s.machineSteal}%` : ''}`.padStart(
      17,
    ),
    s.notes.join('; ') || 'ok',
  ];
  console.log(`  ${cols.join(' ')}`);
}

function markdownTable(arms: ArmResult[]): string {
  const rows = [
    '| engine | rate ev/s | delivered ev/s | p50 ms | p99 ms | p999 ms | max ms | puback p50/p99 ms | gateway CPU | gw CPU µs/delivery | redis CPU | worker ELU | RSS/conn | notes |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ];
  for (const arm of arms) {
    if (arm.status !== 'ok' && arm.steps.length === 0) {
      rows.push(
        `| ${arm.engine} | — | — | — | — | — | — | — | — | — | — | — | — | ${arm.status}: ${arm.reason ?? ''} |`,
      );
      continue;
    }
    for (const s of arm.steps) {
      rows.push(
        `| ${arm.engine} | ${num(s.rate)} | ${num(s.deliveredPerSec)} | ${f(s.latencyMs.p50)} | ${f(s.latencyMs.p99)} | ${f(s.latencyMs.p999)} | ${f(s.latencyMs.max)} | ${f(s.pubackMs.p50)}/${f(s.pubackMs.p99)} | ${pct(s.gatewayCpu)} | ${f(s.gatewayUsPerDelivery)} | ${pct(s.redisCpu)} | ${s.workerElu.map((e) => `${e}%`).join(', ')} | ${arm.rss ? `${arm.rss.perConnectionKB} KB` : '—'} | ${s.notes.join('; ') || 'ok'} |`,
      );
    }
  }
  return rows.join('\n');
}

// ── main ────────────────────────────────────────────────────────────────────────────

function report(arm: ArmResult): void {
  if (arm.status === 'skipped') console.log(`\n▶ engine ${arm.engine}: SKIPPED — ${arm.reason ?? ''}`);
  if (arm.gatewayProblems.length)
    console.log(`  gateway warnings/errors: ${arm.gatewayProblems.slice(0, 8).join(' · ')}`);
  if (arm.gatewayExit !== undefined && arm.gatewayExit !== 0)
    console.log(`  gateway exit code: ${String(arm.gatewayExit)}`);
}

async function main(): Promise<void> {
  const machine: MachineInfo = machineInfo();
  const code = codeVersion(repoRoot);
  const started = new Date();
  console.log(
    `bench:smoke ${started.toISOString()} — ${machine.nproc} cores (${machine.cpuModel}), ${machine.memoryGiB} GiB, node ${machine.node}, open files ${machine.openFilesLimit}`,
  );
  console.log(
    `  gateway code: HEAD ${code.head}${code.srcDirty ? ' + uncommitted changes in src/' : ''} (src digest ${code.srcDigest})`,
  );
  console.log(
    `  ${opts.subscribers} subscribers, rate ${opts.rates.join(',')} ev/s, ${opts.seconds} s measured (+${opts.warmup} s warm-up) per rate, codec ${opts.codec}, parse ${opts.parse}, ack every ${opts.ackEvery}, ${opts.workers} worker(s)`,
  );
  const arms: ArmResult[] = [];
  // Each rate gets a fresh gateway, redis-server and subscribers (independent runs),
  // unless --reuse runs all rates one after another on the same ones.
  const plans = opts.reuse ? [opts.rates] : opts.rates.map((rate) => [rate]);
  for (const engine of opts.engines) {
    let skipped: ArmResult | undefined;
    for (const rates of plans) {
      if (skipped) break;
      const arm = await runArm(engine, rates);
      report(arm);
      arms.push(arm);
      if (arm.status === 'skipped') skipped = arm;
    }
  }
  const seconds = Math.round((Date.now() - started.getTime()) / 100) / 10;

  console.log(`\nsummary (${seconds} s):\n`);
  console.log(markdownTable(arms));
  if (opts.out) {
    writeFileSync(
      opts.out,
      `${JSON.stringify({ date: started.toISOString(), machine, code, options: opts, arms }, null, 2)}\n`,
    );
    console.log(`\nwrote ${opts.out}`);
  }
  if (arms.some((a) => a.status === 'failed')) process.exitCode = 1;
}

main().then(
  () => process.exit(),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
