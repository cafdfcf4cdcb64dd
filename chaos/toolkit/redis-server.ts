import { forget, killOnExit, unrefChild } from './child-cleanup.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './ports.ts';
import { RespClient } from './resp.ts';

/**
 * A private redis-server for one test file: its own free port and temp dir, no RDB
 * snapshots, AOF on or off. Killed (and its dir removed) when the process exits, even if
 * a test forgot to stop it.
 */
export interface RedisServerOptions {
  /** AOF on (default) or off. */
  aof?: boolean;
  /** Default 'always', so a SIGKILL loses nothing either. */
  appendfsync?: 'always' | 'everysec' | 'no';
  binary?: string;
}

const REDIS_BINARY = process.env['REDIS_SERVER_BIN'] ?? 'redis-server';

export class RedisServer {
  readonly port: number;
  readonly dir: string;
  readonly #options: Required<RedisServerOptions>;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #paused = false;
  #output = '';

  private constructor(port: number, dir: string, options: Required<RedisServerOptions>) {
    this.port = port;
    this.dir = dir;
    this.#options = options;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** The running server's pid (undefined while stopped). */
  get pid(): number | undefined {
    return this.#child?.exitCode === null ? this.#child.pid : undefined;
  }

  /** Starts a server on a free port; retries with another port if that one was taken meanwhile. */
  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    const resolved: Required<RedisServerOptions> = {
      aof: options.aof ?? true,
      appendfsync: options.appendfsync ?? 'always',
      binary: options.binary ?? REDIS_BINARY,
    };
    let lastError: unknown;
    for (let attempt = 0; attempt < 5; attempt++) {
      const dir = mkdtempSync(path.join(tmpdir(), 'lo-redis-'));
      const server = new RedisServer(await freePort(), dir, resolved);
      killOnExit(server);
      try {
        await server.#launch();
        return server;
      } catch (err) {
        lastError = err;
        await server.stop();
      }
    }
    throw new Error(`could not start redis-server: ${String(lastError)}`);
  }

  /** SIGTERM (Redis flushes the AOF on the way out), then waits for the exit; removes the dir. */
  async stop(): Promise<void> {
    await this.#terminate('SIGTERM');
    rmSync(this.dir, { recursive: true, force: true });
    forget(this);
  }

  /**
   * Lets the test process exit while this server still runs (the exit hook then kills
   * it): for a server shared by every test of a file.
   */
  unref(): void {
    if (this.#child) unrefChild(this.#child);
  }

  /** SIGKILL, like a crash. Keeps the dir so restart() can recover from it. */
  async kill(): Promise<void> {
    await this.#terminate('SIGKILL');
  }

  /** SIGSTOP: the server keeps its sockets but answers nothing, like a frozen host. */
  pause(): void {
    if (this.#child && !this.#paused) {
      this.#child.kill('SIGSTOP');
      this.#paused = true;
    }
  }

  resume(): void {
    if (this.#child && this.#paused) {
      this.#child.kill('SIGCONT');
      this.#paused = false;
    }
  }

  /** Stops gracefully (if running) and starts again on the same port and dir. */
  async restart(): Promise<void> {
    await this.#terminate('SIGTERM');
    await this.#launch();
  }

  async flushall(): Promise<void> {
    await this.command('FLUSHALL');
  }

  /** Runs one command on a fresh connection. */
  async command(...args: (string | number)[]): Promise<unknown> {
    const client = await RespClient.open(this.port);
    try {
      return await client.command(...args);
    } finally {
      client.close();
    }
  }

  /** Opens a connection for tests that need several commands or pub/sub. */
  client(): Promise<RespClient> {
    return RespClient.open(this.port);
  }

  /**
   * Makes this server a replica of `master` (reached through `port`: a proxy to it, say),
   * and resolves once `master` has a replica that confirms its writes.
   */
  async follow(master: RedisServer, port = master.port): Promise<void> {
    // Redis delays a diskless full sync by 5 s by default, for more replicas to join it.
    await master.command('CONFIG', 'SET', 'repl-diskless-sync-delay', '0');
    await this.command('REPLICAOF', '127.0.0.1', String(port));
    await master.replicasInSync();
  }

  /** Resolves once `count` replicas confirm a write to this server (see replicasConfirm). */
  replicasInSync(count = 1, timeoutMs = 10_000): Promise<void> {
    return replicasConfirm(this.port, 'lifeos:replica-probe', count, Date.now() + timeoutMs);
  }

  async #launch(): Promise<void> {
    const args = [
      '--port',
      String(this.port),
      '--bind',
      '127.0.0.1',
      '--dir',
      this.dir,
      '--save',
      '',
      '--appendonly',
      this.#options.aof ? 'yes' : 'no',
      '--appendfsync',
      this.#options.appendfsync,
      '--daemonize',
      'no',
      '--protected-mode',
      'no',
      '--logfile',
      '',
    ];
    const child = spawn(this.#options.binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    this.#paused = false;
    this.#output = '';
    const keep = (chunk: Buffer): void => {
      this.#output = (this.#output + chunk.toString()).slice(-4000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
    let exited = false;
    void this.#exited.then(() => (exited = true));
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (exited) throw new Error(`redis-server exited on start:\n${this.#output}`);
      if (await answersPing(this.port)) return;
      await sleep(25);
    }
    throw new Error(`redis-server did not answer PING within 10 s:\n${this.#output}`);
  }

  async #terminate(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    // a stopped process only acts on SIGTERM once it runs again
    if (this.#paused) child.kill('SIGCONT');
    this.#paused = false;
    await this.#exited;
    this.#child = undefined;
  }

  /** Synchronous last resort for the exit hook. */
  killNow(): void {
    try {
      this.#child?.kill('SIGKILL');
    } catch {
      // already gone
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * The Redis a test file should use: `REDIS_URL` when set (no server handle: tests that
 * must stop, pause or flush a server skip), else a private server it must stop.
 */
export async function redisUrlForTests(
  options: RedisServerOptions = {},
): Promise<{ url: string; server?: RedisServer }> {
  const fromEnv = process.env['REDIS_URL'];
  if (fromEnv) return { url: fromEnv };
  const server = await RedisServer.start(options);
  return { url: server.url, server };
}

/** Binds port 0, reads the port the OS picked, and releases it for redis-server. */

async function answersPing(port: number): Promise<boolean> {
  let client: RespClient | undefined;
  try {
    client = await RespClient.open(port, '127.0.0.1', 500);
    const reply = await Promise.race([client.raw('PING'), sleep(500).then(() => 'timeout')]);
    return reply === 'PONG';
  } catch {
    return false;
  } finally {
    client?.close();
  }
}

/**
 * Writes `key` on the master at `port` and WAITs, until `count` replicas confirm the
 * write or `deadline` (epoch ms) passes. A replica shows as online in INFO before its
 * first ACK, and WAIT does not count it until then: this is the state in which a
 * gateway's WAIT can succeed. On a cluster, `key` must hash to a slot of that master.
 */
export async function replicasConfirm(
  port: number,
  key: string,
  count: number,
  deadline: number,
): Promise<void> {
  const client = await RespClient.open(port);
  try {
    for (;;) {
      await client.command('SET', key, String(Date.now()));
      if (Number(await client.command('WAIT', count, 100)) >= count) return;
      if (Date.now() > deadline) throw new Error(`fewer than ${count} replicas of :${port} in sync`);
    }
  } finally {
    client.close();
  }
}
