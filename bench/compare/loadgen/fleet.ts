/**
 * The orchestrator's handle on its load-generator processes: forks them (they inherit the
 * orchestrator's CPU pinning), spreads subscribers over them, and merges their answers.
 * One process holds at most `perWorker` sockets, below the 20,000 open-files limit.
 */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as hdr from 'hdr-histogram-js';
import { nowMicros } from '../../lib/wire.ts';
import {
  emptyTimeline,
  type CatchupReply,
  type Timeline,
  type ConnectReply,
  type FromWorker,
  type TopicShare,
  type ToWorker,
  type WorkerInit,
  type WorkerReport,
} from './messages.ts';
import { newHistogram, percentilesMs } from './histogram.ts';

const WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'worker.ts');

type Request = ToWorker extends infer T ? (T extends { id: number } ? Omit<T, 'id'> : never) : never;

class WorkerHandle {
  readonly child: ChildProcess;
  #next = 1;
  readonly #waiting = new Map<number, { resolve: (m: FromWorker) => void; reject: (e: Error) => void }>();
  /** Offset that converts this worker's clock to the parent's (µs). */
  offsetUs = 0;

  constructor() {
    this.child = fork(WORKER, [], {
      execArgv: ['--import', 'tsx', '--max-old-space-size=4096'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child.on('message', (message: FromWorker) => {
      const waiter = this.#waiting.get(message.id);
      if (!waiter) return;
      this.#waiting.delete(message.id);
      if (message.op === 'error') waiter.reject(new Error(`loadgen worker: ${message.message}`));
      else waiter.resolve(message);
    });
    this.child.on('exit', (code) => {
      for (const waiter of this.#waiting.values())
        waiter.reject(new Error(`loadgen worker exited (${String(code)})`));
      this.#waiting.clear();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  request(message: Request): Promise<FromWorker> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.child.send({ ...message, id });
    });
  }

  /** Fastest of 20 IPC round trips: worker clock + offset = parent clock. */
  async measureOffset(): Promise<void> {
    let best = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 20; i++) {
      const t0 = nowMicros();
      const answer = (await this.request({ op: 'clock' })) as Extract<FromWorker, { op: 'clock' }>;
      const t1 = nowMicros();
      if (t1 - t0 < best) {
        best = t1 - t0;
        this.offsetUs = Math.round((t0 + t1) / 2 - answer.us);
      }
    }
  }
}

export interface FleetReport {
  subscribers: number;
  ready: number;
  windowDeliveries: number;
  /** Server pings the clients answered since the window opened. */
  windowPings: number;
  /** Deliveries per second over the window (each worker's own window length). */
  deliveredPerS: number;
  latency: hdr.Histogram;
  delivered: number;
  gaps: number;
  duplicates: number;
  closes: Record<string, number>;
  /** Echo publishes the gateway refused, by nack code (lifetime, like closes). */
  nacks: Record<string, number>;
  reconnects: number;
  lastSeq: Record<string, { min: number; max: number }>;
  /** Every worker's load and its own share of the latencies (p99, ms). */
  workers: { elu: number; cpuPercent: number; p99Ms: number }[];
  /** The workers' timelines added up (maxUs: the largest of any). */
  timeline: Timeline;
}

export class Fleet {
  readonly workers: WorkerHandle[];

  private constructor(workers: WorkerHandle[]) {
    this.workers = workers;
  }

  static async start(count: number, init: WorkerInit): Promise<Fleet> {
    const workers = Array.from({ length: count }, () => new WorkerHandle());
    const fleet = new Fleet(workers);
    await Promise.all(
      workers.map(async (w, i) => {
        // each worker its own slice of source addresses
        const localAddresses = init.localAddresses.filter((_, j) => j % count === i);
        await w.request({
          op: 'init',
          init: { ...init, localAddresses: localAddresses.length ? localAddresses : init.localAddresses },
        });
        await w.measureOffset();
      }),
    );
    return fleet;
  }

  get pids(): number[] {
    return this.workers.map((w) => w.pid);
  }

  /** Spreads `perTopic` subscribers of every topic evenly over the workers. */
  connect(
    topics: readonly string[],
    perTopic: number,
    concurrency: number,
    timeoutMs = 120_000,
  ): Promise<ConnectReply & { histogram: hdr.Histogram }> {
    return this.#handshakes(topics, perTopic, concurrency, timeoutMs, true);
  }

  /**
   * The same handshakes as `connect`, but each client closes once it is ready: the
   * server does the work of `perTopic` × topics connections and holds none of them.
   */
  churn(
    topics: readonly string[],
    perTopic: number,
    concurrency: number,
    timeoutMs = 120_000,
  ): Promise<ConnectReply & { histogram: hdr.Histogram }> {
    return this.#handshakes(topics, perTopic, concurrency, timeoutMs, false);
  }

  async #handshakes(
    topics: readonly string[],
    perTopic: number,
    concurrency: number,
    timeoutMs: number,
    hold: boolean,
  ): Promise<ConnectReply & { histogram: hdr.Histogram }> {
    const n = this.workers.length;
    const shares: TopicShare[][] = this.workers.map(() => []);
    topics.forEach((topic, t) => {
      for (let i = 0; i < n; i++) {
        const count = Math.floor(perTopic / n) + ((i + t) % n < perTopic % n ? 1 : 0);
        if (count > 0) shares[i]!.push({ topic, count });
      }
    });
    const replies = await Promise.all(
      this.workers.map(async (w, i) => {
        const answer = (await w.request({
          op: 'connect',
          topics: shares[i]!,
          concurrency: Math.max(1, Math.round(concurrency / n)),
          timeoutMs,
          hold,
        })) as Extract<FromWorker, { op: 'connected' }>;
        return answer.reply;
      }),
    );
    const histogram = newHistogram();
    for (const r of replies) histogram.add(hdr.decodeFromCompressedBase64(r.handshake));
    return {
      ready: sum(replies.map((r) => r.ready)),
      failed: sum(replies.map((r) => r.failed)),
      ms: Math.max(...replies.map((r) => r.ms)),
      handshake: '',
      histogram,
    };
  }

  async openWindow(startUs: number, stopUs: number): Promise<void> {
    await Promise.all(
      this.workers.map((w) => w.request({ op: 'window', startUs, stopUs, offsetUs: w.offsetUs })),
    );
  }

  async report(): Promise<FleetReport> {
    const reports = await Promise.all(
      this.workers.map(
        async (w) => ((await w.request({ op: 'report' })) as Extract<FromWorker, { op: 'report' }>).report,
      ),
    );
    return merge(reports);
  }

  async policy(baseMs: number, capMs: number): Promise<void> {
    await Promise.all(this.workers.map((w) => w.request({ op: 'policy', baseMs, capMs })));
  }

  async catchupTarget(target: Record<string, number>): Promise<void> {
    await Promise.all(this.workers.map((w) => w.request({ op: 'catchup', target, offsetUs: w.offsetUs })));
  }

  async catchupWait(timeoutMs: number, t0Us: number): Promise<CatchupReply & { histogram: hdr.Histogram }> {
    const replies = await Promise.all(
      this.workers.map(
        async (w) =>
          (
            (await w.request({ op: 'catchup-wait', timeoutMs, t0Us })) as Extract<
              FromWorker,
              { op: 'catchup' }
            >
          ).reply,
      ),
    );
    const histogram = newHistogram();
    for (const r of replies) histogram.add(hdr.decodeFromCompressedBase64(r.times));
    return {
      total: sum(replies.map((r) => r.total)),
      caughtUp: sum(replies.map((r) => r.caughtUp)),
      times: '',
      maxUs: Math.max(0, ...replies.map((r) => r.maxUs)),
      recovered: sum(replies.map((r) => r.recovered)),
      freshStarts: sum(replies.map((r) => r.freshStarts)),
      histogram,
    };
  }

  /** The many-sessions shape: every subscriber publishes on its own connection (see worker `echo`). */
  async echo(o: {
    ratePerSub: number;
    seconds: number;
    payloadBytes: number;
    fromUs: number;
    toUs: number;
    seqOffset: number;
    drainMs: number;
  }): Promise<{ sent: number; inWindow: number; behind: number; maxLagMs: number }> {
    const replies = await Promise.all(this.workers.map((w) => w.request({ op: 'echo', ...o })));
    const echoed = replies.filter((r): r is Extract<FromWorker, { op: 'echoed' }> => r.op === 'echoed');
    return {
      sent: sum(echoed.map((r) => r.sent)),
      inWindow: sum(echoed.map((r) => r.inWindow)),
      behind: sum(echoed.map((r) => r.behind)),
      maxLagMs: Math.max(0, ...echoed.map((r) => r.maxLagMs)),
    };
  }

  async bytes(): Promise<{ read: number; written: number }> {
    const answers = await Promise.all(this.workers.map((w) => w.request({ op: 'bytes' })));
    let read = 0;
    let written = 0;
    for (const a of answers) {
      if (a.op === 'bytes') {
        read += a.read;
        written += a.written;
      }
    }
    return { read, written };
  }

  async close(): Promise<void> {
    await Promise.all(
      this.workers.map(async (w) => {
        const exited = new Promise<void>((resolve) => {
          if (w.child.exitCode !== null) resolve();
          else w.child.once('exit', () => resolve());
        });
        try {
          await Promise.race([w.request({ op: 'close' }), exited]);
        } catch {
          /* already gone */
        }
        const timer = setTimeout(() => w.child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(timer);
      }),
    );
  }
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

function merge(reports: WorkerReport[]): FleetReport {
  const latency = newHistogram();
  const closes: Record<string, number> = {};
  const nacks: Record<string, number> = {};
  const lastSeq: FleetReport['lastSeq'] = {};
  let deliveredPerS = 0;
  const workers: FleetReport['workers'] = [];
  const buckets = Math.max(0, ...reports.map((r) => r.timeline.count.length));
  const timeline = emptyTimeline(buckets);
  for (const r of reports) {
    const own = hdr.decodeFromCompressedBase64(r.latency);
    latency.add(own);
    workers.push({ elu: r.elu, cpuPercent: r.cpuPercent, p99Ms: percentilesMs(own).p99 });
    r.timeline.count.forEach((count, i) => {
      timeline.count[i]! += count;
      timeline.sumUs[i]! += r.timeline.sumUs[i]!;
      timeline.maxUs[i] = Math.max(timeline.maxUs[i]!, r.timeline.maxUs[i]!);
    });
    for (const [k, v] of Object.entries(r.closes)) closes[k] = (closes[k] ?? 0) + v;
    for (const [k, v] of Object.entries(r.nacks)) nacks[k] = (nacks[k] ?? 0) + v;
    for (const [topic, range] of Object.entries(r.lastSeq)) {
      const entry = (lastSeq[topic] ??= { min: Number.POSITIVE_INFINITY, max: -1 });
      entry.min = Math.min(entry.min, range.min);
      entry.max = Math.max(entry.max, range.max);
    }
    if (r.windowMs > 0) deliveredPerS += r.windowDeliveries / (r.windowMs / 1000);
  }
  return {
    subscribers: sum(reports.map((r) => r.subscribers)),
    ready: sum(reports.map((r) => r.ready)),
    windowDeliveries: sum(reports.map((r) => r.windowDeliveries)),
    windowPings: sum(reports.map((r) => r.windowPings)),
    deliveredPerS,
    latency,
    delivered: sum(reports.map((r) => r.delivered)),
    gaps: sum(reports.map((r) => r.gaps)),
    duplicates: sum(reports.map((r) => r.duplicates)),
    closes,
    nacks,
    reconnects: sum(reports.map((r) => r.reconnects)),
    lastSeq,
    workers,
    timeline,
  };
}
