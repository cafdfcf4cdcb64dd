import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import WebSocket from 'ws';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import {
  GatewayProcess,
  processToken,
  startGatewayProcesses,
  stopAllGatewayProcesses,
} from '../../chaos/toolkit/gateway-process.ts';
import { TestClient, subscribe, type Frame } from '../helpers/ws-client.ts';
import { sessionKeys, subscriberKey } from '../../src/engine/redis/keys.ts';
import { until } from '../helpers/until.ts';

/**
 * Node failures with real gateway processes (issue 3, point 3): 3 nodes on one private
 * redis-server (AOF, appendfsync always).
 *
 * - kill -9 of the node holding a subscriber (and a publisher): the subscriber resumes on
 *   a surviving node with nothing lost and nothing repeated; retried publishes are stored
 *   once. Nothing the dead node held in memory is needed.
 * - SIGSTOP of the node holding a subscriber, resume elsewhere, SIGCONT: the stopped node
 *   must not deliver to its old connection after the takeover, and its late acks must not
 *   move the checkpoint — with the takeover notice delivered late, and with the notice
 *   lost (the node's pub/sub connection dropped while it was stopped).
 */

const PROCESS_ENV = { REDIS_COMMAND_TIMEOUT_MS: '500', RESUME_WINDOW_MS: '5000' };

let redis: RedisServer;
let run = 0;

before(async () => {
  redis = await RedisServer.start({ aof: true, appendfsync: 'always' });
});
afterEach(async () => {
  await stopAllGatewayProcesses();
});
after(async () => {
  await stopAllGatewayProcesses();
  await redis?.stop();
});

async function cluster(count: number): Promise<{ nodes: GatewayProcess[]; prefix: string }> {
  const prefix = `fail${++run}:`;
  const nodes = await startGatewayProcesses(
    count,
    { REDIS_URL: redis.url, REDIS_KEY_PREFIX: prefix, ...PROCESS_ENV },
    `f${run}-n`,
  );
  return { nodes, prefix };
}

function transcript(id: string, i: number): Frame {
  return {
    op: 'pub',
    id,
    type: 'transcript.partial',
    payload: { segmentId: 's', revision: i, text: `t${i}` },
  };
}

function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
}

/** `promise`, or a rejection naming `what()` after `timeoutMs`; leaves no timer behind. */
async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

// ── event-driven protocol clients ─────────────────────────────────────────────────────

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

interface SubscriberConnection {
  node: string;
  welcome?: Frame;
  seqs: number[];
  close?: { code: number; reason: string };
}

/**
 * A subscriber as a careful client writes it: it processes events in order, remembers
 * the last seq it processed, acks every few events, and after losing its connection
 * resumes with its resume token, `lastSeq` and epoch. It does no dedupe of its own: it
 * records every `ev` that is not exactly `lastSeq + 1` as a violation.
 */
class ResumingSubscriber {
  readonly seqs: number[] = [];
  readonly violations: string[] = [];
  readonly connections: SubscriberConnection[] = [];
  lastSeq = 0;
  resumeToken = '';
  epoch = '';
  #ws: WebSocket | undefined;
  readonly #ackEvery: number;

  constructor(
    readonly sessionId: string,
    ackEvery = 7,
  ) {
    this.#ackEvery = ackEvery;
  }

  get connected(): boolean {
    const current = this.connections.at(-1);
    return current !== undefined && current.close === undefined;
  }

  /** A fresh subscription. */
  start(node: GatewayProcess, token: string, after: number): Promise<Frame> {
    return this.#open(node, { op: 'hello', sessionId: this.sessionId, token, after });
  }

