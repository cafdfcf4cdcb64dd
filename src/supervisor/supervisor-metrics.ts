import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';

/** One worker slot as the primary sees it: what `/workers` lists. */
export interface WorkerInfo {
  index: number;
  /** The worker's node id (`<base>-w<i>`), the `node` label of its metrics. */
  node: string;
  /** Null between a worker's death and its restart. */
  pid: number | null;
  listening: boolean;
  /** How often this slot was restarted since the primary started. */
  restarts: number;
}

/**
 * The primary's own metrics, in a small Registry of its own (not the gateway's
 * `Metrics`): how many workers there are, how many answered this scrape, and how often
 * each was restarted. They are merged into the `METRICS_PORT` scrape with the workers'.
 */
export class SupervisorMetrics {
  readonly registry = new Registry();

  readonly workers = new Gauge({
    name: 'lifeos_supervisor_workers',
    help: 'Worker slots the primary keeps (WORKERS).',
    registers: [this.registry],
  });
  readonly listening = new Gauge({
    name: 'lifeos_supervisor_workers_listening',
    help: 'Workers currently listening (not starting or being restarted).',
    registers: [this.registry],
  });
  readonly reporting = new Gauge({
    name: 'lifeos_supervisor_workers_reporting',
    help: 'Workers whose metrics are in this scrape: a worker that did not answer in time is left out.',
    registers: [this.registry],
  });
  readonly restarts = new Counter({
    name: 'lifeos_supervisor_worker_restarts_total',
    help: 'Restarts of a worker that died while the primary was running, by worker index.',
    labelNames: ['worker'] as const,
    registers: [this.registry],
  });
  readonly #restartsReported = new Map<number, number>();

  /**
   * `node` labels every series (the primary's node id base, or the single gateway's node
   * id). `processMetrics`: also the primary process's own default metrics (memory, CPU,
   * event loop); off when the primary is the gateway process itself, whose registry has
   * them already.
   */
  constructor(node: string, options: { processMetrics: boolean }) {
    if (node !== '') this.registry.setDefaultLabels({ node });
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry });
  }

  /** Brings the gauges and the restart counter up to date for one scrape. */
  update(workers: readonly WorkerInfo[], reporting: number): void {
    this.workers.set(workers.length);
    this.listening.set(workers.filter((w) => w.listening).length);
    this.reporting.set(reporting);
    for (const w of workers) {
      const reported = this.#restartsReported.get(w.index) ?? 0;
      // inc(0) too: every slot has its series from the first scrape on.
      this.restarts.inc({ worker: String(w.index) }, Math.max(0, w.restarts - reported));
      this.#restartsReported.set(w.index, Math.max(reported, w.restarts));
    }
  }
}
