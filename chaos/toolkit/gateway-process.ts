import { httpJson, type HttpResult } from './http.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { JwtVerifier } from '../../src/auth/jwt.ts';
import type { Role } from '../../src/protocol/roles.ts';

/**
 * The real gateway entry point (`node --import tsx src/main.ts`) as a child process, for
 * tests that need what only a process gives: kill -9, SIGSTOP/SIGCONT, its own RSS, its
 * own Redis connections. Every JSON log line it prints is kept (`logs`) and can be
 * awaited (`waitForLog`). Processes still running when the test process exits are
 * killed by an exit hook, even if a test forgot to stop them.
 */

export const GATEWAY_PROCESS_SECRET = 'gateway-process-secret-gateway-process-0123456789';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url));
const DIST_MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));

export type LogLine = Record<string, unknown> & { msg?: string; level?: string };

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export type { HttpResult } from './http.ts';

const live = new Set<GatewayProcess>();
let exitHookInstalled = false;
const jwt = new JwtVerifier(GATEWAY_PROCESS_SECRET);

/** Signs a bearer token the processes started here accept. */
export function processToken(
  sub: string,
  role: Role = 'user',
  tid = 'acme',
  ttlSeconds = 3600,
): Promise<string> {
  return jwt.sign({ sub, tid, role }, ttlSeconds);
}

