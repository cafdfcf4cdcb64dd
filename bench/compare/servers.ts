/**
 * Starting and stopping the arms' server processes for bench:compare. Every server runs
 * from the build of its sources (build.ts: the gateway's bundle, the other arms' scripts
 * compiled) with the same Node flags (`--expose-gc`, the gc hook), pinned to the server
 * core with taskset, on a fixed port so a restarted server (M5) comes back where its
 * clients reconnect. Redis (for G and S) runs on the load-generator core.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { freePort } from '../../chaos/toolkit/ports.ts';
import { repoRoot } from '../lib/repo-root.ts';
import { armsBuild } from './build.ts';
import type { ArmKind } from './types.ts';
import { pin, rssAnonBytes, rssBytes } from './proc.ts';

export const SERVER_CORE = '0';
export const CLIENT_CORE = '1';

/** One arm as the report names it: G (redis, everysec), G′ (a second copy), Ga (appendfsync always), Gm (memory engine), U, S, W. */
export interface ArmSpec {
  name: string;
  kind: ArmKind;
  /** G: engine and fsync policy; S: Redis too. */
  redis?: 'everysec' | 'always';
  /** G: WORKERS (cluster mode, one port). */
  workers?: number;
  describe: string;
}

export const ARMS: Record<string, ArmSpec> = {
  G: {
    name: 'G',
    kind: 'gateway',
    redis: 'everysec',
    describe: 'gateway, redis engine (appendonly yes, appendfsync everysec)',
  },
  "G'": {
    name: "G'",
    kind: 'gateway',
    redis: 'everysec',
    describe: 'a second copy of G, for the noise band',
  },
  Ga: { name: 'Ga', kind: 'gateway', redis: 'always', describe: 'gateway, redis engine, appendfsync always' },
  Gm: { name: 'Gm', kind: 'gateway', describe: 'gateway, embedded memory engine' },
  G2: {
    name: 'G2',
    kind: 'gateway',
    redis: 'everysec',
    workers: 2,
    describe: 'gateway, redis engine, WORKERS=2 (two processes, one port)',
  },
  U: {
    name: 'U',
    kind: 'uws',
    describe: 'raw uWebSockets.js pub/sub (ws.subscribe / app.publish), same uWS build',
  },
  S: {
    name: 'S',
    kind: 'socketio',
    redis: 'everysec',
    describe:
      'Socket.IO 4.8, connection state recovery (120 s) on @socket.io/redis-streams-adapter, websocket only',
  },
  W: { name: 'W', kind: 'ws', describe: 'plain ws server, one prebuilt frame per topic' },
};

const SCRIPTS: Record<Exclude<ArmKind, 'gateway'>, string> = {
  uws: 'bench/compare/arms/uws.ts',
  socketio: 'bench/compare/arms/socketio.ts',
  ws: 'bench/compare/arms/ws.ts',
};

/**
 * BENCH_NODE_FLAGS="--flag …": extra Node flags for every arm server alike (G, U, S and W,
 * each worker of G2 too), to compare runtime tunings under the rule that every arm
 * runs with the same flags. The run prints them and records them in its JSON (`nodeFlags`).
 * V8 flags go here, not in NODE_OPTIONS, which refuses most of them.
 */
export const ARM_EXTRA_FLAGS = splitFlags(process.env['BENCH_NODE_FLAGS']);

/**
 * Every arm server's Node flags before its script: BENCH_NODE_FLAGS, `--expose-gc`, and
 * the gc hook preloaded from the same build as the arms (`js` maps a source to its
 * compiled path).
 */
export const armNodeFlags = (js: (source: string) => string): string[] => [
  ...ARM_EXTRA_FLAGS,
  '--expose-gc',
  '--import',
  js('bench/compare/arms/gc-hook.ts'),
];

/**
 * How the other benchmarks (bench:smoke, bench:selfcheck) run the gateway: the bundle and
 * the flags of the G arms, the gc hook's orphan watch included, as options for the chaos
 * toolkit's `GatewayProcess.start`.
 */
export async function benchGateway(): Promise<{ entry: string; nodeArgs: string[] }> {
  const build = await armsBuild();
  return { entry: build.gateway, nodeArgs: armNodeFlags(build.js) };
}

/**
 * BENCH_G_FLAGS="--flag …": extra Node flags for the gateway arms only, for tuning
 * experiments (docs/operations.md). A run with them is not a comparison, so the run
 * prints them and records them in its JSON (`gatewayFlags`).
 */
export const GATEWAY_EXTRA_FLAGS = splitFlags(process.env['BENCH_G_FLAGS']);

function splitFlags(value: string | undefined): string[] {
  return (value ?? '').split(' ').filter(Boolean);
}

export const JWT_SECRET = randomBytes(32).toString('hex');

/** A running server process of an arm (restartable on the same port). */
export class ArmServer {
  readonly spec: ArmSpec;
  readonly port: number;
  readonly redis: RedisServer | undefined;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  readonly extraEnv: Record<string, string>;

  private constructor(
    spec: ArmSpec,
    port: number,
    redis: RedisServer | undefined,
    extraEnv: Record<string, string>,
  ) {
    this.spec = spec;
    this.port = port;
    this.redis = redis;
    this.extraEnv = extraEnv;
  }