  /** A resume with token, lastSeq and epoch. */
  resume(node: GatewayProcess): Promise<Frame> {
    return this.#open(node, {
      op: 'hello',
      sessionId: this.sessionId,
      resume: { token: this.resumeToken, lastSeq: this.lastSeq, epoch: this.epoch },
    });
  }

  /** Resolves on a pong: every frame the node sent before it has been processed. */
  async ping(timeoutMs = 5000): Promise<void> {
    const conn = this.connections.at(-1)!;
    const n = Math.floor(Math.random() * 1e9);
    let got = false;
    const prev = this.#onPong;
    this.#onPong = (f) => {
      if (f.n === n) got = true;
    };
    this.#ws!.send(JSON.stringify({ op: 'ping', n }));
    try {
      await until(() => got || conn.close !== undefined, timeoutMs, 'pong');
    } finally {
      this.#onPong = prev;
    }
    if (!got) throw new Error(`connection closed ${JSON.stringify(conn.close)} before pong`);
  }

  close(): void {
    this.#ws?.close();
  }

  #onPong: (f: Frame) => void = () => {};

  async #open(node: GatewayProcess, hello: Frame): Promise<Frame> {
    const conn: SubscriberConnection = { node: node.name, seqs: [] };
    this.connections.push(conn);
    const expectedAfter = hello.resume ? this.lastSeq : undefined;
    let welcome: Frame | undefined;
    const ws = await openWire(
      node.wsUrl,
      (f) => {
        switch (f.op) {
          case 'welcome':
            welcome = f;
            conn.welcome = f;
            this.resumeToken = f.resumeToken;
            this.epoch = f.epoch;
            if (expectedAfter !== undefined && f.after !== expectedAfter)
              this.violations.push(
                `resume on ${node.name}: welcome.after ${String(f.after)}, expected ${expectedAfter}`,
              );
            return;
          case 'ev': {
            const seq = f.seq as number;
            conn.seqs.push(seq);
            if (seq !== this.lastSeq + 1) {
              this.violations.push(
                `${node.name}: ev seq ${seq} after ${this.lastSeq} (${seq <= this.lastSeq ? 'duplicate' : 'gap'})`,
              );
              if (seq <= this.lastSeq) return; // do not process it twice
            }
            this.seqs.push(seq);
            this.lastSeq = seq;
            if (seq % this.#ackEvery === 0) ws.send(JSON.stringify({ op: 'ack', seq }));
            return;
          }
          case 'pong':
            return this.#onPong(f);
          case 'error':
            this.violations.push(`${node.name}: error frame ${JSON.stringify(f)}`);
            return;
        }
      },
      (code, reason) => {
        conn.close = { code, reason };
      },
    );
    this.#ws = ws;
    ws.send(JSON.stringify(hello));
    await until(() => welcome !== undefined || conn.close !== undefined, 10_000, `welcome from ${node.name}`);
    if (!welcome) throw new Error(`hello on ${node.name} refused: ${JSON.stringify(conn.close)}`);
    return welcome;
  }
}

/**
 * A publisher that never gives up on an event: up to `window` unanswered publishes,
 * one new publish every `intervalMs`; a retryable nack is retried with the same id, and
 * after losing its connection it reconnects to the next node and re-sends every
 * unanswered publish with the same id.
 */
class RetryingPublisher {
  readonly pubacks = new Map<string, number>();
  readonly violations: string[] = [];
  readonly outstanding = new Set<string>();
  resent = 0;
  reconnects = 0;
  #next = 0;
  #ws: WebSocket | undefined;
  #live = false;
  #timer: NodeJS.Timeout | undefined;
  #finished = false;
  #resolveDone!: () => void;
  readonly done = new Promise<void>((resolve) => (this.#resolveDone = resolve));

  constructor(
    readonly name: string,
    readonly sessionId: string,
    readonly token: string,
    readonly ids: string[],
    /** Nodes to (re)connect to, in order of preference; dead ones are skipped. */
    readonly nodes: GatewayProcess[],
    readonly window = 6,
    readonly intervalMs = 8,
  ) {}

  get finished(): boolean {
    return this.#finished;
  }

  async start(): Promise<void> {
    await this.#connect();
    this.#timer = setInterval(() => this.#tick(), this.intervalMs);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#finished = true;
    this.#ws?.close();
  }

  /**
   * Connects to the first running node that welcomes it, trying the nodes in turn (a node
   * that was just killed may not be known as dead yet: its attempt fails and the next one
   * is tried). Only the welcomed connection's close starts a reconnect.
   */
  async #connect(): Promise<void> {
    const deadline = Date.now() + 15_000;
    for (let attempt = 0; ; attempt++) {
      const candidates = this.nodes.filter((n) => n.running);
      if (candidates.length === 0) throw new Error(`${this.name}: no node left`);
      try {
        await this.#connectTo(candidates[attempt % candidates.length]!);
        return;
      } catch (err) {
        if (this.#finished) return;
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 50)); // reconnect backoff
      }
    }
  }

