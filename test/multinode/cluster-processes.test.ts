import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import {
  GatewayProcess,
  processToken,
  startGatewayProcesses,
  stopAllGatewayProcesses,
} from '../../chaos/toolkit/gateway-process.ts';
import { sessionKeys } from '../../src/engine/redis/keys.ts';
import { RedisCluster } from '../../chaos/toolkit/redis-cluster.ts';
import { TestClient, subscribe, type Frame } from '../helpers/ws-client.ts';
import { until } from '../helpers/until.ts';

/**
 * Real gateway processes (the entry point, `REDIS_CLUSTER_NODES`) on a private 3-master
 * Redis Cluster:
 *
 * - kill -9 of the node holding subscribers of sessions on every master, while a publisher
 *   on another node keeps publishing: each subscriber resumes on a surviving node with its
 *   resume token and lastSeq, and its own records show every pubacked event exactly once,
 *   in seq order, with no gap.
 * - a duplicate resume race across two nodes ends with one live connection; every other
 *   is closed 4009.
 * - `/readyz` is 503 while any one master is stopped (SIGSTOP), 200 once it answers again.
 *
 * The tests share three processes and run in order: the first kills node 0, the others
 * use whichever nodes still run.
 */

const PREFIX = 'cproc:';
const PROCESS_ENV = { REDIS_COMMAND_TIMEOUT_MS: '1000', RESUME_WINDOW_MS: '10000' };

let cluster: RedisCluster;
let nodes: GatewayProcess[] = [];

before(async () => {
  // A node timeout well above any SIGSTOP here: a stopped master is never marked failed,
  // so the cluster is ok again as soon as it is continued.
  cluster = await RedisCluster.start({ nodeTimeoutMs: 10_000 });
  const env = { REDIS_CLUSTER_NODES: cluster.nodes.join(','), REDIS_KEY_PREFIX: PREFIX, ...PROCESS_ENV };
  // On a loaded machine a process can miss its start-up deadline for the cluster (3 command
  // timeouts) while three of them compile at once; start-up is not what this file tests.
  for (let attempt = 1; ; attempt++) {
    try {
      nodes = await startGatewayProcesses(3, env, `cp${attempt}-`);
      return;
    } catch (err) {
      if (attempt >= 2) throw err;
    }
  }
});
after(async () => {
  await stopAllGatewayProcesses();
  await cluster?.stop();
});

function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
}

function transcript(id: string, i: number): Frame {
  return {
    op: 'pub',
    id,
    type: 'transcript.partial',
    payload: { segmentId: 's', revision: i, text: `t${i}` },
  };
}

/**
 * Creates sessions through `gw` until every master serves `perMaster` of them (by the
 * slot of the session's stream key); returns exactly that many per master.
 */
async function sessionsOnEveryMaster(
  gw: GatewayProcess,
  token: string,
  perMaster: number,
): Promise<{ sessionId: string; master: number }[]> {
  const byMaster = new Map<number, string[]>(cluster.ports.map((p) => [p, []]));
  for (let created = 0; [...byMaster.values()].some((s) => s.length < perMaster); created++) {
    if (created >= 100) throw new Error('100 sessions and still not every master has enough');
    const sessionId = await gw.createSession(token);
    const master = await cluster.masterOf(await cluster.keyslot(sessionKeys(PREFIX, sessionId).stream));
    const list = byMaster.get(master)!;
    if (list.length < perMaster) list.push(sessionId);
  }
  return [...byMaster].flatMap(([master, ids]) => ids.map((sessionId) => ({ sessionId, master })));
}

