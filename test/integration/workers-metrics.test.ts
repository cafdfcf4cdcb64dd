import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { get } from 'node:http';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { Counter, Gauge, Registry } from 'prom-client';
import { JwtVerifier } from '../../src/auth/jwt.ts';
import { ConfigError, loadConfig } from '../../src/config/load.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import {
  mergeMetrics,
  MetricsServer,
  type MetricsSource,
  type WorkerMetrics,
} from '../../src/supervisor/metrics-server.ts';
import { SupervisorMetrics, type WorkerInfo } from '../../src/supervisor/supervisor-metrics.ts';
import { freePort } from '../../chaos/toolkit/ports.ts';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { subscribe } from '../helpers/ws-client.ts';

/**
 * `METRICS_PORT`: one scrape shows every worker of a `WORKERS=N` primary (merged over the
 * fork IPC channel), plus `/workers` and the primary's `/healthz`. Real processes
 * (`node --import tsx src/main.ts`) on a private redis-server, and the merge and the
 * shared collection in-process.
 */
const SECRET = 'workers-metrics-secret-workers-metrics-0123';
const MAIN = new URL('../../src/main.ts', import.meta.url).pathname;
const jwt = new JwtVerifier(SECRET);

type Entry = Record<string, unknown>;

/** A gateway process whose JSON log lines can be awaited. */
class Proc {
  readonly child: ChildProcess;
  readonly lines: Entry[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(env: Record<string, string>) {
    this.child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
      env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: '0', AUTH_JWT_SECRET: SECRET, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      try {
        this.lines.push(JSON.parse(line) as Entry);
      } catch {
        /* not a log line */
      }
    });
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code, signal) => resolve({ code, signal })),
    );
  }

  /** The first log line from index `from` on matching `pred`, now or when it comes. */
  line(pred: (e: Entry) => boolean, from = 0, timeoutMs = 20_000): Promise<Entry> {
    return until(
      () => {
        if (this.child.exitCode !== null || this.child.signalCode !== null)
          throw new Error(`exited while waiting for a log line; stderr: ${this.stderr}`);
        return this.lines.slice(from).find(pred);
      },
      timeoutMs,
      () => `no such log line; have ${JSON.stringify(this.lines).slice(-1500)}`,
    );
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

const live: Proc[] = [];
function start(env: Record<string, string>): Proc {
  const p = new Proc(env);
  live.push(p);
  return p;
}
after(() => {
  for (const p of live) p.kill();
});

/** Polls `probe` (every 50 ms) until it returns something other than undefined; fails after `timeoutMs`. */
async function until<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 20_000,
  what: () => string = () => 'condition not met',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out: ${what()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** GET on a fresh TCP connection (no keep-alive): on the shared port the kernel picks a worker each time. */
function httpGet(port: number, path: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = get(
      { host: '127.0.0.1', port, path, agent: false, headers: { connection: 'close' } },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }),
        );
      },
    );
    req.on('error', reject);
  });
}

async function scrape(port: number): Promise<string> {
  const res = await httpGet(port, '/metrics');
  assert.equal(res.status, 200);
  assert.match(res.type, /^text\/plain/);
  return res.body;
}

async function workersOf(port: number): Promise<WorkerInfo[]> {
  const res = await httpGet(port, '/workers');
  assert.equal(res.status, 200);
  return (JSON.parse(res.body) as { workers: WorkerInfo[] }).workers;
}

interface Sample {
  labels: Record<string, string>;
  value: number;
}

/** Every sample of metric `name` in Prometheus text. */
function samples(text: string, name: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ labels, value: Number(m[3]) });
  }
  return out;
}

/** metric `name` by its `node` label (other labels must not split a node in two). */
function byNode(text: string, name: string): Map<string, number> {
  const map = new Map<string, number>();
  for (const s of samples(text, name)) {
    const node = s.labels['node'];
    assert.ok(node !== undefined, `${name} sample without a node label`);
    map.set(node, (map.get(node) ?? 0) + s.value);
  }
  return map;
}