  async #connectTo(node: GatewayProcess): Promise<void> {
    let welcomed = false;
    const ws = await openWire(
      node.wsUrl,
      (f) => {
        if (f.op === 'welcome') {
          welcomed = true;
          this.#ws = ws;
          this.#live = true;
          // Everything unanswered on the lost connection goes again, same ids.
          for (const id of this.outstanding) this.#send(id, true);
        } else if (f.op === 'puback') this.#onPuback(f);
        else if (f.op === 'nack') this.#onNack(f);
      },
      () => {
        if (!welcomed || this.#ws !== ws) return; // a failed attempt: #connect retries
        this.#live = false;
        if (this.#finished) return;
        this.reconnects++;
        void this.#connect().catch((err: unknown) => this.violations.push(`${this.name}: ${String(err)}`));
      },
    );
    ws.send(JSON.stringify({ op: 'hello', sessionId: this.sessionId, token: this.token }));
    await until(() => welcomed || ws.readyState >= WebSocket.CLOSING, 10_000, `${this.name} welcome`);
    if (!welcomed) throw new Error(`${this.name}: ${node.name} closed before welcome`);
  }

  #tick(): void {
    if (!this.#live || this.#finished) return;
    if (this.outstanding.size >= this.window || this.#next >= this.ids.length) return;
    const id = this.ids[this.#next++]!;
    this.outstanding.add(id);
    this.#send(id, false);
  }

  #send(id: string, retry: boolean): void {
    if (retry) this.resent++;
    const i = Number(id.split('-').at(-1));
    this.#ws?.send(JSON.stringify(transcript(id, i)));
  }

  #onPuback(f: Frame): void {
    const id = f.id as string;
    const known = this.pubacks.get(id);
    if (known !== undefined && known !== f.seq)
      this.violations.push(`${this.name}: ${id} pubacked at ${known} and at ${String(f.seq)}`);
    this.pubacks.set(id, f.seq as number);
    this.outstanding.delete(id);
    if (this.pubacks.size === this.ids.length && !this.#finished) {
      this.stop();
      this.#resolveDone();
    }
  }

  #onNack(f: Frame): void {
    const id = f.id as string;
    if (f.retryable !== true) {
      this.violations.push(`${this.name}: non-retryable nack ${JSON.stringify(f)}`);
      return;
    }
    setTimeout(() => {
      if (this.outstanding.has(id) && this.#live) this.#send(id, true);
    }, 20).unref();
  }
}

// ── Redis-side inspection ───────────────────────────────────────────────────────────────

async function subscriberRecord(
  prefix: string,
  sessionId: string,
  subscriberId: string,
): Promise<{ gen: number; cp: number }> {
  const key = subscriberKey(sessionKeys(prefix, sessionId), subscriberId);
  const [gen, cp] = (await redis.command('HMGET', key, 'gen', 'cp')) as [string | null, string | null];
  return { gen: Number(gen), cp: Number(cp) };
}

/** Local TCP ports of `pid`'s sockets connected to `remotePort` (Linux /proc). */
function localPortsTo(pid: number, remotePort: number): Set<number> {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const ports = new Set<number>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10 || !inodes.has(cols[9]!)) continue;
      const remote = parseInt(cols[2]!.split(':').at(-1)!, 16);
      if (remote === remotePort) ports.add(parseInt(cols[1]!.split(':').at(-1)!, 16));
    }
  }
  return ports;
}