/** One JSON protocol socket that reports every frame and its close to callbacks. */
function openWire(
  url: string,
  onFrame: (f: Frame) => void,
  onClose: (code: number, reason: string) => void,
): Promise<WebSocket> {
  const ws = new WebSocket(url, ['lifeos.v1.json']);
  ws.on('message', (data: Buffer) => onFrame(JSON.parse(data.toString()) as Frame));
  ws.on('close', (code, reason) => onClose(code, reason.toString()));
  ws.on('error', () => {}); // a close follows
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

interface Connection {
  node: string;
  /** The lastSeq this connection's resume sent (undefined: a fresh hello). */
  resumedFrom?: number;
  welcome?: Frame;
  /** Every `ev` seq received on this connection, as received. */
  seqs: number[];
  close?: { code: number; reason: string };
}

/**
 * A subscriber as a client writes it: it dedupes events by seq, processes them in order,
 * acks every few, and after losing its connection resumes with its resume token, the
 * last seq it processed and its epoch. Everything it saw is kept for the assertions.
 */
class Subscriber {
  readonly connections: Connection[] = [];
  /** seq → eventId of every event processed (after dedupe by seq), in processing order. */
  readonly processed = new Map<number, string>();
  readonly errors: Frame[] = [];
  lastSeq = 0;
  resumeToken = '';
  epoch = '';
  subscriberId = '';
  #ws: WebSocket | undefined;
  #pongs = new Set<number>();

  constructor(readonly sessionId: string) {}

  get current(): Connection {
    return this.connections.at(-1)!;
  }

  get connected(): boolean {
    return this.connections.length > 0 && this.current.close === undefined;
  }

  start(node: GatewayProcess, token: string): Promise<Frame> {
    return this.#open(node, { op: 'hello', sessionId: this.sessionId, token, after: 0 });
  }

  resume(node: GatewayProcess): Promise<Frame> {
    return this.#open(node, {
      op: 'hello',
      sessionId: this.sessionId,
      resume: { token: this.resumeToken, lastSeq: this.lastSeq, epoch: this.epoch },
    });
  }

  /** Resolves on the pong: every frame the node sent before it has been processed. */
  async ping(): Promise<void> {
    const n = Math.floor(Math.random() * 1e9);
    const conn = this.current;
    this.#ws!.send(JSON.stringify({ op: 'ping', n }));
    await until(
      () => this.#pongs.has(n) || conn.close !== undefined,
      5000,
      () => `a pong on ${conn.node}`,
    );
    if (!this.#pongs.has(n)) throw new Error(`closed ${JSON.stringify(conn.close)} before the pong`);
  }

  close(): void {
    this.#ws?.close();
  }

  async #open(node: GatewayProcess, hello: Frame): Promise<Frame> {
    const conn: Connection = { node: node.name, seqs: [] };
    if (hello.resume) conn.resumedFrom = this.lastSeq;
    this.connections.push(conn);
    const ws = await openWire(
      node.wsUrl,
      (f) => {
        switch (f.op) {
          case 'welcome':
            conn.welcome = f;
            this.resumeToken = f.resumeToken as string;
            this.epoch = f.epoch as string;
            this.subscriberId = f.subscriberId as string;
            return;
          case 'ev': {
            const seq = f.seq as number;
            conn.seqs.push(seq);
            if (this.processed.has(seq)) return; // the client's dedupe
            this.processed.set(seq, (f.event as { eventId: string }).eventId);
            this.lastSeq = Math.max(this.lastSeq, seq);
            if (seq % 5 === 0) ws.send(JSON.stringify({ op: 'ack', seq }));
            return;
          }
          case 'pong':
            this.#pongs.add(f.n as number);
            return;
          case 'error':
            this.errors.push(f);
            return;
        }
      },
      (code, reason) => {
        conn.close = { code, reason };
      },
    );
    this.#ws = ws;
    ws.send(JSON.stringify(hello));
    await until(
      () => conn.welcome !== undefined || conn.close !== undefined,
      10_000,
      () => `a welcome from ${node.name}`,
    );
    if (!conn.welcome) throw new Error(`hello on ${node.name} refused: ${JSON.stringify(conn.close)}`);
    return conn.welcome;
  }
}

/**
 * Publishes to one session through one node, continuously until `settle()`: a new event
 * every few ms while fewer than `window` are unanswered, a retryable nack retried with the
 * same id. Acks what it receives, so flow control never pauses it. Its connection is not
 * expected to drop: that is recorded as a problem.
 */
class Publisher {
  readonly pubacks = new Map<string, number>();
  readonly outstanding = new Set<string>();
  readonly problems: string[] = [];
  #ws: WebSocket | undefined;
  #timer: NodeJS.Timeout | undefined;
  #n = 0;
  #done = false;

  constructor(
    readonly name: string,
    readonly sessionId: string,
    readonly token: string,
    readonly node: GatewayProcess,
    readonly window = 4,
    readonly intervalMs = 5,
  ) {}

