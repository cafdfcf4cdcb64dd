import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { get } from 'node:http';
import { createInterface } from 'node:readline';
import { JwtVerifier } from '../../src/auth/jwt.ts';
import { RestartPolicy } from '../../src/supervisor/restart-policy.ts';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { TestClient, subscribe, type Frame } from '../helpers/ws-client.ts';

/**
 * `WORKERS=N`: N gateway processes on one port (SO_REUSEPORT), supervised by a primary.
 * Real processes throughout: `node --import tsx src/main.ts`, a private redis-server.
 */
const SECRET = 'workers-test-secret-workers-test-secret-0123';
const MAIN = new URL('../../src/main.ts', import.meta.url).pathname;
const jwt = new JwtVerifier(SECRET);

type Entry = Record<string, unknown>;

/** A gateway process whose JSON log lines can be awaited. */
class Proc {
  readonly child: ChildProcess;
  readonly lines: Entry[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #waiters: Array<() => void> = [];
  readonly #listeners: Array<(e: Entry) => void> = [];

  constructor(env: Record<string, string>, args: string[] = []) {
    this.child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], {
      env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: '0', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      let entry: Entry;
      try {
        entry = JSON.parse(line) as Entry;
      } catch {
        return;
      }
      this.lines.push(entry);
      for (const listener of this.#listeners) listener(entry);
      this.#wake();
    });
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code, signal) => {
        resolve({ code, signal });
        this.#wake();
      }),
    );
  }

  /** The first log line from index `from` on matching `pred`, now or when it comes. */
  async line(pred: (e: Entry) => boolean, from = 0, timeoutMs = 15_000): Promise<Entry> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.slice(from).find(pred);
      if (found) return found;
      if (this.child.exitCode !== null || this.child.signalCode !== null)
        throw new Error(`exited while waiting for a log line; stderr: ${this.stderr}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no such log line; have ${JSON.stringify(this.lines).slice(-1500)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** The primary's (or a single gateway's) own `listening` line, not a worker's. */
  listening(): Promise<Entry> {
    return this.line((e) => e.msg === 'listening' && e.worker === undefined);
  }

  /** Calls `listener` with every log line from now on. */
  onLine(listener: (e: Entry) => void): void {
    this.#listeners.push(listener);
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}

const live: Proc[] = [];
function start(env: Record<string, string>, args: string[] = []): Proc {
  const p = new Proc(env, args);
  live.push(p);
  return p;
}
after(() => {
  for (const p of live) p.kill();
});

/** GET /healthz on a fresh TCP connection (no keep-alive), so the kernel picks a worker each time. */
function healthNode(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = get(
      { host: '127.0.0.1', port, path: '/healthz', agent: false, headers: { connection: 'close' } },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve((JSON.parse(body) as { node: string }).node));
      },
    );
    req.on('error', reject);
  });
}

/** Asks /healthz on fresh connections until every node in `nodes` answered (at most `tries`). */
async function nodesAnswering(port: number, nodes: string[], tries = 60): Promise<string[]> {
  const seen = new Set<string>();
  for (let i = 0; i < tries && !nodes.every((n) => seen.has(n)); i++) seen.add(await healthNode(port));
  return [...seen].sort();
}

async function createSession(port: number, token: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/v1/call/sessions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(res.status, 201);
  return ((await res.json()) as { id: string }).id;
}

function transcript(i: number): Frame {
  return {
    op: 'pub',
    id: `w${i}`,
    type: 'transcript.partial',
    payload: { segmentId: 's', revision: i, text: `t${i}` },
  };
}

describe('the restart policy', () => {
  it('backs off per worker, doubling up to a cap, and gives up after 5 restarts in 30 s', () => {
    let now = 0;
    const policy = new RestartPolicy(
      { maxRestarts: 5, windowMs: 30_000, baseDelayMs: 100, maxDelayMs: 300 },
      () => now,
    );
    assert.deepEqual(
      [policy.next(0), policy.next(0), policy.next(1), policy.next(0), policy.next(0)],
      [100, 200, 100, 300, 300],
    );
    assert.equal(policy.next(1), undefined, 'a 6th restart within the window');
    now = 30_000;
    assert.equal(policy.next(0), 100, 'the window has passed: a fresh start');
  });
});

describe('WORKERS', () => {
  it('WORKERS=1 without REDIS_URL: the gateway runs in this process, as before', async () => {
    const p = start({ WORKERS: '1', AUTH_JWT_SECRET: SECRET });
    const listening = await p.listening();
    assert.equal(listening.engine, 'memory');
    assert.equal(listening.workers, undefined);
    assert.equal(await healthNode(listening.port as number), listening.node);
    assert.match(String(listening.node), new RegExp(`-${String(p.child.pid)}$`), 'no primary in between');
    p.child.kill('SIGTERM');
    assert.deepEqual(await p.exited, { code: 0, signal: null });
  });

  it('refuses more than one worker on the memory engine, and a bad --workers, with exit 1', async () => {
    const env = { AUTH_JWT_SECRET: SECRET };
    const byEnv = start({ ...env, WORKERS: '2' });
    const byFlag = start(env, ['--workers', '2']);
    const bad = start(env, ['--workers', 'two']);
    for (const p of [byEnv, byFlag]) {
      assert.equal((await p.exited).code, 1);
      assert.match(p.stderr, /WORKERS > 1 needs the redis engine: the memory engine lives in one process/);
      assert.equal(p.lines.length, 0, 'nothing started');
    }
    assert.equal((await bad.exited).code, 1);
    assert.match(bad.stderr, /WORKERS: expected an integer/);
  });
});

describe('two workers on one port, on redis', () => {
  let redis: RedisServer;
  let primary: Proc | undefined;
  let port: number;
  let sessionId: string;
  /** Every client, with the highest seq it received and its welcome. */
  let clients: { client: TestClient; welcome: Frame; lastSeq: number }[] = [];

  before(async () => {
    redis = await RedisServer.start({ aof: true, appendfsync: 'everysec' });
  });
  after(async () => {
    for (const { client } of clients) client.close();
    primary?.kill();
    await redis.stop();
  });

  /** Reads the ev frames up to `seq`, checking they come one by one, and acks them. */
  async function readTo(c: (typeof clients)[number], seq: number): Promise<void> {
    while (c.lastSeq < seq) {
      const ev = await c.client.op('ev');
      assert.equal(ev.seq, c.lastSeq + 1, 'seqs go up by exactly one');
      c.lastSeq = ev.seq;
    }
    c.client.send({ op: 'ack', seq: c.lastSeq });
  }

  /** Waits for the publisher's next puback, reading (not skipping) the ev frames before it. */
  async function puback(c: (typeof clients)[number]): Promise<Frame> {
    for (;;) {
      const f = await c.client.next((x) => x.op === 'ev' || x.op === 'puback');
      if (f.op === 'puback') return f;
      assert.equal(f.seq, c.lastSeq + 1, 'seqs go up by exactly one');
      c.lastSeq = f.seq;
    }
  }

  it('starts two workers on one port, logs one primary listening line, and balances connections over both', async () => {
    primary = start({
      WORKERS: '2',
      REDIS_URL: redis.url,
      REDIS_KEY_PREFIX: 'wk:',
      AUTH_JWT_SECRET: SECRET,
      NODE_ID: 'wt',
      SHUTDOWN_TIMEOUT_MS: '8000',
    });
    const listening = await primary.listening();
    port = listening.port as number;
    assert.ok(port > 0);
    assert.equal(listening.workers, 2);
    assert.equal(listening.engine, 'redis');
    assert.equal(listening.transport, 'native');
    const workerLines = primary.lines.filter((e) => e.msg === 'listening' && e.worker !== undefined);
    assert.deepEqual(workerLines.map((e) => e.node).sort(), ['wt-w0', 'wt-w1']);
    for (const w of workerLines) assert.equal(w.port, port, 'every worker on the primary’s port');
    assert.equal(primary.lines.filter((e) => e.msg === 'listening' && e.worker === undefined).length, 1);

    // Fresh TCP connections land on both workers: SO_REUSEPORT balancing.
    assert.deepEqual(await nodesAnswering(port, ['wt-w0', 'wt-w1']), ['wt-w0', 'wt-w1']);

    const agent = await jwt.sign({ sub: 'bot', tid: 'acme', role: 'agent' });
    const owner = await jwt.sign({ sub: 'alice', tid: 'acme', role: 'user' });
    sessionId = await createSession(port, owner);
    const url = `ws://127.0.0.1:${port}/v1/realtime`;
    clients = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const { client, welcome } = await subscribe(url, { sessionId, token: agent, after: 0 });
        return { client, welcome, lastSeq: 0 };
      }),
    );
    const head = clients[0]!.welcome.headSeq as number;
    await Promise.all(clients.map((c) => readTo(c, head)));

    // One client publishes; every client, on either worker, receives it.
    clients[0]!.client.send(transcript(0));
    const { seq } = await puback(clients[0]!);
    await Promise.all(clients.map((c) => readTo(c, seq as number)));
  });

  it('restarts a worker killed with -9; its clients resume on the port with nothing lost', async () => {
    const p = primary!;
    const started = p.lines.filter((e) => e.msg === 'worker started' && e.worker === 0).at(-1)!;
    const from = p.lines.length;
    process.kill(started.pid as number, 'SIGKILL');
    const exited = await p.line((e) => e.msg === 'worker exited unexpectedly', from);
    assert.equal(exited.signal, 'SIGKILL');

    // Which clients were on the dead worker: a ping is answered on the live one only.
    const alive = await Promise.all(
      clients.map(async ({ client }) => {
        client.send({ op: 'ping' });
        try {
          await client.op('pong');
          return true;
        } catch {
          return false;
        }
      }),
    );
    const dead = clients.filter((_, i) => !alive[i]);
    const survivors = clients.filter((_, i) => alive[i]);
    assert.ok(
      dead.length > 0 && survivors.length > 0,
      `both workers had sockets (${dead.length} of 20 died)`,
    );
    // Every client received client 0's publish in the previous test, and they sat on two
    // workers: that fan-out crossed processes (over Redis).
    for (const { client } of dead) assert.equal((await client.closed).code, 1006);

    // Publishing goes on while they are away.
    const pub = survivors[0]!;
    let head = 0;
    for (let i = 1; i <= 3; i++) {
      pub.client.send(transcript(i));
      head = (await puback(pub)).seq as number;
    }

    // The primary brings worker 0 back, on the same port.
    await p.line((e) => e.msg === 'listening' && e.node === 'wt-w0', from);
    await p.line((e) => e.msg === 'worker restarted' && e.worker === 0, from);
    assert.deepEqual(await nodesAnswering(port, ['wt-w0', 'wt-w1']), ['wt-w0', 'wt-w1']);

    const url = `ws://127.0.0.1:${port}/v1/realtime`;
    await Promise.all(
      dead.map(async (c) => {
        const client = await TestClient.connect(url);
        client.send({
          op: 'hello',
          sessionId,
          resume: { token: c.welcome.resumeToken, lastSeq: c.lastSeq, epoch: c.welcome.epoch },
        });
        const welcome = await client.op('welcome');
        assert.equal(welcome.resumed, true);
        assert.equal(welcome.after, c.lastSeq);
        c.client = client;
        c.welcome = welcome;
      }),
    );
    for (const c of dead) {
      await readTo(c, head);
      assert.equal((await c.client.next()).op, 'replayed', 'nothing repeated, nothing after the head');
    }
    await Promise.all(survivors.map((c) => readTo(c, head)));
  });

  it('drains every worker on SIGTERM: clients get 1001, the primary exits 0', async () => {
    const p = primary!;
    const t0 = Date.now();
    p.child.kill('SIGTERM');
    const codes = await Promise.all(clients.map(({ client }) => client.closeCode(8000)));
    assert.deepEqual([...new Set(codes)], [1001]);
    assert.deepEqual(await p.exited, { code: 0, signal: null });
    assert.ok(Date.now() - t0 < 8000, 'within SHUTDOWN_TIMEOUT_MS');
    const stopped = p.lines.filter((e) => e.msg === 'worker stopped');
    assert.deepEqual(
      stopped.map((e) => e.code),
      [0, 0],
    );
  });

  it('gives up with exit 1 when workers keep crashing', async () => {
    const p = start({
      WORKERS: '2',
      REDIS_URL: redis.url,
      REDIS_KEY_PREFIX: 'wk2:',
      AUTH_JWT_SECRET: SECRET,
      SHUTDOWN_TIMEOUT_MS: '8000',
    });
    await p.listening();
    // Kill every worker now, and each one as soon as it is restarted.
    const kill = (e: Entry): void => {
      if (e.msg !== 'worker started') return;
      try {
        process.kill(e.pid as number, 'SIGKILL');
      } catch {
        /* gone already */
      }
    };
    p.onLine(kill);
    for (const e of p.lines) kill(e);
    const gaveUp = await p.line((e) => e.msg === 'workers keep crashing: giving up');
    assert.equal(gaveUp.level, 'error');
    assert.equal((await p.exited).code, 1);
    assert.equal(p.lines.filter((e) => e.msg === 'worker exited unexpectedly').length, 5, '5 restarts');
  });
});