/** Redis's ids of the pub/sub ("notices") connections that belong to process `pid`. */
async function noticeConnectionIds(pid: number): Promise<string[]> {
  const ports = localPortsTo(pid, redis.port);
  const list = String(await redis.command('CLIENT', 'LIST'));
  const ids: string[] = [];
  for (const line of list.split('\n')) {
    const fields = new Map(
      line
        .trim()
        .split(' ')
        .map((kv) => {
          const at = kv.indexOf('=');
          return [kv.slice(0, at), kv.slice(at + 1)] as [string, string];
        }),
    );
    const port = Number(fields.get('addr')?.split(':').at(-1));
    if (fields.get('name') === 'lifeos-gateway-notices' && ports.has(port)) ids.push(fields.get('id')!);
  }
  return ids;
}

async function waitForSubscribers(channel: string, count: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const reply = (await redis.command('PUBSUB', 'NUMSUB', channel)) as [string, number];
    if (Number(reply[1]) >= count) return;
    if (Date.now() > deadline)
      throw new Error(`only ${reply[1]} of ${count} nodes subscribed to ${channel} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// ── tests ────────────────────────────────────────────────────────────────────────────────

describe('node failures with real gateway processes', () => {
  it('kill -9 of the node holding a subscriber and a publisher: resume elsewhere, seqs 1..N exactly once, every puback stored once', async () => {
    const { nodes } = await cluster(3);
    const [a, b, c] = nodes as [GatewayProcess, GatewayProcess, GatewayProcess];
    const owner = await processToken('alice');
    const agent = await processToken('bot', 'agent');
    const sessionId = await a.createSession(owner); // seq 1: call.created

    const subscriber = new ResumingSubscriber(sessionId);
    const welcome = await subscriber.start(a, owner, 0);
    assert.equal(welcome.after, 0);

    const perPublisher = 120;
    const ids = (p: string): string[] => range(1, perPublisher).map((i) => `${p}-${i}`);
    // p1 publishes through B, which survives; p2 through A, which dies under it.
    const p1 = new RetryingPublisher('p1', sessionId, agent, ids('p1'), [b, c]);
    const p2 = new RetryingPublisher('p2', sessionId, agent, ids('p2'), [a, c]);
    try {
      await Promise.all([p1.start(), p2.start()]);

      await until(() => subscriber.lastSeq >= 40, 10_000, 'the subscriber to process 40 events on A');
      assert.ok(!p1.finished && !p2.finished, 'publishing is still going on when A dies');
      const exit = await a.crash();
      assert.equal(exit.signal, 'SIGKILL');

      await until(() => !subscriber.connected, 5000, 'the subscriber to see its connection to A drop');
      const lostAt = subscriber.lastSeq;
      const resumed = await subscriber.resume(c);
      assert.equal(resumed.resumed, true);
      assert.equal(resumed.after, lostAt, 'delivery restarts right after the client’s lastSeq');
      assert.equal(resumed.epoch, welcome.epoch);
      assert.equal(resumed.subscriberId, welcome.subscriberId);

      await withTimeout(
        Promise.all([p1.done, p2.done]),
        20_000,
        () =>
          `every publish to be pubacked: p1 ${p1.pubacks.size}/${perPublisher}, p2 ${p2.pubacks.size}/${perPublisher}, ` +
          `violations ${JSON.stringify([...p1.violations, ...p2.violations])}`,
      );
      assert.ok(p2.reconnects >= 1, 'p2 lost its node and reconnected');

      const head = 1 + 2 * perPublisher;
      await until(() => subscriber.lastSeq >= head, 10_000, `the subscriber to reach seq ${head}`);
      // Anything still in flight on the socket arrives before the pong.
      await subscriber.ping();

      assert.deepEqual(subscriber.violations, []);
      assert.deepEqual(subscriber.seqs, range(1, head), 'seqs 1..N exactly once, in order');
      assert.deepEqual(subscriber.connections.at(-1)!.seqs, range(lostAt + 1, head));
      assert.deepEqual([...p1.violations, ...p2.violations], []);

      // The stream: every pubacked id exactly once, at the seq its puback named.
      const history = await b.http('GET', `/v1/call/sessions/${sessionId}/events?after=0&limit=1000`, {
        token: owner,
      });
      assert.equal(history.status, 200);
      assert.equal(history.body.headSeq, head);
      assert.equal(history.body.epoch, welcome.epoch);
      const events = history.body.events as { seq: number; event: { eventId: string } }[];
      assert.deepEqual(
        events.map((e) => e.seq),
        range(1, head),
      );
      const stored = events.map((e) => e.event.eventId);
      assert.equal(new Set(stored).size, stored.length, 'no eventId stored twice');
      for (const p of [p1, p2]) {
        for (const [id, seq] of p.pubacks) {
          assert.equal(events[seq - 1]!.event.eventId, id, `${id} is stored at the seq its puback named`);
        }
      }
      subscriber.close();
    } finally {
      p1.stop();
      p2.stop();
    }
  });

  for (const variant of ['takeover notice delivered late', 'takeover notice lost'] as const) {
    it(`SIGSTOP of the node holding a subscriber, resume elsewhere, SIGCONT (${variant}): no delivery to the old connection, late acks fenced`, async () => {
      const { nodes, prefix } = await cluster(3);
      const [a, b, c] = nodes as [GatewayProcess, GatewayProcess, GatewayProcess];
      const owner = await processToken('alice');
      const agent = await processToken('bot', 'agent');
      const sessionId = await a.createSession(owner);
      const channel = sessionKeys(prefix, sessionId).channel;

      // S1 on A (the node we freeze), a witness W on A, a publisher on C.
      const { client: s1, welcome: w1 } = await subscribe(a.wsUrl, { sessionId, token: owner, after: 0 });
      // Every frame S1 receives, whether or not a wait below consumed it.
      const s1Frames: Frame[] = [];
      s1.ws.on('message', (data: Buffer) => s1Frames.push(JSON.parse(data.toString()) as Frame));
      const { client: witness } = await subscribe(a.wsUrl, { sessionId, token: owner, after: 0 });
      const { client: pub } = await subscribe(c.wsUrl, { sessionId, token: agent });
      let n = 0;
      const publish = async (): Promise<number> => {
        const id = `e${++n}`;
        pub.send(transcript(id, n));
        return (await pub.next((f) => (f.op === 'puback' || f.op === 'nack') && f.id === id)).seq as number;
      };
      for (let i = 0; i < 9; i++) await publish(); // head 10
      assert.deepEqual(
        (await s1.events(10)).map((e) => e.seq),
        range(1, 10),
      );
      await witness.events(10);
      // The checkpoint is 3 before A freezes.
      s1.send({ op: 'ack', seq: 3 });
      const deadline = Date.now() + 5000;
      while ((await subscriberRecord(prefix, sessionId, w1.subscriberId)).cp !== 3) {
        if (Date.now() > deadline) throw new Error('checkpoint 3 was never written');
        await new Promise((r) => setTimeout(r, 20));
      }

      a.pause();
      try {
        if (variant === 'takeover notice lost') {
          // "Past every timeout": A's pub/sub connection is gone when it wakes up, so the
          // takeover notice published meanwhile never reaches it.
          const ids = await noticeConnectionIds(a.pid);
          assert.ok(ids.length >= 1, 'found A’s notice connection in CLIENT LIST');
          for (const id of ids) await redis.command('CLIENT', 'KILL', 'ID', id);
        }
        // A late ack, queued in A's socket while it is frozen.
        s1.send({ op: 'ack', seq: 10 });

        // The subscriber resumes on B from its checkpoint (no lastSeq: a resume's lastSeq
        // would be stored as the checkpoint with the takeover, hiding what A's acks do).
        const s2 = await TestClient.connect(b.wsUrl);
        s2.send({ op: 'hello', sessionId, resume: { token: w1.resumeToken, epoch: w1.epoch } });
        const w2 = await s2.op('welcome');
        assert.equal(w2.resumed, true);
        assert.equal(w2.after, 3);
        assert.equal((await subscriberRecord(prefix, sessionId, w1.subscriberId)).gen, 2);

        for (let i = 0; i < 5; i++) await publish(); // 11..15, delivered on B only
        assert.deepEqual(
          (await s2.events(12)).map((e) => e.seq),
          range(4, 15),
        );
        assert.deepEqual(s1.drain(), [], 'A is frozen: nothing on the old socket');
        const mark = s1Frames.length;

        a.resume();
        // Barrier: A is subscribed again, then one more event goes through A to the witness;
        // whatever A did for S1 with the events up to it, it did before that.
        await waitForSubscribers(channel, 3, 10_000);
        const last = await publish(); // 16
        assert.equal(last, 16);
        await witness.next((f) => f.op === 'ev' && f.seq === 16, 10_000);
        let pongOnOld = false;
        if (!s1.closeInfo) {
          s1.send({ op: 'ping', n: 99 });
          pongOnOld = await s1
            .next((f) => f.op === 'pong', 3000)
            .then(() => true)
            .catch(() => false);
        }
        const afterCont = s1Frames.slice(mark);
        const staleEvents = afterCont.filter((f) => f.op === 'ev').map((f) => f.seq as number);
        // A client that got events keeps acking them on the old socket.
        if (!s1.closeInfo && staleEvents.length > 0) {
          s1.send({ op: 'ack', seq: Math.max(...staleEvents) });
          s1.send({ op: 'ping', n: 100 });
          await s1.next((f) => f.op === 'pong', 3000).catch(() => undefined);
        }
        const closeCode = await s1.closeCode(5000).catch(() => undefined);
        // Barrier on A's command connection: its checkpoint writes are done before this ping.
        await a.waitForReady(200, 5000);
        await a.waitForReady(200, 5000);
        const record = await subscriberRecord(prefix, sessionId, w1.subscriberId);

        // A third node reads the checkpoint the engine holds: resume without lastSeq.
        const s3 = await TestClient.connect(c.wsUrl);
        s3.send({ op: 'hello', sessionId, resume: { token: w2.resumeToken } });
        const w3 = await s3.op('welcome');

        const problems: string[] = [];
        if (staleEvents.some((seq) => seq > 10))
          problems.push(
            `A delivered seqs ${JSON.stringify(staleEvents)} to the superseded connection after SIGCONT (pong on it: ${pongOnOld})`,
          );
        if (closeCode !== 4009)
          problems.push(
            `the superseded connection on A was ${closeCode === undefined ? 'still open' : `closed with ${closeCode}`} 5 s after SIGCONT, expected 4009`,
          );
        if (record.cp !== 3)
          problems.push(`checkpoint moved to ${record.cp} (expected 3: only stale acks since)`);
        if (record.gen !== 2) problems.push(`generation ${record.gen}, expected 2`);
        if (w3.after !== 3)
          problems.push(`resume without lastSeq on C starts after ${String(w3.after)}, expected 3`);
        assert.deepEqual(problems, []);

        assert.equal(await s2.closeCode(), 4009, 'S2 superseded by the resume on C');
        assert.deepEqual(
          (await s3.events(6)).map((e) => e.seq),
          range(4, 9),
        );
        s3.close();
      } finally {
        a.resume();
        s1.close();
        witness.close();
        pub.close();
      }
    });
  }
});