/** The one sample of `name` with exactly these labels' values, or undefined. */
function value(text: string, name: string, labels: Record<string, string>): number | undefined {
  return samples(text, name).find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

describe('METRICS_PORT config', () => {
  const env = { AUTH_JWT_SECRET: SECRET };

  it('is unset by default, an integer 0–65535 otherwise, and not PORT', () => {
    assert.equal(loadConfig(env).config.METRICS_PORT, '');
    assert.equal(loadConfig({ ...env, METRICS_PORT: '' }).config.METRICS_PORT, '');
    assert.equal(loadConfig({ ...env, METRICS_PORT: '9100' }).config.METRICS_PORT, 9100);
    assert.equal(loadConfig({ ...env, METRICS_PORT: '0', PORT: '0' }).config.METRICS_PORT, 0);
    const problems = (e: Record<string, string>): string[] => {
      try {
        loadConfig({ ...env, ...e });
      } catch (err) {
        assert.ok(err instanceof ConfigError);
        return err.problems;
      }
      return [];
    };
    assert.deepEqual(problems({ METRICS_PORT: '70000' }), [
      'METRICS_PORT: Expected integer to be less or equal to 65535 (got 70000)',
    ]);
    assert.deepEqual(problems({ METRICS_PORT: 'x' }), ['METRICS_PORT: expected an integer, got "x"']);
    assert.deepEqual(problems({ METRICS_PORT: '8080' }), [
      'METRICS_PORT: must differ from PORT (the gateway listens there)',
    ]);
  });
});

describe('the metrics server, in-process', () => {
  /** Two fake workers' registries: the same metrics, each labelled with its node. */
  function workerRegistry(node: string, appended: number): Registry {
    const registry = new Registry();
    registry.setDefaultLabels({ node });
    new Counter({ name: 'lifeos_events_appended_total', help: 'h', registers: [registry] }).inc(appended);
    new Gauge({
      name: 'process_start_time_seconds',
      help: 'h',
      registers: [registry],
      aggregator: 'omit',
    }).set(appended * 1000);
    return registry;
  }

  it('merges per node: nothing is summed over workers, nothing omitted', async () => {
    const merged = await mergeMetrics([
      await workerRegistry('n-w0', 3).getMetricsAsJSON(),
      await workerRegistry('n-w1', 4).getMetricsAsJSON(),
    ]).metrics();
    assert.deepEqual(
      byNode(merged, 'lifeos_events_appended_total'),
      new Map([
        ['n-w0', 3],
        ['n-w1', 4],
      ]),
    );
    assert.deepEqual(
      byNode(merged, 'process_start_time_seconds'),
      new Map([
        ['n-w0', 3000],
        ['n-w1', 4000],
      ]),
    );
  });

  it('shares one collection among concurrent scrapes, and serves /workers, /healthz and 404', async () => {
    let collections = 0;
    let release: () => void = () => {};
    let running = true;
    const workers: WorkerInfo[] = [
      { index: 0, node: 'n-w0', pid: 11, listening: true, restarts: 0 },
      { index: 1, node: 'n-w1', pid: null, listening: false, restarts: 2 },
    ];
    const source: MetricsSource = {
      workers: () => workers,
      collectMetrics: async (): Promise<WorkerMetrics[]> => {
        collections += 1;
        await new Promise<void>((resolve) => (release = resolve));
        return [{ index: 0, node: 'n-w0', metrics: await workerRegistry('n-w0', 1).getMetricsAsJSON() }];
      },
      get running() {
        return running;
      },
    };
    const server = new MetricsServer({
      host: '127.0.0.1',
      port: 0,
      source,
      metrics: new SupervisorMetrics('n', { processMetrics: false }),
      logger: silentLogger(),
      role: 'primary',
      node: 'n',
    });
    const port = await server.listen();
    try {
      const scrapes = [server.scrape(), server.scrape(), server.scrape()];
      await until(() => (collections === 1 ? true : undefined));
      release();
      const texts = await Promise.all(scrapes);
      assert.equal(collections, 1, 'one collection for three concurrent scrapes');
      assert.equal(new Set(texts).size, 1);
      const text = texts[0]!;
      assert.equal(value(text, 'lifeos_supervisor_workers', { node: 'n' }), 2);
      assert.equal(value(text, 'lifeos_supervisor_workers_listening', { node: 'n' }), 1);
      assert.equal(value(text, 'lifeos_supervisor_workers_reporting', { node: 'n' }), 1);
      assert.equal(value(text, 'lifeos_supervisor_worker_restarts_total', { worker: '1' }), 2);
      assert.equal(value(text, 'lifeos_events_appended_total', { node: 'n-w0' }), 1);

      // Over HTTP, the next scrape is a new collection.
      const next = httpGet(port, '/metrics');
      await until(() => (collections === 2 ? true : undefined));
      release();
      assert.equal((await next).status, 200);

      assert.deepEqual(await workersOf(port), workers);
      const health = await httpGet(port, '/healthz');
      assert.equal(health.status, 200);
      assert.deepEqual(JSON.parse(health.body), {
        status: 'ok',
        role: 'primary',
        node: 'n',
        workers: 2,
        listening: 1,
      });
      for (const path of ['/', '/metricsx', '/v1/realtime'])
        assert.equal((await httpGet(port, path)).status, 404);
      running = false;
      assert.equal((await httpGet(port, '/healthz')).status, 503);
    } finally {
      await server.close();
    }
  });
});

describe('METRICS_PORT with WORKERS=1: the gateway process serves it itself', () => {
  it('serves /metrics, /workers and /healthz of the one process', async () => {
    const metricsPort = await freePort();
    const p = start({ WORKERS: '1', NODE_ID: 'solo', METRICS_PORT: String(metricsPort) });
    await p.line((e) => e.msg === 'listening');
    assert.ok(p.lines.some((e) => e.msg === 'metrics listening' && e.metricsPort === metricsPort));
    const text = await scrape(metricsPort);
    assert.deepEqual([...byNode(text, 'process_resident_memory_bytes').keys()], ['solo'], 'counted once');
    assert.equal(value(text, 'lifeos_supervisor_workers', { node: 'solo' }), 1);
    assert.equal(value(text, 'lifeos_supervisor_workers_reporting', { node: 'solo' }), 1);
    assert.deepEqual(await workersOf(metricsPort), [
      { index: 0, node: 'solo', pid: p.child.pid, listening: true, restarts: 0 },
    ]);
    const health = await httpGet(metricsPort, '/healthz');
    assert.equal(health.status, 200);
    assert.equal((JSON.parse(health.body) as Entry).role, 'single');
    p.child.kill('SIGTERM');
    assert.deepEqual(await p.exited, { code: 0, signal: null });
  });

  it('refuses to start when METRICS_PORT is taken, before anything listens (exit 1)', async () => {
    const blocker = createServer();
    const taken = await new Promise<number>((resolve) =>
      blocker.listen(0, '127.0.0.1', () => resolve((blocker.address() as { port: number }).port)),
    );
    try {
      const single = start({ WORKERS: '1', METRICS_PORT: String(taken) });
      // The primary checks the port before it forks: Redis is never reached.
      const primary = start({ WORKERS: '2', REDIS_URL: 'redis://127.0.0.1:1', METRICS_PORT: String(taken) });
      for (const p of [single, primary]) {
        assert.equal((await p.exited).code, 1);
        assert.match(p.stderr, new RegExp(`METRICS_PORT: cannot listen on 127\\.0\\.0\\.1:${taken}`));
        assert.ok(
          !p.lines.some((e) => e.msg === 'listening' || e.msg === 'worker started'),
          'nothing started',
        );
      }
    } finally {
      blocker.close();
    }
  });
});

describe('METRICS_PORT with two workers, on redis', () => {
  let redis: RedisServer;
  let primary: Proc;
  let port: number;
  let metricsPort: number;

  before(async () => {
    redis = await RedisServer.start({ aof: false });
    metricsPort = await freePort();
    primary = start({
      WORKERS: '2',
      REDIS_URL: redis.url,
      REDIS_KEY_PREFIX: 'wm:',
      NODE_ID: 'mt',
      METRICS_PORT: String(metricsPort),
      SHUTDOWN_TIMEOUT_MS: '8000',
    });
    port = (await primary.line((e) => e.msg === 'listening' && e.worker === undefined)).port as number;
  });
  after(async () => {
    primary.kill();
    await redis.stop();
  });

  /**
   * A scrape in which both workers answered. A worker has 1 s to answer, which a loaded
   * test machine may miss now and then: that is the "left out" case, tested on its own.
   */
  function fullScrape(): Promise<string> {
    return until(async () => {
      const text = await scrape(metricsPort);
      return value(text, 'lifeos_supervisor_workers_reporting', { node: 'mt' }) === 2 ? text : undefined;
    });
  }

  it('lists both workers with their pids, and answers /healthz as the primary', async () => {
    const workers = await workersOf(metricsPort);
    const started = (i: number) =>
      primary.lines.filter((e) => e.msg === 'worker started' && e.worker === i).at(-1)!.pid;
    assert.deepEqual(workers, [
      { index: 0, node: 'mt-w0', pid: started(0), listening: true, restarts: 0 },
      { index: 1, node: 'mt-w1', pid: started(1), listening: true, restarts: 0 },
    ]);
    assert.notEqual(workers[0]!.pid, primary.child.pid);
    const health = await httpGet(metricsPort, '/healthz');
    assert.equal(health.status, 200);
    assert.deepEqual(JSON.parse(health.body), {
      status: 'ok',
      role: 'primary',
      node: 'mt',
      workers: 2,
      listening: 2,
    });
    assert.equal((await httpGet(metricsPort, '/nope')).status, 404);
  });

  it('one scrape shows every worker, each under its own node label, values as the worker has them', async () => {
    const text = await fullScrape();
    for (const name of [
      'process_resident_memory_bytes',
      'process_start_time_seconds',
      'nodejs_heap_size_used_bytes',
    ])
      assert.deepEqual([...byNode(text, name).keys()].sort(), ['mt', 'mt-w0', 'mt-w1'], name);
    assert.deepEqual(
      byNode(text, 'lifeos_transport_info'),
      new Map([
        ['mt-w0', 1],
        ['mt-w1', 1],
      ]),
      'one per worker, not summed',
    );
    assert.equal(value(text, 'lifeos_supervisor_workers', { node: 'mt' }), 2);
    assert.equal(value(text, 'lifeos_supervisor_workers_reporting', { node: 'mt' }), 2);
    assert.equal(value(text, 'lifeos_supervisor_worker_restarts_total', { worker: '0' }), 0);
    assert.equal(value(text, 'lifeos_supervisor_worker_restarts_total', { worker: '1' }), 0);

    // Sessions created over the shared port: each append counted by the worker that took
    // it. The merged view equals each worker's own /metrics, node by node.
    const owner = await jwt.sign({ sub: 'alice', tid: 'acme', role: 'user' });
    for (let i = 0; i < 6; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/v1/call/sessions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${owner}`, connection: 'close' },
      });
      assert.equal(res.status, 201);
    }
    const merged = byNode(await fullScrape(), 'lifeos_events_appended_total');
    assert.equal(
      [...merged.values()].reduce((a, b) => a + b, 0),
      6,
      'all six appends, once each',
    );
    const own = new Map<string, number>();
    await until(async () => {
      const mine = byNode(await scrape(port), 'lifeos_events_appended_total');
      assert.equal(mine.size, 1, 'a worker’s own /metrics shows itself only');
      const [node, n] = [...mine][0]!;
      own.set(node, n);
      return own.size === 2 ? true : undefined;
    });
    for (const node of ['mt-w0', 'mt-w1']) assert.equal(merged.get(node) ?? 0, own.get(node) ?? 0, node);
  });

  it('a WebSocket on one worker is a connection on exactly one node', async () => {
    const owner = await jwt.sign({ sub: 'alice', tid: 'acme', role: 'user' });
    const res = await fetch(`http://127.0.0.1:${port}/v1/call/sessions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${owner}` },
    });
    const sessionId = ((await res.json()) as { id: string }).id;
    const connections = async (): Promise<Map<string, number>> =>
      byNode(await fullScrape(), 'lifeos_ws_connections');
    const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
    const before = await connections();
    assert.equal(total(before), 0);

    const { client } = await subscribe(`ws://127.0.0.1:${port}/v1/realtime`, {
      sessionId,
      token: owner,
      after: 0,
    });
    const withOne = await until(async () => {
      const m = await connections();
      return total(m) === 1 ? m : undefined;
    });
    const on = [...withOne].filter(([, n]) => n > 0);
    assert.equal(on.length, 1, `exactly one node: ${JSON.stringify([...withOne])}`);
    assert.deepEqual(on[0]![1], 1);
    assert.match(on[0]![0], /^mt-w[01]$/);

    client.close();
    await client.closed;
    await until(async () => (total(await connections()) === 0 ? true : undefined));
  });

  it('leaves out a worker that does not answer in time, and says so', async () => {
    const [w0] = await workersOf(metricsPort);
    const from = primary.lines.length;
    process.kill(w0!.pid!, 'SIGSTOP');
    try {
      // Worker 1 answers (it may miss the bound on a loaded machine too: then ask again).
      const text = await until(async () => {
        const t = await scrape(metricsPort);
        assert.ok(!byNode(t, 'process_resident_memory_bytes').has('mt-w0'), 'the stopped worker is left out');
        return value(t, 'lifeos_supervisor_workers_reporting', { node: 'mt' }) === 1 ? t : undefined;
      });
      assert.equal(value(text, 'lifeos_supervisor_workers_listening', { node: 'mt' }), 2);
      assert.deepEqual([...byNode(text, 'process_resident_memory_bytes').keys()].sort(), ['mt', 'mt-w1']);
      await primary.line((e) => e.msg === 'worker did not answer in time' && e.worker === 0, from);
    } finally {
      process.kill(w0!.pid!, 'SIGCONT');
    }
    await fullScrape();
  });

  it('counts a worker killed with -9 as a restart, and shows the restarted worker again', async () => {
    const [, w1] = await workersOf(metricsPort);
    const oldStart = value(await fullScrape(), 'process_start_time_seconds', { node: 'mt-w1' });
    process.kill(w1!.pid!, 'SIGKILL');

    const back = await until(async () => {
      const w = (await workersOf(metricsPort))[1]!;
      return w.listening && w.pid !== w1!.pid ? w : undefined;
    });
    assert.equal(back.node, 'mt-w1');
    assert.equal(back.restarts, 1);
    assert.ok(typeof back.pid === 'number' && back.pid > 0, 'a new process');

    const text = await fullScrape();
    assert.equal(value(text, 'lifeos_supervisor_worker_restarts_total', { worker: '1' }), 1);
    assert.equal(value(text, 'lifeos_supervisor_worker_restarts_total', { worker: '0' }), 0);
    assert.deepEqual([...byNode(text, 'process_resident_memory_bytes').keys()].sort(), [
      'mt',
      'mt-w0',
      'mt-w1',
    ]);
    const newStart = value(text, 'process_start_time_seconds', { node: 'mt-w1' });
    assert.ok(oldStart !== undefined && newStart !== undefined && newStart >= oldStart, 'a later start');
  });

  it('drains on SIGTERM as before: the primary exits 0', async () => {
    primary.child.kill('SIGTERM');
    assert.deepEqual(await primary.exited, { code: 0, signal: null });
  });
});