export class GatewayProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly logs: LogLine[] = [];
  readonly exited: Promise<ExitInfo>;
  port = 0;
  /** The `listening` log line (port, engine, transport, …). */
  listening: LogLine = {};
  #stderr = '';
  #exitInfo: ExitInfo | undefined;
  #stopped = false;
  #waiters: Array<() => void> = [];

  private constructor(name: string, child: ChildProcess) {
    this.name = name;
    this.child = child;
    this.pid = child.pid!;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.#exitInfo = { code, signal };
        live.delete(this);
        resolve(this.#exitInfo);
        this.#wake();
      });
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let entry: LogLine;
      try {
        entry = JSON.parse(line) as LogLine;
      } catch {
        return;
      }
      this.logs.push(entry);
      this.#wake();
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      this.#stderr = (this.#stderr + chunk.toString()).slice(-8000);
    });
  }

  /**
   * Spawns the entry point with `env` on top of test defaults (HOST 127.0.0.1, PORT 0,
   * the test secret, LOG_LEVEL info) and resolves once it logged `"msg":"listening"`.
   */
  static async start(
    env: Record<string, string> = {},
    options: {
      name?: string;
      startTimeoutMs?: number;
      build?: 'source' | 'dist';
      /** A built entry to run with plain node instead (a bundle made elsewhere); wins over `build`. */
      entry?: string;
      /** Node flags before the entry (`--expose-gc`, `--import <preload>`), for the benchmarks. */
      nodeArgs?: string[];
    } = {},
  ): Promise<GatewayProcess> {
    installExitHook();
    const name = options.name ?? env['NODE_ID'] ?? 'gateway';
    // 'dist': the build (`npm run build`), which starts in a fraction of the time.
    const args = [
      ...(options.nodeArgs ?? []),
      ...(options.entry
        ? [options.entry]
        : options.build === 'dist'
          ? [DIST_MAIN]
          : ['--import', 'tsx', MAIN]),
    ];
    const child = spawn(process.execPath, args, {
      cwd: ROOT,
      env: {
        PATH: process.env['PATH'],
        HOME: process.env['HOME'],
        HOST: '127.0.0.1',
        PORT: '0',
        AUTH_JWT_SECRET: GATEWAY_PROCESS_SECRET,
        LOG_LEVEL: 'info',
        // one process, no primary/worker split: the pid here is the gateway's
        WORKERS: '1',
        NODE_ID: name,
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const gw = new GatewayProcess(name, child);
    live.add(gw);
    try {
      gw.listening = await gw.waitForLog((l) => l.msg === 'listening', options.startTimeoutMs ?? 20_000);
      gw.port = Number(gw.listening['port']);
      if (!(gw.port > 0)) throw new Error(`${name}: "listening" line without a port`);
      return gw;
    } catch (err) {
      gw.kill('SIGKILL');
      await gw.exited;
      throw new Error(`${name} did not start: ${(err as Error).message}\nstderr:\n${gw.stderr}`, {
        cause: err,
      });
    }
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}/v1/realtime`;
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** The warn, error and fatal log lines so far. */
  get problems(): LogLine[] {
    return this.logs.filter((l) => l.level === 'warn' || l.level === 'error' || l.level === 'fatal');
  }

  get running(): boolean {
    return this.#exitInfo === undefined;
  }

  get exitInfo(): ExitInfo | undefined {
    return this.#exitInfo;
  }

  /** Sends a signal (SIGKILL, SIGSTOP, SIGCONT, …); a no-op once the process exited. */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (!this.running) return;
    try {
      process.kill(this.pid, signal);
    } catch {
      return; // already gone
    }
    if (signal === 'SIGSTOP') this.#stopped = true;
    if (signal === 'SIGCONT') this.#stopped = false;
  }

  /** SIGSTOP: the process keeps its sockets but runs nothing. */
  pause(): void {
    this.kill('SIGSTOP');
  }

  /** SIGCONT. */
  resume(): void {
    this.kill('SIGCONT');
  }

  /** kill -9, resolving once the process is gone. */
  async crash(): Promise<ExitInfo> {
    this.kill('SIGKILL');
    return this.exited;
  }

  /**
   * SIGTERM (a stopped process is continued so it can act on it), then SIGKILL if it has
   * not exited within `timeoutMs`. Resolves with how it exited; safe to call repeatedly.
   */
  async stop(timeoutMs = 10_000): Promise<ExitInfo> {
    if (!this.running) return this.#exitInfo!;
    this.kill('SIGTERM');
    if (this.#stopped) this.kill('SIGCONT');
    const timer = setTimeout(() => this.kill('SIGKILL'), timeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Resolves with the first log line (from the start of the process's output, or from
   * index `from`) matching `pred`; rejects after `timeoutMs` or if the process exits.
   */
  async waitForLog(pred: (line: LogLine) => boolean, timeoutMs = 5000, from = 0): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    let checked = from;
    for (;;) {
      for (; checked < this.logs.length; checked++) {
        const line = this.logs[checked]!;
        if (pred(line)) return line;
      }
      if (!this.running) {
        throw new Error(
          `${this.name} exited (${JSON.stringify(this.#exitInfo)}) while waiting for a log line`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        const tail = this.logs
          .slice(-5)
          .map((l) => JSON.stringify(l))
          .join('\n');
        throw new Error(`${this.name}: timed out waiting for a log line; last lines:\n${tail}`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Resident set size in bytes, from /proc/<pid>/status (Linux). */
  rssBytes(): number {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    if (!match) throw new Error(`no VmRSS for pid ${this.pid}`);
    return Number(match[1]) * 1024;
  }

  /**
   * One HTTP request on a fresh connection (no keep-alive), answered or failed within
   * `timeoutMs`: a stopped or dead gateway makes it reject, never hang.
   */
  async http(
    method: string,
    path: string,
    options: { token?: string; body?: unknown; timeoutMs?: number; headers?: Record<string, string> } = {},
  ): Promise<HttpResult> {
    return httpJson(this.url, method, path, options);
  }

  /** POST /v1/call/sessions and return the new session id. */
  async createSession(token: string): Promise<string> {
    const res = await this.http('POST', '/v1/call/sessions', { token });
    if (res.status !== 201) throw new Error(`create session: ${res.status} ${JSON.stringify(res.body)}`);
    return (res.body as { id: string }).id;
  }

  /** Polls GET /readyz until it answers `status`, or throws after `timeoutMs`. */
  async waitForReady(status = 200, timeoutMs = 10_000, intervalMs = 50): Promise<number> {
    const started = Date.now();
    const deadline = started + timeoutMs;
    let last: string;
    for (;;) {
      try {
        const res = await this.http('GET', '/readyz', { timeoutMs: Math.max(100, deadline - Date.now()) });
        if (res.status === status) return Date.now() - started;
        last = `${res.status} ${JSON.stringify(res.body)}`;
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() >= deadline) {
        throw new Error(
          `${this.name}: /readyz did not answer ${status} within ${timeoutMs} ms (last: ${last})`,
        );
      }
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  /** Synchronous last resort for the exit hook. */
  killNow(): void {
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Starts `count` nodes in parallel with the same env; node i is named `${prefix}${i}`. */
export async function startGatewayProcesses(
  count: number,
  env: Record<string, string>,
  prefix = 'node',
): Promise<GatewayProcess[]> {
  const results = await Promise.allSettled(
    Array.from({ length: count }, (_, i) => GatewayProcess.start({ ...env, NODE_ID: `${prefix}${i}` })),
  );
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.allSettled(results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.stop()] : [])));
    throw failed.reason;
  }
  return results.map((r) => (r as PromiseFulfilledResult<GatewayProcess>).value);
}

/** Stops every process started here that is still running (for `after` hooks). */
export async function stopAllGatewayProcesses(): Promise<void> {
  await Promise.allSettled([...live].map((gw) => gw.stop(5000)));
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const killAll = (): void => {
    for (const gw of live) gw.killNow();
  };
  process.once('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      killAll();
      process.kill(process.pid, signal);
    });
  }
}
