import { fork, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import type { Logger } from '../observability/logger.ts';
import { isListeningMessage, WORKER_ENV, type ListeningMessage } from './ipc.ts';
import { RestartPolicy } from './restart-policy.ts';

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

/** `WORKERS=0` means one worker per core. */
export function resolveWorkerCount(configured: number): number {
  return configured === 0 ? availableParallelism() : configured;
}

/** The primary's node flags minus debugger ones (N workers cannot share one inspector port). */
export function workerExecArgv(execArgv: readonly string[]): string[] {
  return execArgv.filter((arg) => !/^--(inspect|debug)(-brk|-port|-wait)?(=|$)/.test(arg));
}

export class Supervisor {
  readonly #options: SupervisorOptions;
  readonly #policy: RestartPolicy;
  readonly #slots: Slot[];
  #state: State = 'starting';
  #exitCode = 0;
  #unclean = false;
  #deadline: NodeJS.Timeout | undefined;
  #resolve: (code: number) => void = () => {};
  readonly #done: Promise<number>;

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
    for (const slot of this.#slots) this.#spawn(slot);
    return this.#done;
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
      env: { ...env, NODE_ID: slot.node, WORKERS: '1', [WORKER_ENV]: String(slot.index) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    slot.child = child;
    slot.listening = false;
    this.#log('info', { worker: slot.index, pid: child.pid, workerNode: slot.node }, 'worker started');
    child.on('message', (message: unknown) => {
      if (slot.child === child && isListeningMessage(message)) this.#onListening(slot, message);
    });
    child.once('exit', (code, signal) => {
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
    }
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
