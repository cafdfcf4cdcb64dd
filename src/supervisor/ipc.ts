import type { Registry } from 'prom-client';

/**
 * The messages between a primary and its workers over the fork IPC channel.
 *
 * - worker → primary `lifeos:listening`: "I am listening". The primary logs its own
 *   `listening` line once every worker sent it.
 * - primary → worker `lifeos:metrics-request`, answered with `lifeos:metrics`: the
 *   worker's metrics, for the primary's `METRICS_PORT` endpoint.
 */
export interface ListeningMessage {
  type: 'lifeos:listening';
  port: number;
  node: string;
  engine: string;
  transport: string;
}

/** Set in a worker's environment by the primary: the worker's slot index. Internal. */
export const WORKER_ENV = 'LIFEOS_GATEWAY_WORKER';

export function isListeningMessage(message: unknown): message is ListeningMessage {
  if (typeof message !== 'object' || message === null) return false;
  const m = message as Record<string, unknown>;
  return (
    m['type'] === 'lifeos:listening' &&
    typeof m['port'] === 'number' &&
    typeof m['node'] === 'string' &&
    typeof m['engine'] === 'string' &&
    typeof m['transport'] === 'string'
  );
}

/**
 * The worker index this process was started with, when it runs as a worker of a
 * primary (an IPC channel and the marker variable); undefined otherwise.
 */
export function workerIndex(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env[WORKER_ENV];
  if (raw === undefined || !/^\d+$/.test(raw) || typeof process.send !== 'function') return undefined;
  return Number(raw);
}

/** Tells the primary this worker listens. Never throws: the primary may be gone already. */
export function reportListening(message: Omit<ListeningMessage, 'type'>): void {
  const full: ListeningMessage = { type: 'lifeos:listening', ...message };
  try {
    process.send?.(full, undefined, undefined, () => {
      /* a closed channel: the primary is gone, and 'disconnect' handles that */
    });
  } catch {
    /* same */
  }
}

/**
 * A process's metrics as prom-client's `registry.getMetricsAsJSON()` returns them: what a
 * worker sends its primary, and what `AggregatorRegistry.aggregate` merges.
 */
export type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

/** Primary → worker: "send me your metrics". `id` pairs the answer with the request. */
export interface MetricsRequestMessage {
  type: 'lifeos:metrics-request';
  id: number;
}

/** Worker → primary: the answer to one MetricsRequestMessage, its metrics or why not. */
export type MetricsResponseMessage =
  | { type: 'lifeos:metrics'; id: number; metrics: MetricsJson }
  | { type: 'lifeos:metrics'; id: number; error: string };

export function isMetricsRequestMessage(message: unknown): message is MetricsRequestMessage {
  if (typeof message !== 'object' || message === null) return false;
  const m = message as Record<string, unknown>;
  return m['type'] === 'lifeos:metrics-request' && typeof m['id'] === 'number';
}

export function isMetricsResponseMessage(message: unknown): message is MetricsResponseMessage {
  if (typeof message !== 'object' || message === null) return false;
  const m = message as Record<string, unknown>;
  if (m['type'] !== 'lifeos:metrics' || typeof m['id'] !== 'number') return false;
  if (typeof m['error'] === 'string') return true;
  const metrics = m['metrics'];
  return Array.isArray(metrics) && metrics.every(isMetricJson);
}

/** The shape `AggregatorRegistry.aggregate` relies on: a named metric with a values array. */
function isMetricJson(metric: unknown): boolean {
  if (typeof metric !== 'object' || metric === null) return false;
  const m = metric as Record<string, unknown>;
  return typeof m['name'] === 'string' && typeof m['type'] === 'string' && Array.isArray(m['values']);
}

/**
 * In a worker: answers the primary's metrics requests with `collect()` (the gateway
 * registry's `getMetricsAsJSON()`). Never throws, also not when the channel is closed
 * (the primary is gone, and 'disconnect' handles that). Returns a function that stops
 * answering.
 */
export function answerMetricsRequests(collect: () => Promise<MetricsJson>): () => void {
  const onMessage = (message: unknown): void => {
    if (!isMetricsRequestMessage(message)) return;
    const { id } = message;
    Promise.resolve()
      .then(collect)
      .then(
        (metrics) => send({ type: 'lifeos:metrics', id, metrics }),
        (err: unknown) =>
          send({ type: 'lifeos:metrics', id, error: err instanceof Error ? err.message : String(err) }),
      );
  };
  process.on('message', onMessage);
  return () => {
    process.off('message', onMessage);
  };
}

function send(message: MetricsResponseMessage): void {
  if (!process.connected) return;
  try {
    process.send?.(message, undefined, undefined, () => {
      /* a closed channel: the primary is gone */
    });
  } catch {
    /* same */
  }
}