  async start(): Promise<void> {
    let welcomed = false;
    const ws = await openWire(
      this.node.wsUrl,
      (f) => {
        if (f.op === 'welcome') welcomed = true;
        else if (f.op === 'puback') this.#onPuback(f);
        else if (f.op === 'nack') this.#onNack(f);
        else if (f.op === 'ev') ws.send(JSON.stringify({ op: 'ack', seq: f.seq as number }));
      },
      (code, reason) => {
        if (!this.#done) this.problems.push(`${this.name}: connection closed ${code} ${reason}`);
      },
    );
    this.#ws = ws;
    ws.send(JSON.stringify({ op: 'hello', sessionId: this.sessionId, token: this.token }));
    await until(
      () => welcomed || ws.readyState >= WebSocket.CLOSING,
      10_000,
      () => `${this.name} welcome`,
    );
    if (!welcomed) throw new Error(`${this.name}: closed before welcome`);
    this.#timer = setInterval(() => this.#tick(), this.intervalMs);
  }

  /** Stops publishing new events and waits until every one sent is pubacked. */
  async settle(timeoutMs = 10_000): Promise<void> {
    clearInterval(this.#timer);
    await until(
      () => this.outstanding.size === 0 || this.problems.length > 0,
      timeoutMs,
      () => `${this.name}: pubacks for ${[...this.outstanding].join(', ')}`,
    );
  }

  /** The highest seq pubacked. */
  get head(): number {
    return Math.max(0, ...this.pubacks.values());
  }

  close(): void {
    this.#done = true;
    clearInterval(this.#timer);
    this.#ws?.close();
  }

  #tick(): void {
    if (this.outstanding.size >= this.window) return;
    const i = ++this.#n;
    const id = `${this.name}-${i}`;
    this.outstanding.add(id);
    this.#ws!.send(JSON.stringify(transcript(id, i)));
  }

  #onPuback(f: Frame): void {
    const id = f.id as string;
    const known = this.pubacks.get(id);
    if (known !== undefined && known !== f.seq)
      this.problems.push(`${this.name}: ${id} pubacked at ${known} and at ${String(f.seq)}`);
    this.pubacks.set(id, f.seq as number);
    this.outstanding.delete(id);
  }

  #onNack(f: Frame): void {
    const id = f.id as string;
    if (f.retryable !== true) {
      this.problems.push(`${this.name}: non-retryable nack ${JSON.stringify(f)}`);
      return;
    }
    const i = Number(id.split('-').at(-1));
    setTimeout(() => {
      if (this.outstanding.has(id) && !this.#done) this.#ws!.send(JSON.stringify(transcript(id, i)));
    }, 20).unref();
  }
}

describe('gateway processes on a Redis Cluster', () => {
  it('kill -9 of the node holding subscribers of sessions on every master: each resumes on another node and gets every pubacked event once, in order', async () => {
    const [a, b, c] = nodes as [GatewayProcess, GatewayProcess, GatewayProcess];
    const owner = await processToken('alice');
    const agent = await processToken('bot', 'agent');
    const placed = await sessionsOnEveryMaster(a, owner, 2);
    assert.equal(new Set(placed.map((p) => p.master)).size, 3, 'sessions on all three masters');

    const subscribers = placed.map((p) => new Subscriber(p.sessionId));
    const publishers = placed.map((p, i) => new Publisher(`p${i}`, p.sessionId, agent, b));
    try {
      // Subscribers on A from seq 0 (seq 1 is call.created), publishers on B.
      const welcomes = await Promise.all(subscribers.map((s) => s.start(a, owner)));
      await Promise.all(publishers.map((p) => p.start()));

      await until(
        () => subscribers.every((s) => s.lastSeq >= 30),
        10_000,
        () => `every subscriber to process 30 events on A: ${subscribers.map((s) => s.lastSeq).join(',')}`,
      );
      const pubackedAtKill = publishers.map((p) => p.pubacks.size);
      assert.equal((await a.crash()).signal, 'SIGKILL');

      await until(
        () => subscribers.every((s) => !s.connected),
        5000,
        () => 'every subscriber to see its connection to A drop',
      );
      // Resume on B and C alternately, with resume token, lastSeq and epoch.
      const resumed = await Promise.all(subscribers.map((s, i) => s.resume(i % 2 === 0 ? b : c)));
      for (const [i, w] of resumed.entries()) {
        assert.equal(w.resumed, true);
        assert.equal(w.subscriberId, welcomes[i]!.subscriberId);
        assert.equal(w.epoch, welcomes[i]!.epoch);
      }
      // Publishing goes on across the kill and the resumes.
      await until(
        () => subscribers.every((s) => s.current.seqs.length >= 30),
        15_000,
        () =>
          `30 events on every resumed connection: ${subscribers.map((s) => s.current.seqs.length).join(',')}`,
      );
      await Promise.all(publishers.map((p) => p.settle()));
      for (const [i, p] of publishers.entries())
        assert.ok(p.pubacks.size > pubackedAtKill[i]!, `${p.name} was pubacked after A died`);

      await until(
        () => subscribers.every((s, i) => s.lastSeq >= publishers[i]!.head),
        10_000,
        () => 'every subscriber to reach its publisher’s last pubacked seq',
      );
      // Nothing else is in flight: whatever the nodes sent arrives before the pong.
      await Promise.all(subscribers.map((s) => s.ping()));

      for (const [i, s] of subscribers.entries()) {
        const p = publishers[i]!;
        const head = p.head;
        const label = `subscriber of ${s.sessionId} (master :${placed[i]!.master})`;
        assert.deepEqual(p.problems, [], `${p.name} problems`);
        assert.deepEqual(s.errors, [], `${label}: error frames`);
        // Two connections: A until it died, then the resume.
        assert.deepEqual(
          s.connections.map((conn) => conn.node),
          [a.name, i % 2 === 0 ? b.name : c.name],
          label,
        );
        const [first, second] = s.connections as [Connection, Connection];
        assert.equal(first.close?.code, 1006, `${label}: A's connection dropped without a close frame`);
        assert.equal(second.close, undefined, `${label}: the resumed connection is still open`);
        assert.equal(second.welcome!.after, second.resumedFrom, `${label}: resume starts after lastSeq`);
        // Within a connection: strictly +1 from welcome.after + 1.
        for (const conn of s.connections) {
          const from = (conn.welcome!.after as number) + 1;
          assert.deepEqual(conn.seqs, range(from, from + conn.seqs.length - 1), `${label} on ${conn.node}`);
        }
        // After dedupe: 1..head in order, no gap, and every pubacked event at its seq.
        assert.deepEqual([...s.processed.keys()], range(1, head), `${label}: seqs 1..${head} in order`);
        assert.deepEqual(
          [...p.pubacks.values()].sort((x, y) => x - y),
          range(2, head),
          `${label}: every seq after call.created is one pubacked event`,
        );
        for (const [id, seq] of p.pubacks)
          assert.equal(s.processed.get(seq), id, `${label}: ${id} at seq ${seq}`);
      }
    } finally {
      for (const p of publishers) p.close();
      for (const s of subscribers) s.close();
    }
  });

  it('a duplicate resume race across two nodes ends with exactly one live connection, every other closed 4009', async () => {
    const [x, y] = nodes.filter((n) => n.running) as [GatewayProcess, GatewayProcess];
    assert.ok(x && y, 'two nodes still run');
    const owner = await processToken('alice');
    const agent = await processToken('bot', 'agent');
    // One session per master: the takeover notices go over each master's shard channel.
    for (const { sessionId, master } of await sessionsOnEveryMaster(x, owner, 1)) {
      const label = `session on master :${master}`;
      const { client: original, welcome } = await subscribe(x.wsUrl, { sessionId, token: owner, after: 0 });
      assert.equal((await original.op('ev')).seq, 1);
      const resume = { token: welcome.resumeToken, lastSeq: 1, epoch: welcome.epoch };
      const contenders = await Promise.all([x, y, x, y].map((n) => TestClient.connect(n.wsUrl)));
      // All at once: none waits for another's welcome.
      for (const contender of contenders) contender.send({ op: 'hello', sessionId, resume });
      const all = [original, ...contenders];
      await until(
        () => all.filter((conn) => conn.closeInfo).length >= all.length - 1,
        10_000,
        () => `${label}: all but one connection closed`,
      );
      const survivors = all.filter((conn) => !conn.closeInfo);
      assert.equal(survivors.length, 1, `${label}: one survivor`);
      const survivor = survivors[0]!;
      assert.notEqual(survivor, original, `${label}: the original was superseded`);
      for (const conn of all)
        if (conn !== survivor) assert.equal(conn.closeInfo?.code, 4009, `${label}: closed as superseded`);
      assert.equal((await survivor.op('welcome')).resumed, true);

      // The survivor still works, and gets the next event once; nobody else was revived.
      const { client: pub } = await subscribe(y.wsUrl, { sessionId, token: agent });
      pub.send(transcript('after-race', 1));
      assert.equal((await pub.next((f) => f.op === 'puback')).seq, 2);
      assert.equal((await survivor.op('ev')).seq, 2);
      survivor.send({ op: 'ping', n: 1 });
      await survivor.op('pong');
      assert.deepEqual(
        survivor.drain().filter((f) => f.op === 'ev'),
        [],
        `${label}: nothing delivered twice`,
      );
      assert.equal(all.filter((conn) => !conn.closeInfo).length, 1, `${label}: still one survivor`);
      survivor.close();
      pub.close();
    }
  });

  it('/readyz is 503 while one master is stopped (SIGSTOP) and 200 again once it answers', async () => {
    const gw = nodes.find((n) => n.running)!;
    await gw.waitForReady(200);
    // Not the first seed: the gateway must look past the node it bootstrapped from.
    const port = cluster.ports[2]!;
    cluster.pause(port);
    try {
      await gw.waitForReady(503, 10_000);
      // Every probe while it is stopped, not one in three: each one pings every master.
      for (let i = 0; i < 3; i++) {
        const res = await gw.http('GET', '/readyz', { timeoutMs: 5000 });
        assert.equal(res.status, 503, `probe ${i} while :${port} is stopped`);
      }
    } finally {
      await cluster.resume(port);
    }
    await gw.waitForReady(200, 15_000);
  });
});