  static async start(
    spec: ArmSpec,
    options: { redis?: RedisServer; port?: number; env?: Record<string, string> } = {},
  ): Promise<ArmServer> {
    let redis = options.redis;
    if (!redis && spec.redis) {
      redis = await RedisServer.start({ aof: true, appendfsync: spec.redis });
      if (redis.pid !== undefined) pin(redis.pid, CLIENT_CORE);
      // Redis's latency monitor records its own stalls (fork, AOF write and fsync, slow
      // commands) of 10 ms or more; each rate point reads what its window collected
      await redis.command('CONFIG', 'SET', 'latency-monitor-threshold', 10);
    }
    const server = new ArmServer(spec, options.port ?? (await freePort()), redis, options.env ?? {});
    await server.launch();
    return server;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  get httpUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The pids whose CPU counts as the server's (the primary and its workers under WORKERS). */
  get pids(): number[] {
    const pid = this.#child?.pid;
    if (pid === undefined) return [];
    return [pid, ...childPids(pid)];
  }

  get rss(): number {
    return this.pids.map(rssBytes).reduce((a, b) => a + (Number.isNaN(b) ? 0 : b), 0);
  }

  /** Private (anonymous) resident memory of the server's processes; see `rssAnonBytes`. */
  get rssAnon(): number {
    return this.pids.map(rssAnonBytes).reduce((a, b) => a + (Number.isNaN(b) ? 0 : b), 0);
  }

  async launch(): Promise<void> {
    const env: Record<string, string> = {
      ...(process.env as Record<string, string>),
      HOST: '127.0.0.1',
      PORT: String(this.port),
      ...(this.redis ? { REDIS_URL: this.redis.url } : {}),
      ...this.extraEnv,
    };
    delete env['NODE_OPTIONS'];
    const build = await armsBuild();
    let entry: string;
    if (this.spec.kind === 'gateway') {
      entry = build.gateway;
      Object.assign(env, {
        AUTH_JWT_SECRET: JWT_SECRET,
        LOG_LEVEL: 'info',
        NODE_ID: `bench-${this.spec.name}`,
        ...(this.spec.workers ? { WORKERS: String(this.spec.workers) } : {}),
      });
      if (!this.spec.redis) delete env['REDIS_URL'];
    } else {
      entry = build.js(SCRIPTS[this.spec.kind]);
    }
    // BENCH_CPU_PROF=DIR: write a V8 CPU profile of every server process into DIR (on exit)
    const profile = process.env['BENCH_CPU_PROF'];
    const extra = this.spec.kind === 'gateway' ? GATEWAY_EXTRA_FLAGS : [];
    const flags = [
      ...(profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : []),
      ...extra,
      ...armNodeFlags(build.js),
    ];
    const child = spawn('taskset', ['-c', SERVER_CORE, process.execPath, ...flags, entry], {
      cwd: repoRoot,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.#child = child;
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
    const stderr: string[] = [];
    child.stderr.on('data', (chunk: Buffer) => {
      stderr.push(chunk.toString());
      if (stderr.length > 50) stderr.shift();
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${this.spec.name} did not start in 30 s: ${stderr.join('')}`)),
        30_000,
      );
      const lines = createInterface({ input: child.stdout });
      lines.on('line', (line) => {
        // BENCH_GC_LOG=1: echo the arm's after-GC memory lines (gc-hook.ts) for diagnosis
        if (process.env['BENCH_GC_LOG'] && line.startsWith('{"msg":"gc"')) {
          process.stderr.write(`${this.spec.name} ${line}\n`);
        }
        if (line.startsWith('{"msg":"pause"')) this.#notePause(line);
        if (line.includes('"msg":"listening"')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(
          new Error(
            `${this.spec.name} exited (${String(code)}) before listening: ${stderr.join('').slice(-2000)}`,
          ),
        );
      });
    });
    // Under WORKERS the primary logs "listening" only after its workers do.
  }

  /** GC pauses and event-loop stalls the server reported (BENCH_PAUSES, see gc-hook.ts). */
  readonly pauses: ServerPause[] = [];

  #notePause(line: string): void {
    try {
      const { what, ms, atUs } = JSON.parse(line) as ServerPause;
      if (this.pauses.length >= 100_000) this.pauses.shift();
      this.pauses.push({ what, ms, atUs });
    } catch {
      /* a torn line: not worth more */
    }
  }

  /** Asks the server (and its workers) to collect garbage twice, then waits a little. */
  async gc(): Promise<void> {
    for (const pid of this.pids) {
      try {
        process.kill(pid, 'SIGUSR2');
      } catch {
        /* gone */
      }
    }
    await new Promise((r) => setTimeout(r, 1500));
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const pids = this.pids;
    for (const pid of signal === 'SIGKILL' ? pids : [child.pid!]) {
      try {
        process.kill(pid, signal);
      } catch {
        /* gone */
      }
    }
    const timer = setTimeout(() => {
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }, timeoutMs);
    await this.#exited;
    clearTimeout(timer);
  }

  async close(): Promise<void> {
    await this.stop();
    await this.redis?.stop();
  }
}

export interface ServerPause {
  what: 'gc' | 'loop';
  ms: number;
  /** When it began, epoch µs (the bench's clock, lib/wire.ts nowMicros). */
  atUs: number;
}

/** Child processes of `pid` (cluster workers under WORKERS; taskset execs node in place). */
function childPids(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const task of tasks) {
    try {
      const kids = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      if (kids) out.push(...kids.split(/\s+/).map(Number));
    } catch {
      /* gone */
    }
  }
  return out;
}
