import { fork, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import type { Logger } from '../observability/logger.ts';
import {
  isListeningMessage,
  isMetricsResponseMessage,
  WORKER_ENV,
  type ListeningMessage,
  type MetricsJson,
  type MetricsRequestMessage,
  type MetricsResponseMessage,
} from './ipc.ts';
import type { MetricsSource, WorkerMetrics } from './metrics-server.ts';
import { foreignListeners, PortInUseError } from '../transport/port.ts';
import { RestartPolicy } from './restart-policy.ts';
import type { WorkerInfo } from './supervisor-metrics.ts';

/**
 * The primary of `WORKERS=N`: forks N gateway processes of the same entry point, each a
 * node of its own on the redis engine, all listening on one port. uWebSockets.js binds
 * with SO_REUSEPORT on Linux, so the kernel spreads incoming connections over the
 * workers; nothing passes through the primary (unlike node:cluster's handle sharing,
 * which uWS does not use).
 *
 * Lifecycle: `run()` forks every worker and resolves with the exit code for the primary:
 * 0 after a requested drain in which every worker exited cleanly, 1 when a worker failed
 * to start or the workers crash-loop, 2 when the drain overran `shutdownTimeoutMs` (the
 * rest is SIGKILLed) or a worker's own drain failed.
 *
 * It is also the MetricsSource of the primary's `METRICS_PORT` listener: it lists its
 * worker slots and asks every listening worker for its metrics over the IPC channel.
 */
export interface SupervisorOptions {
  workers: number;
  /** The module every worker runs (the gateway's entry point). */
  entry: string;
  /** Node flags for the workers: the primary's, so `--import tsx` carries over. */
  execArgv: string[];
  /** The environment every worker starts from; the supervisor adds NODE_ID and its marker. */
  env: NodeJS.ProcessEnv;
  /** Worker i is named `<nodeIdBase>-w<i>`. */
  nodeIdBase: string;
  host: string;
  port: number;
  shutdownTimeoutMs: number;
  /**
   * Once every worker listens, refuse (drain, exit 1) when a listen socket no worker
   * holds shares the port (`PORT_SHARING=refuse`; see port.ts).
   */
  refuseSharedPort?: boolean;
  logger: Logger;
  policy?: RestartPolicy;
}

interface Slot {
  readonly index: number;
  readonly node: string;
  child: ChildProcess | undefined;
  listening: boolean;
  restarts: number;
  restartTimer: NodeJS.Timeout | undefined;
}

type State = 'starting' | 'running' | 'stopping' | 'done';

/** A metrics request a worker has not answered yet. */
interface PendingMetrics {
  readonly child: ChildProcess;
  /** Settles the request: the worker's metrics, or undefined (no answer, an error, it died). */
  readonly settle: (metrics: MetricsJson | undefined) => void;
}

/** `WORKERS=0` means one worker per core. */
export function resolveWorkerCount(configured: number): number {
  return configured === 0 ? availableParallelism() : configured;
}

/** The primary's node flags minus debugger ones (N workers cannot share one inspector port). */
export function workerExecArgv(execArgv: readonly string[]): string[] {
  return execArgv.filter((arg) => !/^--(inspect|debug)(-brk|-port|-wait)?(=|$)/.test(arg));
}

export class Supervisor implements MetricsSource {
  readonly #options: SupervisorOptions;
  readonly #policy: RestartPolicy;
  readonly #slots: Slot[];
  #state: State = 'starting';
  #exitCode = 0;
  #unclean = false;
  #deadline: NodeJS.Timeout | undefined;
  #resolve: (code: number) => void = () => {};
  readonly #done: Promise<number>;
  #nextRequestId = 0;
  readonly #pendingMetrics = new Map<number, PendingMetrics>();

  constructor(options: SupervisorOptions) {
    this.#options = options;
    this.#policy = options.policy ?? new RestartPolicy();
    this.#slots = Array.from({ length: options.workers }, (_, index) => ({
      index,
      node: `${options.nodeIdBase}-w${index}`,
      child: undefined,
      listening: false,
      restarts: 0,
      restartTimer: undefined,
    }));
    this.#done = new Promise((resolve) => (this.#resolve = resolve));
  }

  /** Forks every worker; resolves with the primary's exit code once they are all gone. */
  run(): Promise<number> {
    // Not when stopped before it ran (a signal while the primary was still setting up).
    if (this.#state === 'starting') for (const slot of this.#slots) this.#spawn(slot);
    return this.#done;
  }

  /** False once the primary drains (a requested stop, a crash loop, a failed start). */
  get running(): boolean {
    return this.#state === 'starting' || this.#state === 'running';
  }

  /** Every worker slot: which process holds it now, whether it listens, how often it was restarted. */
  workers(): WorkerInfo[] {
    return this.#slots.map((slot) => ({
      index: slot.index,
      node: slot.node,
      pid: slot.child?.pid ?? null,
      listening: slot.listening,
      restarts: slot.restarts,
    }));
  }

  /**
   * Asks every listening worker for its metrics (`registry.getMetricsAsJSON()`) over the
   * IPC channel. A worker that does not answer within `timeoutMs`, answers with an error,
   * or dies meanwhile is in the result with `metrics` undefined. Never rejects.
   */
  collectMetrics(timeoutMs: number): Promise<WorkerMetrics[]> {
    const asked = this.#slots.filter((slot) => slot.listening && slot.child?.connected === true);
    return Promise.all(
      asked.map(async (slot) => ({
        index: slot.index,
        node: slot.node,
        metrics: await this.#askMetrics(slot, slot.child!, timeoutMs),
      })),
    );
  }

  #askMetrics(slot: Slot, child: ChildProcess, timeoutMs: number): Promise<MetricsJson | undefined> {
    const id = ++this.#nextRequestId;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#log('warn', { worker: slot.index, pid: child.pid, timeoutMs }, 'worker did not answer in time');
        settle(undefined);
      }, timeoutMs);
      const settle = (metrics: MetricsJson | undefined): void => {
        if (!this.#pendingMetrics.delete(id)) return;
        clearTimeout(timer);
        resolve(metrics);
      };
      this.#pendingMetrics.set(id, { child, settle });
      const request: MetricsRequestMessage = { type: 'lifeos:metrics-request', id };
      try {
        child.send(request, (err) => {
          if (err) settle(undefined);
        });
      } catch {
        settle(undefined);
      }
    });
  }

  #onMetrics(child: ChildProcess, message: MetricsResponseMessage): void {
    const pending = this.#pendingMetrics.get(message.id);
    // Late (timed out already) or from another process than the one asked: ignored.
    if (pending?.child !== child) return;
    if ('error' in message) {
      this.#log('warn', { pid: child.pid, error: message.error }, 'worker could not collect its metrics');
      pending.settle(undefined);
    } else {
      pending.settle(message.metrics);
    }
  }

  /** A requested drain (SIGTERM/SIGINT): every worker gets SIGTERM and drains. Idempotent. */
  stop(signal: string): void {
    if (this.#state === 'stopping' || this.#state === 'done') return;
    this.#log('info', { signal }, 'shutdown requested');
    this.#beginStop(0);
  }

  #spawn(slot: Slot): void {
    const { entry, execArgv, env } = this.#options;
    const child = fork(entry, [], {
      execArgv,
      // METRICS_PORT is the primary's: a worker answers over IPC, it does not listen there.
      env: { ...env, NODE_ID: slot.node, WORKERS: '1', METRICS_PORT: '', [WORKER_ENV]: String(slot.index) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    slot.child = child;
    slot.listening = false;
    this.#log('info', { worker: slot.index, pid: child.pid, workerNode: slot.node }, 'worker started');
    child.on('message', (message: unknown) => {
      if (slot.child !== child) return;
      if (isListeningMessage(message)) this.#onListening(slot, message);
      else if (isMetricsResponseMessage(message)) this.#onMetrics(child, message);
    });
    child.once('exit', (code, signal) => {
      // Its unanswered metrics requests need not wait for their timeout.
      for (const pending of [...this.#pendingMetrics.values()]) {
        if (pending.child === child) pending.settle(undefined);
      }
      if (slot.child === child) this.#onExit(slot, child.pid, code, signal);
    });
    child.once('error', (err) => {
      this.#log('error', { worker: slot.index, err }, 'worker process error');
      // A failed spawn emits 'error' and never 'exit'.
      if (child.pid === undefined && slot.child === child) this.#onExit(slot, undefined, null, null);
    });
  }

  #onListening(slot: Slot, message: ListeningMessage): void {
    slot.listening = true;
    if (this.#state === 'starting') {
      if (this.#slots.every((s) => s.listening)) {
        if (this.#portShared()) return;
        this.#state = 'running';
        const { host, port, workers } = this.#options;
        this.#log(
          'info',
          { port, host, workers, engine: message.engine, transport: message.transport },
          'listening',
        );
      }
    } else if (this.#state === 'running' && slot.restarts > 0) {
      this.#log(
        'info',
        { worker: slot.index, pid: slot.child?.pid, workerNode: slot.node, restarts: slot.restarts },
        'worker restarted',
      );
      // A process that joined the port since the start takes a share of the connections.
      // It is the newcomer, so the workers keep serving; the operator is told.
      const foreign = this.#foreignSockets();
      if (foreign > 0) {
        const { host, port } = this.#options;
        this.#log(
          'error',
          { port, host, foreignSockets: foreign },
          `PORT: another process listens on ${host}:${port} beside the workers and takes a share of their connections`,
        );
      }
    }
  }

  /** True (and draining, to exit 1) when another process listens on the workers' port. */
  #portShared(): boolean {
    const foreign = this.#foreignSockets();
    if (foreign === 0) return false;
    const { host, port } = this.#options;
    this.#log(
      'error',
      { port, host, foreignSockets: foreign },
      new PortInUseError(host, port, 'another listen socket appeared beside the workers').message,
    );
    this.#beginStop(1);
    return true;
  }

  /** Listen sockets on the port that no worker holds (0 unless refuseSharedPort; Linux only). */
  #foreignSockets(): number {
    if (!this.#options.refuseSharedPort) return 0;
    const pids = this.#slots.flatMap((s) => (s.child?.pid === undefined ? [] : [s.child.pid]));
    return foreignListeners(this.#options.port, pids)?.length ?? 0;
  }

  #onExit(slot: Slot, pid: number | undefined, code: number | null, signal: NodeJS.Signals | null): void {
    slot.child = undefined;
    slot.listening = false;
    const fields = { worker: slot.index, pid, code, signal };
    switch (this.#state) {
      case 'starting':
        this.#log('error', fields, 'worker failed to start');
        this.#beginStop(1);
        return;
      case 'running': {
        const delayMs = this.#policy.next(slot.index);
        if (delayMs === undefined) {
          this.#log('error', fields, 'workers keep crashing: giving up');
          this.#beginStop(1);
          return;
        }
        this.#log('warn', { ...fields, restartInMs: delayMs }, 'worker exited unexpectedly');
        slot.restarts += 1;
        slot.restartTimer = setTimeout(() => {
          slot.restartTimer = undefined;
          if (this.#state === 'running') this.#spawn(slot);
        }, delayMs);
        return;
      }
      case 'stopping': {
        // Killed by our own SIGTERM before it had installed its handlers: nothing to drain.
        const clean = code === 0 || (code === null && (signal === 'SIGTERM' || signal === 'SIGINT'));
        if (!clean) this.#unclean = true;
        this.#log(clean ? 'info' : 'warn', fields, 'worker stopped');
        if (this.#slots.every((s) => s.child === undefined)) this.#finish();
        return;
      }
      case 'done':
        return;
    }
  }

  #beginStop(exitCode: number): void {
    this.#state = 'stopping';
    this.#exitCode = exitCode;
    for (const slot of this.#slots) {
      if (slot.restartTimer) clearTimeout(slot.restartTimer);
      slot.restartTimer = undefined;
      slot.child?.kill('SIGTERM');
    }
    if (this.#slots.every((s) => s.child === undefined)) {
      this.#finish();
      return;
    }
    // Not unref'd: this deadline is what guarantees the primary ends.
    this.#deadline = setTimeout(() => {
      const left = this.#slots.filter((s) => s.child !== undefined);
      this.#log(
        'error',
        { timeoutMs: this.#options.shutdownTimeoutMs, workers: left.map((s) => s.index) },
        'shutdown timed out',
      );
      for (const slot of left) slot.child?.kill('SIGKILL');
      this.#finish(2);
    }, this.#options.shutdownTimeoutMs);
  }

  #finish(code?: number): void {
    if (this.#state === 'done') return;
    this.#state = 'done';
    if (this.#deadline) clearTimeout(this.#deadline);
    this.#resolve(code ?? (this.#exitCode === 0 && this.#unclean ? 2 : this.#exitCode));
  }

  /** Logging may fail (stdout closed by a supervisor); supervision must not depend on it. */
  #log(level: 'info' | 'warn' | 'error', fields: object, msg: string): void {
    try {
      this.#options.logger[level](fields, msg);
    } catch {
      /* nothing left to tell it to */
    }
  }
}
