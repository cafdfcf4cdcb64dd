/**
 * IPC between the orchestrator (bench/compare/run.ts) and its load-generator workers
 * (loadgen/worker.ts). Every request carries an `id`; the worker answers with the same id.
 * Histograms travel as hdr-histogram-js compressed base64.
 */
import type { ArmKind } from '../types.ts';

export interface WorkerInit {
  kind: ArmKind;
  /** ws://127.0.0.1:PORT */
  url: string;
  /** G: an `agent` JWT for fresh hellos. */
  token?: string;
  ackEvery: number;
  /** Source addresses to spread connections over (127.0.0.x). */
  localAddresses: string[];
}

export interface TopicShare {
  topic: string;
  count: number;
}

export type ToWorker =
  | { op: 'init'; id: number; init: WorkerInit }
  | { op: 'clock'; id: number }
  /**
   * Opens `count` subscribers per topic, `concurrency` handshakes in flight. With `hold`
   * false each one closes as soon as it is ready and none is kept: a warm-up that puts a
   * server through the same handshakes without leaving connections behind.
   */
  | {
      op: 'connect';
      id: number;
      topics: TopicShare[];
      concurrency: number;
      timeoutMs: number;
      hold: boolean;
    }
  /**
   * Opens a measurement window: deliveries are counted from now, and the latency of every
   * event stamped in [startUs, stopUs) (parent clock) is recorded. `offsetUs` converts this
   * worker's clock to the parent's.
   */
  | { op: 'window'; id: number; startUs: number; stopUs: number; offsetUs: number }
  | { op: 'report'; id: number }
  /** Reconnect closed subscribers with full-jitter backoff (0 base: never). */
  | { op: 'policy'; id: number; baseMs: number; capMs: number }
  /**
   * Recovery timing: from now on, note when (parent clock) each subscriber of a topic
   * first holds `target[topic]`.
   */
  | { op: 'catchup'; id: number; target: Record<string, number>; offsetUs: number }
  /** Answers when every subscriber holds its target or after `timeoutMs`; times count from `t0Us` (parent clock). */
  | { op: 'catchup-wait'; id: number; timeoutMs: number; t0Us: number }
  /**
   * The many-sessions shape: every subscriber publishes `ratePerSub` events/s on its own
   * connection for `seconds` (open loop, stamped with due times on the parent clock), then
   * the worker waits up to `drainMs` until each holds its own last event (`seqOffset`: G's
   * streams start with call.created).
   */
  | {
      op: 'echo';
      id: number;
      ratePerSub: number;
      seconds: number;
      payloadBytes: number;
      fromUs: number;
      toUs: number;
      seqOffset: number;
      drainMs: number;
    }
  | { op: 'bytes'; id: number }
  | { op: 'close'; id: number };

export interface ConnectReply {
  ready: number;
  failed: number;
  ms: number;
  /** Handshake (TCP connect → ready) latency in µs. */
  handshake: string;
}

/**
 * The window's deliveries by when their event was due to be sent, in buckets of
 * TIMELINE_BUCKET_US from the window's start: how many, their summed and their largest
 * latency (µs). It tells one slow event (a spike in one bucket) from a slow window.
 */
export interface Timeline {
  count: number[];
  sumUs: number[];
  maxUs: number[];
}

export const TIMELINE_BUCKET_US = 50_000;

/** A timeline of `buckets` empty buckets. */
export function emptyTimeline(buckets: number): Timeline {
  const zeros = (): number[] => new Array<number>(buckets).fill(0);
  return { count: zeros(), sumUs: zeros(), maxUs: zeros() };
}

export interface WorkerReport {
  subscribers: number;
  ready: number;
  /** Deliveries since the window opened, and the window's length as this worker saw it. */
  windowDeliveries: number;
  windowMs: number;
  latency: string;
  /** Server pings this process's sockets answered since the window opened. */
  windowPings: number;
  /** The window's latencies by send time (see Timeline). */
  timeline: Timeline;
  /** Lifetime counters. */
  delivered: number;
  gaps: number;
  duplicates: number;
  closes: Record<string, number>;
  /** Echo publishes the gateway refused, by nack code. */
  nacks: Record<string, number>;
  reconnects: number;
  /** Per topic: the lowest and highest last seq over its subscribers. */
  lastSeq: Record<string, { min: number; max: number }>;
  elu: number;
  cpuPercent: number;
}

export interface CatchupReply {
  total: number;
  caughtUp: number;
  /** Catch-up times in µs after t0. */
  times: string;
  maxUs: number;
  recovered: number;
  freshStarts: number;
}

export type FromWorker =
  | { op: 'ok'; id: number }
  | { op: 'clock'; id: number; us: number }
  | { op: 'connected'; id: number; reply: ConnectReply }
  | { op: 'report'; id: number; report: WorkerReport }
  | { op: 'catchup'; id: number; reply: CatchupReply }
  | { op: 'echoed'; id: number; sent: number; inWindow: number; behind: number; maxLagMs: number }
  | { op: 'bytes'; id: number; read: number; written: number }
  | { op: 'error'; id: number; message: string };
