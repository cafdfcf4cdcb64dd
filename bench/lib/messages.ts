/** IPC between bench/smoke.ts (the parent) and bench/subscriber-worker.ts (the workers). */
import type { HistogramSnapshot } from './histogram.ts';

export type CodecName = 'json' | 'msgpack';
export type ParseMode = 'fast' | 'full';

export interface WorkerInit {
  t: 'init';
  workerId: number;
  wsUrl: string;
  sessionId: string;
  token: string;
  subscribers: number;
  codec: CodecName;
  parse: ParseMode;
  ackEvery: number;
  connectConcurrency: number;
}

export type ToWorker =
  | WorkerInit
  | { t: 'clock'; id: number }
  | { t: 'connect' }
  /**
   * Opens the measurement window at `markUs` (parent clock, slightly in the future);
   * `offsetUs` is worker clock − parent clock.
   */
  | { t: 'mark'; markUs: number; offsetUs: number }
  | { t: 'stop'; stopUs: number }
  | { t: 'drain'; seq: number; timeoutMs: number }
  | { t: 'report' }
  | { t: 'close' };

export interface ConnectResult {
  t: 'connected';
  ok: number;
  failed: number;
  errors: string[];
  maxInFlight: number;
  durationMs: number;
  /** Upgrade start → welcome, µs. */
  handshake: HistogramSnapshot;
}

export interface WindowReport {
  t: 'report';
  workerId: number;
  /** `ev` frames received by this worker's subscribers inside the window. */
  windowDeliveries: number;
  windowMs: number;
  /** How late the `mark` reached the worker (ms after the window opened); > 0 loses samples. */
  markLateMs: number;
  /** Events stamped inside the window that arrived after it closed (the tail). */
  lateDeliveries: number;
  /** Publish → deliver, µs, every event stamped inside the window. */
  latency: HistogramSnapshot;
  /** Window totals over the worker's lifetime. */
  gaps: number;
  duplicates: number;
  acksSent: number;
  errorFrames: Record<string, number>;
  closes: Record<string, number>;
  /** Event-loop utilisation (0..1) and CPU (% of one core) of the worker in the window. */
  elu: number;
  cpuPercent: number;
  /** RSS of the worker process, bytes. */
  rss: number;
}

export type FromWorker =
  | { t: 'ready' }
  | { t: 'clock'; id: number; workerUs: number }
  | ConnectResult
  | { t: 'marked' }
  | { t: 'stopped' }
  | { t: 'drained'; behind: number; minSeq: number }
  | WindowReport
  | { t: 'closed' }
  | { t: 'fatal'; message: string };
