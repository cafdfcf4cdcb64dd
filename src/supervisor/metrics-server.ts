import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { AggregatorRegistry, type Registry } from 'prom-client';
import type { Logger } from '../observability/logger.ts';
import type { MetricsJson } from './ipc.ts';
import type { SupervisorMetrics, WorkerInfo } from './supervisor-metrics.ts';

/**
 * The `METRICS_PORT` listener: one place to scrape every gateway process on a machine.
 * Plain node:http (the primary runs no uWS), three routes, everything else 404:
 *
 * - `GET /metrics`: the Prometheus text of every worker that answered within
 *   `workerTimeoutMs`, merged with prom-client's `AggregatorRegistry.aggregate`, plus the
 *   primary's own `lifeos_supervisor_*` series. Every worker labels its series with its
 *   own `node`, so the merge keeps them apart: nothing is summed over workers.
 *   Concurrent scrapes share one in-flight collection.
 * - `GET /workers`: `{ workers: [{ index, node, pid, listening, restarts }] }`.
 * - `GET /healthz`: 200 while the primary runs, 503 once it drains.
 *
 * With `WORKERS=1` the gateway process serves the same routes itself, as a primary of
 * one worker (see `singleProcessSource`).
 */
export interface MetricsSource {
  /** Every worker slot, live or not. */
  workers(): WorkerInfo[];
  /** The metrics of every listening worker; `metrics` undefined for one that did not answer in time. */
  collectMetrics(timeoutMs: number): Promise<WorkerMetrics[]>;
  /** False once shutting down. */
  readonly running: boolean;
}

export interface WorkerMetrics {
  index: number;
  node: string;
  metrics: MetricsJson | undefined;
}

export interface MetricsServerOptions {
  host: string;
  /** 0 picks a free one; `listen()` resolves with the port bound. */
  port: number;
  source: MetricsSource;
  /** The primary's own metrics; updated on every collection. */
  metrics: SupervisorMetrics;
  logger: Logger;
  /** For `/healthz`: the primary of N workers, or the single gateway process. */
  role: 'primary' | 'single';
  node: string;
  /** How long a worker has to answer a metrics request before it is left out. */
  workerTimeoutMs?: number;
  /** Longest time a client may take to send its request; idle sockets close after it. */
  requestTimeoutMs?: number;
}

export const WORKER_METRICS_TIMEOUT_MS = 1000;
const REQUEST_TIMEOUT_MS = 5000;
/** A scrape endpoint has a handful of clients; more connections than this are refused. */
const MAX_CONNECTIONS = 64;

export class MetricsServer {
  readonly #options: MetricsServerOptions;
  readonly #server: Server;
  readonly #workerTimeoutMs: number;
  #inflight: Promise<string> | undefined;

  constructor(options: MetricsServerOptions) {
    this.#options = options;
    this.#workerTimeoutMs = options.workerTimeoutMs ?? WORKER_METRICS_TIMEOUT_MS;
    const requestTimeout = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
    this.#server = createServer(
      { requestTimeout, headersTimeout: requestTimeout, keepAliveTimeout: requestTimeout },
      (req, res) => this.#handle(req, res),
    );
    // No 'timeout' listener: an idle socket is destroyed after this.
    this.#server.setTimeout(requestTimeout);
    this.#server.maxConnections = MAX_CONNECTIONS;
  }

  /** Binds `host:port`; resolves with the port bound, rejects when it cannot (in use, no such host). */
  listen(): Promise<number> {
    const { host, port } = this.#options;
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen({ host, port }, () => {
        this.#server.off('error', reject);
        this.#server.on('error', (err) => this.#log('error', { err }, 'metrics server error'));
        const address = this.#server.address();
        resolve(typeof address === 'object' && address !== null ? address.port : port);
      });
    });
  }

  /** Stops listening and closes every connection. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  /** The merged Prometheus text; concurrent callers share one collection. */
  scrape(): Promise<string> {
    this.#inflight ??= this.#collect().finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  async #collect(): Promise<string> {
    const { source, metrics } = this.#options;
    const answers = await source.collectMetrics(this.#workerTimeoutMs);
    const reported = answers.flatMap((a) => (a.metrics === undefined ? [] : [a.metrics]));
    metrics.update(source.workers(), reported.length);
    const own = await metrics.registry.getMetricsAsJSON();
    return mergeMetrics([...reported, own]).metrics();
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?', 1)[0];
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) return reply(res, 404, 'text/plain', 'not found\n', false);
    switch (path) {
      case '/metrics':
        this.scrape().then(
          (text) => reply(res, 200, this.#options.metrics.registry.contentType, text, head),
          (err: unknown) => {
            this.#log('error', { err }, 'metrics collection failed');
            reply(res, 500, 'text/plain', 'metrics collection failed\n', head);
          },
        );
        return;
      case '/workers':
        return json(res, 200, { workers: this.#options.source.workers() }, head);
      case '/healthz': {
        const { source, role, node } = this.#options;
        const workers = source.workers();
        return json(
          res,
          source.running ? 200 : 503,
          {
            status: source.running ? 'ok' : 'stopping',
            role,
            node,
            workers: workers.length,
            listening: workers.filter((w) => w.listening).length,
          },
          head,
        );
      }
      default:
        return reply(res, 404, 'text/plain', 'not found\n', head);
    }
  }

  #log(level: 'error', fields: object, msg: string): void {
    try {
      this.#options.logger[level](fields, msg);
    } catch {
      /* nothing left to tell it to */
    }
  }
}

/**
 * Merges the metrics of several processes into one registry. Each process labels its
 * series with its own `node`, so no two processes share a series and the merge keeps
 * every value as it is. The one exception prom-client makes, `omit` (it drops
 * `process_start_time_seconds` from a cluster merge), is turned into `first`: per node,
 * the start time is exactly what tells a restarted worker.
 */
export function mergeMetrics(perProcess: readonly MetricsJson[]): Registry {
  const keepAll = perProcess.map((metrics) =>
    metrics.map((m) => (m.aggregator === 'omit' ? { ...m, aggregator: 'first' as const } : m)),
  );
  return AggregatorRegistry.aggregate(keepAll);
}

/**
 * The MetricsSource of a gateway that runs in this process (`WORKERS=1`): one worker,
 * index 0, this process, its registry read directly. `registry` is undefined until the
 * gateway listens.
 */
export function singleProcessSource(
  node: string,
  registry: () => Registry | undefined,
  running: () => boolean,
): MetricsSource {
  return {
    workers: () => [{ index: 0, node, pid: process.pid, listening: registry() !== undefined, restarts: 0 }],
    collectMetrics: async () => {
      const current = registry();
      return current === undefined ? [] : [{ index: 0, node, metrics: await current.getMetricsAsJSON() }];
    },
    get running() {
      return running();
    },
  };
}

function reply(res: ServerResponse, status: number, contentType: string, body: string, head: boolean): void {
  if (res.destroyed) return;
  res.writeHead(status, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(head ? undefined : body);
}

function json(res: ServerResponse, status: number, body: unknown, head: boolean): void {
  reply(res, status, 'application/json', JSON.stringify(body), head);
}
