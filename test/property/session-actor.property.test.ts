/**
 * Model-based property test of the session actor (src/session/session-actor.ts), driven
 * the way the transport drives it: JSON frames into a `RealtimeHandler`, over
 * `Connection`s whose `Sink` is an in-memory fake that records every frame, on a
 * `MemoryEngine` with a `ManualClock` (and node:test's mocked `setTimeout`, so the
 * slow-consumer and idle timers fire only when the test advances time).
 *
 * fast-check generates command sequences (connect, resume, publish, ack, disconnect,
 * bye, advance time, slow/drain a socket, end the session); after every command the
 * test lets the event loop settle and checks the invariants of ARCHITECTURE-NOTES.md and
 * PROTOCOL.md against what the fake sockets received and what the engine holds.
 *
 *   node --test --import tsx test/property/session-actor.property.test.ts
 *
 * Env: FC_SEED (replay a seed: generation is deterministic, so the run fails and shrinks
 * the same way again), FC_RUNS (runs per property). A failure prints the shrunk command sequence and, in the
 * error message, a trace of what each command resolved to in the failing run.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import fc from 'fast-check';
import type { JwtVerifier, Principal } from '../../src/auth/jwt.ts';
import { ResumeTokens } from '../../src/auth/resume-token.ts';
import { jsonCodec } from '../../src/codec/json-codec.ts';
import { MemoryEngine } from '../../src/engine/memory/memory-engine.ts';
import { GatewayError, toGatewayError } from '../../src/errors/gateway-error.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import type { Envelope } from '../../src/protocol/envelope.ts';
import { ActorRegistry } from '../../src/session/actor-registry.ts';
import { Connection } from '../../src/session/connection.ts';
import { RealtimeHandler } from '../../src/session/realtime-handler.ts';
import type { Sink } from '../../src/session/sink.ts';
import { ManualClock } from '../../src/util/clock.ts';

// ── fixed parameters ─────────────────────────────────────────────────────────────────

const SESSION = 'ses_prop';
const TENANT = 'ten_prop';
const OWNER = 'usr_prop';
const AGENT_TOKEN = 'agent-token';
/** Odd, while the clock starts even and only moves by even steps: no close ever lands exactly on the window edge. */
const WINDOW_MS = 1001;
const BACKPRESSURE_BYTES = 1024;
const SLOW_BUFFERED = 1 << 20;
const SLOW_CONSUMER_MS = 500;
const ADVANCE_STEPS = [2, 100, 300, 498, 500, 600, 1000, 1002, 2500] as const;
const START_MS = Date.UTC(2026, 10, 28, 12, 0, 0); // even

/** One Metrics for the whole file: each instance starts prom-client's default collectors. */
const metrics = new Metrics();

/** The JWT is not under test: a stub keeps hellos deterministic (no WebCrypto job). */
const jwtStub = {
  verify(token: string): Promise<Principal> {
    if (token !== AGENT_TOKEN) return Promise.reject(new GatewayError('unauthorized'));
    return Promise.resolve({ userId: 'agt_prop', tenantId: TENANT, role: 'agent', expiresAt: 4_102_444_800 });
  },
} as unknown as JwtVerifier;

interface Limits {
  maxInFlight: number;
  cacheEvents: number;
  replayBatch: number;
  idleMs: number;
}

function limitsArb(mix: Mix): fc.Arbitrary<Limits> {
  return fc.record({
    maxInFlight: fc.integer({ min: 1, max: 8 }),
    cacheEvents: fc.integer({ min: 0, max: 8 }),
    replayBatch: fc.integer({ min: 1, max: 8 }),
    // 300 ms: an actor left without connections is dropped within one `advance`.
    idleMs: mix.idle ? fc.constantFrom(300, 60_000) : fc.constant(3_600_000),
  });
}

// ── the fake socket ──────────────────────────────────────────────────────────────────

/** A frame the gateway sent, decoded. */
interface InFrame {
  op: string;
  [key: string]: unknown;
}

/** A frame the test sent as the client. */
type OutFrame =
  | { op: 'hello'; sessionId: string; token?: string; after?: number | 'latest'; resume?: ResumeSpec }
  | { op: 'ack'; seq: number }
  | { op: 'pub'; id: string; type: string; payload: unknown }
  | { op: 'bye' }
  | { op: 'frobnicate' };

interface ResumeSpec {
  token: string;
  lastSeq?: number;
  epoch?: string;
}

type Entry = { dir: 'in'; frame: InFrame } | { dir: 'out'; frame: OutFrame; open: boolean };

interface CloseInfo {
  by: 'gateway' | 'client';
  code: number;
  reason: string;
  at: number;
  buffered: number;
}

class FakeSink implements Sink {
  readonly log: Entry[] = [];
  readonly afterClose: InFrame[] = [];
  readonly problems: string[] = [];
  buffered = 0;
  closed: CloseInfo | undefined;
  /** What the transport does when the socket reports its close (uWS calls it from `end`). */
  onClose: () => void = () => {};
  readonly #clock: ManualClock;

  constructor(clock: ManualClock) {
    this.#clock = clock;
  }

  send(bytes: Uint8Array, binary: boolean): boolean {
    if (binary) this.problems.push('a binary frame on a json connection');
    const frame = jsonCodec.decode(bytes) as InFrame;
    if (this.closed) this.afterClose.push(frame);
    this.log.push({ dir: 'in', frame });
    return this.buffered <= BACKPRESSURE_BYTES;
  }

  bufferedAmount(): number {
    return this.buffered;
  }

  cork(fn: () => void): void {
    fn();
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = { by: 'gateway', code, reason, at: this.#clock.now(), buffered: this.buffered };
    this.onClose();
  }

  /** The client (or the network) closes the socket. */
  clientClose(): void {
    if (this.closed) return;
    this.closed = {
      by: 'client',
      code: 1006,
      reason: 'client went away',
      at: this.#clock.now(),
      buffered: this.buffered,
    };
    this.onClose();
  }
}

// ── the engine, with a watchdog ──────────────────────────────────────────────────────

/** Engine calls one command may cause; far above what any command needs (tens). */
const ENGINE_CALL_BUDGET = 20_000;

/**
 * The memory engine, counting calls: an actor that loops on the engine (read → pump →
 * read …) would starve setImmediate and hang the test; past the budget every call
 * rejects, the loop breaks and the invariant check reports it.
 */
class WatchedEngine extends MemoryEngine {
  calls = 0;
  exceeded: string | undefined;

  #spend(op: string): void {
    if (++this.calls > ENGINE_CALL_BUDGET) {
      this.exceeded ??= `${op} after ${ENGINE_CALL_BUDGET} engine calls in one command (a loop on the engine?)`;
      throw new Error(this.exceeded);
    }
  }

  override read(sessionId: string, after: number, limit: number): ReturnType<MemoryEngine['read']> {
    this.#spend(`read(after ${after}, limit ${limit})`);
    return super.read(sessionId, after, limit);
  }

  override append(sessionId: string, events: readonly Envelope[]): ReturnType<MemoryEngine['append']> {
    this.#spend('append');
    return super.append(sessionId, events);
  }

  override saveCheckpoint(
    sessionId: string,
    subscriberId: string,
    generation: number,
    seq: number,
  ): ReturnType<MemoryEngine['saveCheckpoint']> {
    this.#spend('saveCheckpoint');
    return super.saveCheckpoint(sessionId, subscriberId, generation, seq);
  }
}

// ── what the test knows ──────────────────────────────────────────────────────────────

interface ConnRec {
  name: string;
  conn: Connection;
  sink: FakeSink;
  kind: 'fresh' | 'resume';
  sub: SubRec | undefined;
  /** The client broke the protocol on this connection (it must be closed with 4000). */
  violated?: boolean;
}

/** The model of one subscriber, from the protocol's point of view. */
interface SubRec {
  id: string;
  token: string;
  conns: ConnRec[];
  /** The connection that should be its live one (the last resume processed). */
  current: ConnRec | undefined;
  connected: boolean;
  disconnectedAt: number;
  ended: boolean;
  /** Highest ack the gateway accepted (above the connection's position, ≤ delivered) on its live connection. */
  maxAcceptedAck: number;
  /** Last checkpoint read from the engine. */
  lastCheckpoint: number;
}

function inFrames(rec: ConnRec): InFrame[] {
  const out: InFrame[] = [];
  for (const e of rec.sink.log) if (e.dir === 'in') out.push(e.frame);
  return out;
}

function welcomeOf(rec: ConnRec): InFrame | undefined {
  const first = rec.sink.log.find((e) => e.dir === 'in');
  return first && first.dir === 'in' && first.frame.op === 'welcome' ? first.frame : undefined;
}

function num(frame: InFrame, key: string): number {
  const v = frame[key];
  assert.equal(typeof v, 'number', `frame ${JSON.stringify(frame)} lacks a numeric ${key}`);
  return v as number;
}

/** Highest seq this connection holds: its last `ev`, or the welcome's `after`. */
function lastDelivered(rec: ConnRec): number {
  const w = welcomeOf(rec);
  let last = w ? num(w, 'after') : 0;
  for (const f of inFrames(rec)) if (f.op === 'ev') last = num(f, 'seq');
  return last;
}

/** The connection's acknowledged position as the protocol defines it: max(after, accepted acks). */
function ackBase(rec: ConnRec): number {
  const w = welcomeOf(rec);
  if (!w) return 0;
  let delivered = num(w, 'after');
  let base = delivered;
  for (const e of rec.sink.log) {
    if (e.dir === 'in' && e.frame.op === 'ev') delivered = num(e.frame, 'seq');
    if (e.dir === 'out' && e.open && e.frame.op === 'ack' && e.frame.seq <= delivered && e.frame.seq > base) {
      base = e.frame.seq;
    }
  }
  return base;
}

function isOpen(rec: ConnRec): boolean {
  return welcomeOf(rec) !== undefined && rec.sink.closed === undefined;
}

// ── the harness ──────────────────────────────────────────────────────────────────────

/** Which commands a property draws from. */
interface Mix {
  /** Sockets at all (connect, ack, disconnect, slow, drain); without: server-side publishers only. */
  connect: boolean;
  /** Actors are dropped after 300 ms idle (sometimes), so a later publish meets a fresh actor. */
  idle: boolean;
  resume: boolean;
  /** Resume with a lastSeq beyond the stream head (refused with history_gone). */
  lastSeqBeyondHead: boolean;
  /** Time passes while a hello is being checked (the idle timer may fire meanwhile). */
  helloRace: boolean;
  bye: boolean;
  /** Live connections break the protocol (closed with 4000). */
  violations: boolean;
  end: boolean;
  /** Publishes arrive in the same tick as the terminal event, after it. */
  endTrailing: boolean;
}

class Harness {
  readonly limits: Limits;
  readonly mix: Mix;
  readonly clock = new ManualClock(START_MS);
  readonly engine: WatchedEngine;
  readonly registry: ActorRegistry;
  readonly handler: RealtimeHandler;
  readonly t: TestContext;

  readonly conns: ConnRec[] = [];
  readonly subs: SubRec[] = [];
  /** eventId at each seq (index seq − 1), as last read from the engine. */
  streamIds: string[] = [];
  epoch = '';
  /** Every eventId the test has used, for duplicate publishes. */
  readonly ids: string[] = [];
  readonly direct: { id: string; seq: number }[] = [];
  readonly directErrors: { id: string; code: string; afterEnd: boolean }[] = [];
  endSeq: number | undefined;
  readonly trace: string[] = [];
  #connN = 0;
  #idN = 0;

  constructor(t: TestContext, limits: Limits, mix: Mix) {
    this.t = t;
    this.limits = limits;
    this.mix = mix;
    this.engine = new WatchedEngine(this.clock, { historyMaxEvents: 100_000, historyTtlAfterEndS: 86_400 });
    const resumeTokens = new ResumeTokens('property-test-secret');
    this.registry = new ActorRegistry({
      engine: this.engine,
      clock: this.clock,
      metrics,
      logger: silentLogger(),
      issueResumeToken: (claims) => resumeTokens.issue(claims),
      limits: {
        maxInFlight: limits.maxInFlight,
        backpressureBytes: BACKPRESSURE_BYTES,
        slowConsumerMs: SLOW_CONSUMER_MS,
        replayBatch: limits.replayBatch,
        queueMax: 10_000,
        cacheEvents: limits.cacheEvents,
        resumeWindowMs: WINDOW_MS,
        heartbeatMs: 15_000,
        idleMs: limits.idleMs,
      },
    });
    this.handler = new RealtimeHandler({
      registry: this.registry,
      engine: this.engine,
      jwt: jwtStub,
      resumeTokens,
      clock: this.clock,
      metrics,
      logger: silentLogger(),
      helloTimeoutMs: 10_000,
      maxInFlight: limits.maxInFlight,
    });
  }

  async init(): Promise<void> {
    await this.engine.createSession({
      id: SESSION,
      tenantId: TENANT,
      ownerId: OWNER,
      createdAt: new Date(START_MS).toISOString(),
    });
    this.epoch = (await this.engine.head(SESSION)).epoch;
  }

  get head(): number {
    return this.streamIds.length;
  }

  note(line: string): void {
    this.trace.push(line);
  }

  fail(message: string): never {
    throw new assert.AssertionError({
      message: `${message}\n  limits: ${JSON.stringify(this.limits)}\n  trace of the failing run:\n    ${this.trace.join('\n    ')}`,
    });
  }

  check(ok: boolean, message: string): asserts ok {
    if (!ok) this.fail(message);
  }

  openConns(): ConnRec[] {
    return this.conns.filter(isOpen);
  }

  /** A new socket, opened and announced to the handler like the transport does. */
  open(kind: 'fresh' | 'resume', sub?: SubRec): ConnRec {
    const n = ++this.#connN;
    const sink = new FakeSink(this.clock);
    const conn = new Connection(n, jsonCodec, sink);
    sink.onClose = () => this.handler.closed(conn);
    const rec: ConnRec = { name: `c${n}`, conn, sink, kind, sub };
    this.conns.push(rec);
    this.handler.opened(conn);
    return rec;
  }

  send(rec: ConnRec, frame: OutFrame): void {
    rec.sink.log.push({ dir: 'out', frame, open: rec.sink.closed === undefined });
    if (rec.sink.closed) return; // a closed socket carries nothing
    const bytes = jsonCodec.encode(frame);
    const data = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
    this.handler.message(rec.conn, data);
  }

  /** Moves the clock and fires the (mocked) timers that fall due. */
  advance(ms: number): void {
    this.clock.advance(ms);
    this.t.mock.timers.tick(ms);
  }

  newId(): string {
    const id = `ev.${++this.#idN}`;
    this.ids.push(id);
    return id;
  }

  envelope(
    id: string,
    type = 'transcript.partial',
    payload: object = { segmentId: 'seg1', revision: 0, text: 'hi' },
  ): Envelope {
    return {
      eventId: id,
      sessionId: SESSION,
      ts: new Date(this.clock.now()).toISOString(),
      type,
      payload,
      schemaVersion: 1,
    } as Envelope;
  }

  publishDirect(id: string, event: Envelope, afterEnd = this.endSeq !== undefined): void {
    this.registry
      .get(SESSION)
      .publish(event)
      .then(
        (outcome) => this.direct.push({ id, seq: outcome.seq }),
        (err: unknown) => this.directErrors.push({ id, code: toGatewayError(err).code, afterEnd }),
      );
  }

  /** Lets setImmediate flushes, engine calls and catch-up reads run until nothing moves. */
  async settle(): Promise<void> {
    let quiet = 0;
    let last = -1;
    for (let round = 0; round < 200 && quiet < 3; round++) {
      await new Promise<void>((r) => setImmediate(r));
      let size = this.direct.length + this.directErrors.length;
      for (const c of this.conns) size += c.sink.log.length + (c.sink.closed ? 1 : 0);
      quiet = size === last ? quiet + 1 : 0;
      last = size;
    }
    // Checkpoint and release writes under way.
    await this.registry.peek(SESSION)?.settle();
  }

  /** Follows closes the model did not cause itself: the subscriber's live connection went away. */
  observe(): void {
    for (const sub of this.subs) {
      const cur = sub.current;
      if (!cur || !cur.sink.closed) continue;
      this.check(
        cur.sink.closed.code !== 4009,
        `${cur.name} (live connection of ${sub.id}) was closed with 4009 superseded, but no resume of it was processed`,
      );
      sub.current = undefined;
      sub.connected = false;
      sub.disconnectedAt = cur.sink.closed.at;
      if (
        cur.sink.closed.code === 1000 &&
        cur.sink.log.some((e) => e.dir === 'out' && e.open && e.frame.op === 'bye')
      ) {
        sub.ended = true;
      }
    }
  }

  // ── invariants ─────────────────────────────────────────────────────────────────────

  async checkAll(label: string): Promise<void> {
    const { engine, limits } = this;
    const w = (m: string) => `[after ${label}] ${m}`;
    this.check(
      engine.exceeded === undefined,
      w(`the actor kept calling the engine: ${String(engine.exceeded)}`),
    );
    engine.calls = 0;

    // Per session: seqs 1..head, contiguous, each bound to exactly one eventId; append-only.
    const read = await engine.read(SESSION, 0, 1_000_000);
    const head = read.headSeq;
    this.check(read.epoch === this.epoch, w(`epoch changed from ${this.epoch} to ${read.epoch}`));
    this.check(
      read.events.length === head,
      w(`engine holds ${read.events.length} events but head is ${head}`),
    );
    const seen = new Set<string>();
    read.events.forEach((e, i) => {
      this.check(e.seq === i + 1, w(`stored seqs are not contiguous from 1: index ${i} has seq ${e.seq}`));
      this.check(
        !seen.has(e.event.eventId),
        w(`eventId ${e.event.eventId} is stored twice (again at seq ${e.seq})`),
      );
      seen.add(e.event.eventId);
    });
    const ids = read.events.map((e) => e.event.eventId);
    this.check(head >= this.streamIds.length, w(`head went back from ${this.streamIds.length} to ${head}`));
    this.streamIds.forEach((id, i) =>
      this.check(
        ids[i] === id,
        w(`seq ${i + 1} was ${id} and is now ${String(ids[i])}: history was rewritten`),
      ),
    );
    this.streamIds = ids;

    // Every puback'd event is in the stream exactly once, at the seq the puback named.
    const named: { id: string; seq: number; via: string }[] = this.direct.map((d) => ({
      ...d,
      via: 'actor.publish',
    }));
    for (const rec of this.conns) {
      for (const f of inFrames(rec)) {
        if (f.op === 'puback') named.push({ id: String(f.id), seq: num(f, 'seq'), via: rec.name });
      }
    }
    for (const p of named) {
      this.check(
        ids[p.seq - 1] === p.id,
        w(
          `${p.via}: puback named seq ${p.seq} for ${p.id}, but the stream has ${ids[p.seq - 1] ?? 'nothing'} there`,
        ),
      );
    }
    for (const e of this.directErrors) {
      this.check(
        e.code === 'session_ended' && e.afterEnd,
        w(
          `actor.publish(${e.id}) failed with ${e.code}${e.afterEnd ? ' after the end' : ' before the session ended'}`,
        ),
      );
    }

    // A stream that ended has nothing after its terminal event.
    const h = await engine.head(SESSION);
    if (this.endSeq !== undefined) {
      this.check(
        h.endedAt === this.endSeq,
        w(`stream should have ended at ${this.endSeq}; engine says ${String(h.endedAt)}`),
      );
      this.check(
        head === this.endSeq,
        w(`events were appended after the terminal event at seq ${this.endSeq} (head ${head})`),
      );
    }

    // Per connection.
    for (const rec of this.conns) this.#checkConn(rec, w, head);

    // Per subscriber.
    const now = this.clock.now();
    for (const sub of this.subs) {
      const open = sub.conns.filter(isOpen);
      this.check(
        open.length <= 1,
        w(`${sub.id} has ${open.length} live connections: ${open.map((c) => c.name).join(', ')}`),
      );
      this.check(
        open.length === 0 || open[0] === sub.current,
        w(
          `${sub.id}: ${String(open[0]?.name)} is live but the last resume processed was ${sub.current?.name ?? 'none'}`,
        ),
      );
      const record = await engine.getSubscriber(SESSION, sub.id);
      const resumable = !sub.ended && (sub.connected || now - sub.disconnectedAt < WINDOW_MS);
      if (!record) {
        this.check(!resumable, w(`${sub.id} vanished from the engine while it is still resumable`));
        continue;
      }
      this.check(!sub.ended, w(`${sub.id} said bye but the engine still holds it`));
      const maxDelivered = Math.max(...sub.conns.filter((c) => welcomeOf(c)).map(lastDelivered));
      this.check(
        record.checkpoint >= sub.lastCheckpoint,
        w(`${sub.id}: checkpoint went back from ${sub.lastCheckpoint} to ${record.checkpoint}`),
      );
      // Tighter: the checkpoint is what the client acknowledged (an accepted ack, or the
      // position it claimed: its fresh `after` or a resume's lastSeq), never merely sent.
      const maxClaimed = Math.max(
        sub.maxAcceptedAck,
        ...sub.conns.filter((c) => welcomeOf(c)).map((c) => num(welcomeOf(c)!, 'after')),
      );
      this.check(
        record.checkpoint <= maxClaimed,
        w(
          `${sub.id}: checkpoint ${record.checkpoint} is above everything the client acknowledged (${maxClaimed})`,
        ),
      );
      this.check(
        record.checkpoint <= maxDelivered,
        w(`${sub.id}: checkpoint ${record.checkpoint} is above everything delivered to it (${maxDelivered})`),
      );
      this.check(
        record.checkpoint >= sub.maxAcceptedAck,
        w(
          `${sub.id}: an ack of ${sub.maxAcceptedAck} was accepted on its live connection but the checkpoint is ${record.checkpoint}`,
        ),
      );
      sub.lastCheckpoint = record.checkpoint;
      if (sub.connected) {
        this.check(
          record.connected,
          w(`${sub.id} has a live connection but the engine marks it disconnected`),
        );
      } else {
        this.check(
          !record.connected,
          w(
            `${sub.id}'s last connection closed at +${sub.disconnectedAt - START_MS}ms, but the engine still marks it connected (generation ${record.generation}), so its resume window never starts`,
          ),
        );
      }
    }

    // Liveness: a live connection with a writable socket has everything it may have.
    for (const rec of this.openConns()) {
      if (rec.sink.buffered > BACKPRESSURE_BYTES) continue;
      const delivered = lastDelivered(rec);
      const base = ackBase(rec);
      const want = Math.max(delivered, Math.min(head, base + limits.maxInFlight));
      this.check(
        delivered === want,
        w(
          `${rec.name} stalled: holds ${delivered}, acked ${base}, head ${head}, maxInFlight ${limits.maxInFlight}: should hold ${want}`,
        ),
      );
      if (delivered >= head) {
        this.check(
          inFrames(rec).some((f) => f.op === 'replayed'),
          w(`${rec.name} is caught up at ${head} but got no replayed`),
        );
      }
      if (this.endSeq !== undefined) {
        this.check(
          delivered < this.endSeq,
          w(`${rec.name} holds the whole ended stream (${this.endSeq}) but got no eos / close`),
        );
      }
    }
  }

  #checkConn(rec: ConnRec, w: (m: string) => string, head: number): void {
    const { sink } = rec;
    const maxInFlight = this.limits.maxInFlight;
    this.check(sink.problems.length === 0, w(`${rec.name}: ${sink.problems.join('; ')}`));
    this.check(
      sink.afterClose.length === 0,
      w(
        `${rec.name} received frames after it was closed (${String(sink.closed?.code)}): ${JSON.stringify(sink.afterClose.map((f) => [f.op, f.seq]))}`,
      ),
    );
    const frames = inFrames(rec);
    const welcome = welcomeOf(rec);
    if (!welcome) {
      this.check(frames.length === 0, w(`${rec.name} received ${String(frames[0]?.op)} before any welcome`));
      return;
    }
    if (sink.closed?.by === 'gateway') {
      const { code } = sink.closed;
      const byeSent = sink.log.some((e) => e.dir === 'out' && e.open && e.frame.op === 'bye');
      const eos = frames.some((f) => f.op === 'eos');
      this.check(
        code === 4009 ||
          (code === 1000 && (byeSent || eos)) ||
          code === 4101 ||
          (code === 4000 && rec.violated === true),
        w(`${rec.name} was closed with ${code} (${sink.closed.reason}) for no reason the model knows`),
      );
      if (code === 4101) {
        this.check(
          sink.closed.buffered > BACKPRESSURE_BYTES,
          w(`${rec.name} closed 4101 slow_consumer with an empty socket buffer`),
        );
      }
    }
    let last = num(welcome, 'after');
    let base = last;
    let replayed = false;
    let eos = false;
    let aheadAcks = 0;
    let ackAheadErrors = 0;
    let pubs = 0;
    let replies = 0;
    let index = 0;
    for (const e of sink.log) {
      if (e.dir === 'out') {
        if (!e.open) continue;
        if (e.frame.op === 'ack') {
          if (e.frame.seq > last) aheadAcks++;
          else if (e.frame.seq > base) base = e.frame.seq;
        }
        if (e.frame.op === 'pub') pubs++;
        continue;
      }
      const f = e.frame;
      index++;
      if (index === 1) continue; // the welcome
      switch (f.op) {
        case 'welcome':
          this.fail(w(`${rec.name} received a second welcome`));
          break;
        case 'ev': {
          const seq = num(f, 'seq');
          this.check(!eos, w(`${rec.name} received ev ${seq} after eos`));
          this.check(
            seq === last + 1,
            w(`${rec.name} received ev ${seq} after ${last} (welcome.after ${String(welcome.after)})`),
          );
          this.check(
            seq - base <= maxInFlight,
            w(
              `${rec.name} has ${seq - base} events in flight (ev ${seq}, acked ${base}) > maxInFlight ${maxInFlight}`,
            ),
          );
          const ev = f.event as { eventId?: unknown } | undefined;
          this.check(
            seq <= head && ev?.eventId === this.streamIds[seq - 1],
            w(
              `${rec.name} received ev ${seq} = ${String(ev?.eventId)} but the stream has ${this.streamIds[seq - 1] ?? 'nothing'} there`,
            ),
          );
          last = seq;
          break;
        }
        case 'replayed': {
          const seq = num(f, 'seq');
          this.check(!replayed, w(`${rec.name} received a second replayed (${seq})`));
          this.check(
            seq === last,
            w(`${rec.name}: replayed ${seq} but the last ev delivered before it was ${last}`),
          );
          this.check(
            seq >= num(welcome, 'headSeq'),
            w(`${rec.name}: replayed ${seq} before reaching welcome.headSeq ${String(welcome.headSeq)}`),
          );
          replayed = true;
          break;
        }
        case 'eos': {
          const seq = num(f, 'seq');
          this.check(!eos, w(`${rec.name} received a second eos`));
          this.check(
            seq === this.endSeq,
            w(`${rec.name}: eos ${seq} but the stream ended at ${String(this.endSeq)}`),
          );
          this.check(seq === last, w(`${rec.name}: eos ${seq} before it received ev ${seq} (holds ${last})`));
          eos = true;
          break;
        }
        case 'error':
          if (f.code === 'ack_ahead') ackAheadErrors++;
          else this.fail(w(`${rec.name} received an unexpected error ${JSON.stringify(f)}`));
          break;
        case 'puback':
          replies++;
          break;
        case 'nack':
          // A valid event is only ever refused for back-pressure or because the stream ended.
          this.check(
            f.code === 'rate_limited' || (f.code === 'session_ended' && this.endSeq !== undefined),
            w(`${rec.name} received ${JSON.stringify(f)}`),
          );
          replies++;
          break;
        default:
          this.fail(w(`${rec.name} received an unexpected frame ${JSON.stringify(f)}`));
      }
    }
    if (eos) this.check(sink.closed?.code === 1000, w(`${rec.name} got eos but was not closed with 1000`));
    this.check(
      ackAheadErrors === aheadAcks,
      w(`${rec.name} sent ${aheadAcks} acks above what it holds but got ${ackAheadErrors} ack_ahead errors`),
    );
    if (!sink.closed) {
      this.check(replies === pubs, w(`${rec.name} sent ${pubs} pubs and got ${replies} puback/nack`));
    } else {
      this.check(replies <= pubs, w(`${rec.name} sent ${pubs} pubs and got ${replies} puback/nack`));
    }
  }

  tally(s: Stats): void {
    s.runs++;
    s.commands += this.trace.length;
    s.events += this.head;
    for (const rec of this.conns) {
      const frames = inFrames(rec);
      s.evs += frames.filter((f) => f.op === 'ev').length;
      s.pubacks += frames.filter((f) => f.op === 'puback').length;
      s.ackAhead += frames.filter((f) => f.op === 'error').length;
      if (frames[0]?.op === 'welcome') s.welcomes[rec.kind]++;
      const c = rec.sink.closed;
      if (c) {
        const key = c.by === 'client' ? 'client' : String(c.code);
        s.closes[key] = (s.closes[key] ?? 0) + 1;
      }
    }
  }

  async teardown(): Promise<void> {
    await this.registry.stopAll(1001, 'going_away');
    await this.engine.close();
  }
}

// ── commands ─────────────────────────────────────────────────────────────────────────

type Model = Record<string, never>;
type Cmd = fc.AsyncCommand<Model, Harness>;

abstract class Base implements Cmd {
  check(): boolean {
    return true;
  }
  abstract toString(): string;
  abstract act(h: Harness): Promise<string | undefined>;
  async run(_m: Model, h: Harness): Promise<void> {
    h.engine.calls = 0;
    const what = await this.act(h);
    h.note(`${this.toString()}${what ? `  → ${what}` : ''}`);
    h.observe();
    await h.checkAll(this.toString());
  }
}

/** `back`: head − k (at least 0); `beyond`: head + k (refused with history_gone). */
type AfterSpec =
  { kind: 'zero' } | { kind: 'latest' } | { kind: 'back'; k: number } | { kind: 'beyond'; k: number };

class ConnectFresh extends Base {
  constructor(
    readonly after: AfterSpec,
    readonly abandon: boolean,
    /** Time that passes (timers fire) while the hello is being checked. */
    readonly raceMs = 0,
  ) {
    super();
  }
  toString(): string {
    const a = this.after;
    const after =
      a.kind === 'back'
        ? `head-${a.k}`
        : a.kind === 'beyond'
          ? `head+${a.k}`
          : a.kind === 'zero'
            ? '0'
            : 'latest';
    return `connect(after=${after}${this.abandon ? ', abandon' : ''}${this.raceMs ? `, +${this.raceMs}ms during hello` : ''})`;
  }
  async act(h: Harness): Promise<string> {
    const head = h.head;
    const a = this.after;
    const after =
      a.kind === 'back'
        ? Math.max(0, head - a.k)
        : a.kind === 'beyond'
          ? head + a.k
          : a.kind === 'zero'
            ? 0
            : ('latest' as const);
    const rec = h.open('fresh');
    h.send(rec, { op: 'hello', sessionId: SESSION, token: AGENT_TOKEN, after });
    if (this.abandon) rec.sink.clientClose();
    if (this.raceMs > 0) h.advance(this.raceMs);
    await h.settle();
    const frames = inFrames(rec);
    if (this.abandon) {
      h.check(
        frames.length === 0,
        `${rec.name}: abandoned during hello but received ${String(frames[0]?.op)}`,
      );
      return `${rec.name} abandoned`;
    }
    const start = after === 'latest' ? head : after;
    if (start > head) {
      h.check(
        frames.length === 0 && rec.sink.closed?.code === 4011,
        `${rec.name}: hello after=${start} > head ${head} should be refused with 4011, got ${frames[0]?.op ?? `close ${String(rec.sink.closed?.code)}`}`,
      );
      return `${rec.name} refused ${rec.sink.closed?.code}`;
    }
    const w = welcomeOf(rec);
    if (!w)
      return h.fail(
        `${rec.name}: fresh hello after=${start} got no welcome (closed ${String(rec.sink.closed?.code)})`,
      );
    h.check(w.resumed === false, `${rec.name}: fresh welcome says resumed`);
    h.check(num(w, 'after') === start, `${rec.name}: welcome.after ${String(w.after)}, expected ${start}`);
    h.check(
      num(w, 'headSeq') === head,
      `${rec.name}: welcome.headSeq ${String(w.headSeq)}, expected ${head}`,
    );
    h.check(w.epoch === h.epoch, `${rec.name}: welcome.epoch ${String(w.epoch)}`);
    h.check(num(w, 'maxInFlight') === h.limits.maxInFlight, `${rec.name}: welcome.maxInFlight`);
    const sub: SubRec = {
      id: String(w.subscriberId),
      token: String(w.resumeToken),
      conns: [rec],
      current: rec,
      connected: true,
      disconnectedAt: 0,
      ended: false,
      maxAcceptedAck: start,
      lastCheckpoint: start,
    };
    h.check(!h.subs.some((s) => s.id === sub.id), `${rec.name}: subscriber id ${sub.id} reused`);
    rec.sub = sub;
    h.subs.push(sub);
    return `${rec.name} = ${sub.id}, after ${start}`;
  }
}

/** `held`: the highest seq the subscriber's last connection holds; `beyond`: head + d. */
type LastSeqSpec =
  | { kind: 'none' }
  | { kind: 'held' }
  | { kind: 'behind'; d: number }
  | { kind: 'abs'; k: number }
  | { kind: 'beyond'; d: number };

interface Attempt {
  lastSeq: LastSeqSpec;
  epoch: 'none' | 'current' | 'wrong';
  abandon: boolean;
}

function attemptString(a: Attempt): string {
  const l = a.lastSeq;
  const parts = [
    l.kind === 'none'
      ? 'lastSeq=-'
      : l.kind === 'held'
        ? 'lastSeq=held'
        : l.kind === 'behind'
          ? `lastSeq=held-${l.d}`
          : l.kind === 'beyond'
            ? `lastSeq=head+${l.d}`
            : `lastSeq=${l.k}`,
  ];
  if (a.epoch !== 'none') parts.push(`epoch=${a.epoch}`);
  if (a.abandon) parts.push('abandon');
  return parts.join(' ');
}

class Resume extends Base {
  constructor(
    readonly sub: number,
    readonly attempts: Attempt[],
  ) {
    super();
  }
  toString(): string {
    return `resume(s${this.sub}, [${this.attempts.map(attemptString).join(' | ')}])`;
  }
  async act(h: Harness): Promise<string | undefined> {
    if (h.subs.length === 0) return undefined;
    const sub = h.subs[this.sub % h.subs.length]!;
    const head = h.head;
    const checkpoint = (await h.engine.getSubscriber(SESSION, sub.id))?.checkpoint;
    const welcomed = sub.conns.filter((c) => welcomeOf(c));
    const held = lastDelivered(welcomed[welcomed.length - 1]!);
    const sent = this.attempts.map((a) => {
      const l = a.lastSeq;
      let lastSeq =
        l.kind === 'none'
          ? undefined
          : l.kind === 'held'
            ? held
            : l.kind === 'behind'
              ? Math.max(0, held - l.d)
              : l.kind === 'beyond'
                ? head + l.d
                : l.k;
      if (lastSeq !== undefined && !h.mix.lastSeqBeyondHead) lastSeq = Math.min(lastSeq, head);
      const resume: ResumeSpec = { token: sub.token };
      if (lastSeq !== undefined) resume.lastSeq = lastSeq;
      if (a.epoch !== 'none') resume.epoch = a.epoch === 'current' ? h.epoch : 'not-the-epoch';
      const rec = h.open('resume', sub);
      sub.conns.push(rec);
      h.send(rec, { op: 'hello', sessionId: SESSION, resume });
      if (a.abandon) rec.sink.clientClose();
      return { a, rec, lastSeq };
    });
    await h.settle();

    // Replay the attempts through the model, in the order the gateway processed them.
    const now = h.clock.now();
    // A resume's lastSeq is stored with its takeover (the client holds everything up to
    // it): a later attempt of the same burst starts from there.
    let cp = checkpoint;
    const outcomes: string[] = [];
    for (const { a, rec, lastSeq } of sent) {
      const frames = inFrames(rec);
      const closed = rec.sink.closed;
      let expect: 'ok' | 4010 | 4011;
      if (a.epoch === 'wrong') expect = 4011;
      else if (sub.ended) expect = 4010;
      else if (!sub.connected && now - sub.disconnectedAt > WINDOW_MS) expect = 4010;
      else if (lastSeq !== undefined && lastSeq > head) expect = 4011;
      else expect = 'ok';
      const why = `${rec.name} resume of ${sub.id} [${attemptString(a)} → ${String(lastSeq)}] (ended ${sub.ended}, connected ${sub.connected}, closed ${sub.connected ? '-' : `${now - sub.disconnectedAt}ms ago`}, head ${head})`;
      if (a.abandon) {
        h.check(frames.length === 0, `${why}: abandoned during hello but received ${String(frames[0]?.op)}`);
      } else if (expect !== 'ok') {
        h.check(
          frames.length === 0 && closed?.code === expect,
          `${why}: should be refused with ${expect}, got ${frames[0]?.op ?? `close ${String(closed?.code)}`}`,
        );
      } else {
        const w = welcomeOf(rec);
        if (!w)
          return h.fail(
            `${why}: should be welcomed, got close ${String(closed?.code)} ${closed?.reason ?? ''}`,
          );
        h.check(w.resumed === true && w.subscriberId === sub.id, `${why}: welcome ${JSON.stringify(w)}`);
        const start = lastSeq ?? cp;
        h.check(
          num(w, 'after') === start,
          `${why}: welcome.after ${String(w.after)}, expected ${String(start)}`,
        );
        h.check(num(w, 'headSeq') === head, `${why}: welcome.headSeq ${String(w.headSeq)}, expected ${head}`);
      }
      outcomes.push(`${rec.name}:${a.abandon ? 'abandoned+' : ''}${expect === 'ok' ? 'welcome' : expect}`);
      if (expect !== 'ok') continue;
      // The takeover was processed: the previous live connection is superseded.
      const prev = sub.current;
      if (prev) {
        const pc = prev.sink.closed;
        const byEos = inFrames(prev).some((f) => f.op === 'eos');
        h.check(
          pc !== undefined && (pc.code === 4009 || (byEos && pc.code === 1000)),
          `${why}: the previous live connection ${prev.name} should be closed with 4009, got ${pc ? String(pc.code) : 'still open'}`,
        );
      }
      if (a.abandon) {
        sub.current = undefined;
        sub.connected = false;
        sub.disconnectedAt = now;
      } else {
        sub.current = rec;
        sub.connected = true;
        if (cp !== undefined) cp = Math.max(cp, num(welcomeOf(rec)!, 'after'));
      }
    }
    return outcomes.join(', ');
  }
}

interface PubItem {
  src: number | 'direct';
  dup: number | null;
}

class Publish extends Base {
  constructor(readonly items: PubItem[]) {
    super();
  }
  toString(): string {
    return `publish(${this.items.map((i) => `${i.src === 'direct' ? 'direct' : `c${i.src}`}:${i.dup === null ? 'new' : `dup${i.dup}`}`).join(', ')})`;
  }
  async act(h: Harness): Promise<string> {
    const open = h.openConns();
    const done: string[] = [];
    for (const item of this.items) {
      const id = item.dup !== null && h.ids.length > 0 ? h.ids[item.dup % h.ids.length]! : h.newId();
      if (item.src === 'direct' || open.length === 0) {
        h.publishDirect(id, h.envelope(id));
        done.push(`direct:${id}`);
      } else {
        const rec = open[item.src % open.length]!;
        h.send(rec, {
          op: 'pub',
          id,
          type: 'transcript.partial',
          payload: { segmentId: 'seg1', revision: 0, text: 'hi' },
        });
        done.push(`${rec.name}:${id}`);
      }
    }
    await h.settle();
    return done.join(', ');
  }
}

type AckMode = 'behind' | 'equal' | 'ahead';

class Ack extends Base {
  constructor(
    readonly conn: number,
    readonly mode: AckMode,
    readonly d: number,
  ) {
    super();
  }
  toString(): string {
    return `ack(c${this.conn}, ${this.mode === 'equal' ? 'held' : this.mode === 'behind' ? `held-${this.d}` : `held+${this.d}`})`;
  }
  async act(h: Harness): Promise<string | undefined> {
    const open = h.openConns();
    if (open.length === 0) return undefined;
    const rec = open[this.conn % open.length]!;
    const held = lastDelivered(rec);
    const seq =
      this.mode === 'equal' ? held : this.mode === 'behind' ? Math.max(0, held - this.d) : held + this.d;
    const base = ackBase(rec);
    h.send(rec, { op: 'ack', seq });
    if (seq <= held && seq > base && rec.sub && rec.sub.current === rec) {
      rec.sub.maxAcceptedAck = Math.max(rec.sub.maxAcceptedAck, seq);
    }
    await h.settle();
    return `${rec.name} ack ${seq} (holds ${held}, acked ${base})`;
  }
}

class Disconnect extends Base {
  constructor(readonly conn: number) {
    super();
  }
  toString(): string {
    return `disconnect(c${this.conn})`;
  }
  async act(h: Harness): Promise<string | undefined> {
    const open = h.openConns();
    if (open.length === 0) return undefined;
    const rec = open[this.conn % open.length]!;
    rec.sink.clientClose();
    await h.settle();
    return rec.name;
  }
}

class Bye extends Base {
  constructor(readonly conn: number) {
    super();
  }
  toString(): string {
    return `bye(c${this.conn})`;
  }
  async act(h: Harness): Promise<string | undefined> {
    const open = h.openConns();
    if (open.length === 0) return undefined;
    const rec = open[this.conn % open.length]!;
    h.send(rec, { op: 'bye' });
    await h.settle();
    h.check(
      rec.sink.closed?.code === 1000,
      `${rec.name}: bye should close with 1000, got ${String(rec.sink.closed?.code)}`,
    );
    return rec.name;
  }
}

type ViolationKind = 'hello-again' | 'bad-ack' | 'unknown-op';

/** A live connection breaks the protocol: closed with 4000, and its subscriber released. */
class Violate extends Base {
  constructor(
    readonly conn: number,
    readonly kind: ViolationKind,
  ) {
    super();
  }
  toString(): string {
    return `violate(c${this.conn}, ${this.kind})`;
  }
  async act(h: Harness): Promise<string | undefined> {
    const open = h.openConns();
    if (open.length === 0) return undefined;
    const rec = open[this.conn % open.length]!;
    rec.violated = true;
    h.send(
      rec,
      this.kind === 'hello-again'
        ? { op: 'hello', sessionId: SESSION, token: AGENT_TOKEN }
        : this.kind === 'bad-ack'
          ? { op: 'ack', seq: -1 }
          : { op: 'frobnicate' },
    );
    await h.settle();
    h.check(
      rec.sink.closed?.code === 4000,
      `${rec.name}: a protocol violation should close with 4000, got ${String(rec.sink.closed?.code)}`,
    );
    return rec.name;
  }
}

class Advance extends Base {
  constructor(readonly ms: number) {
    super();
  }
  toString(): string {
    return `advance(${this.ms}ms)`;
  }
  async act(h: Harness): Promise<string> {
    h.advance(this.ms);
    await h.settle();
    return `now +${h.clock.now() - START_MS}ms`;
  }
}

class Slow extends Base {
  constructor(readonly conn: number) {
    super();
  }
  toString(): string {
    return `slow(c${this.conn})`;
  }
  async act(h: Harness): Promise<string | undefined> {
    const open = h.openConns();
    if (open.length === 0) return undefined;
    const rec = open[this.conn % open.length]!;
    rec.sink.buffered = SLOW_BUFFERED;
    await h.settle();
    return rec.name;
  }
}

class Drain extends Base {
  constructor(readonly conn: number) {
    super();
  }
  toString(): string {
    return `drain(c${this.conn})`;
  }
  async act(h: Harness): Promise<string | undefined> {
    const slow = h.openConns().filter((c) => c.sink.buffered > 0);
    if (slow.length === 0) return undefined;
    const rec = slow[this.conn % slow.length]!;
    rec.sink.buffered = 0;
    h.handler.drained(rec.conn);
    await h.settle();
    return rec.name;
  }
}

/** A server-side producer publishes the terminal `call.ended`. */
class End extends Base {
  /** `trailing`: server-side publishes in the same tick, right after the terminal event. */
  constructor(readonly trailing = 0) {
    super();
  }
  toString(): string {
    return this.trailing ? `end(+${this.trailing} publishes in the same tick)` : 'end()';
  }
  async act(h: Harness): Promise<string> {
    const id = h.newId();
    const before = h.direct.length;
    h.publishDirect(id, h.envelope(id, 'call.ended', { reason: 'done' }));
    // Nothing follows a terminal event: these must be refused with session_ended.
    for (let i = 0; i < this.trailing; i++) {
      const next = h.newId();
      h.publishDirect(next, h.envelope(next), true);
    }
    await h.settle();
    const outcome = h.direct.slice(before).find((d) => d.id === id);
    if (outcome && h.endSeq === undefined) h.endSeq = outcome.seq;
    h.check(
      outcome !== undefined || h.endSeq !== undefined,
      `call.ended ${id} was neither stored nor refused as session_ended: ${JSON.stringify(h.directErrors)}`,
    );
    return outcome ? `ended at ${outcome.seq}` : 'refused (already ended)';
  }
}

// ── arbitraries ──────────────────────────────────────────────────────────────────────

const connIdx = fc.nat(7);

function commandsArb(mix: Mix): fc.Arbitrary<Iterable<Cmd>> {
  const afterArb: fc.Arbitrary<AfterSpec> = fc.oneof(
    { arbitrary: fc.constant<AfterSpec>({ kind: 'zero' }), weight: 3 },
    { arbitrary: fc.constant<AfterSpec>({ kind: 'latest' }), weight: 3 },
    { arbitrary: fc.nat(12).map((k): AfterSpec => ({ kind: 'back', k })), weight: 3 },
    { arbitrary: fc.integer({ min: 1, max: 3 }).map((k): AfterSpec => ({ kind: 'beyond', k })), weight: 1 },
  );
  const lastSeqArb: fc.Arbitrary<LastSeqSpec> = fc.oneof(
    { arbitrary: fc.constant<LastSeqSpec>({ kind: 'none' }), weight: 3 },
    { arbitrary: fc.constant<LastSeqSpec>({ kind: 'held' }), weight: 3 },
    { arbitrary: fc.integer({ min: 1, max: 4 }).map((d): LastSeqSpec => ({ kind: 'behind', d })), weight: 2 },
    { arbitrary: fc.nat(12).map((k): LastSeqSpec => ({ kind: 'abs', k })), weight: 1 },
    { arbitrary: fc.integer({ min: 1, max: 3 }).map((d): LastSeqSpec => ({ kind: 'beyond', d })), weight: 1 },
  );
  const attemptsArb: fc.Arbitrary<Attempt[]> = fc.array(
    fc.record({
      lastSeq: lastSeqArb,
      epoch: fc.constantFrom<Attempt['epoch']>('none', 'none', 'none', 'current', 'wrong'),
      abandon: fc.nat(9).map((n) => n === 9),
    }),
    { minLength: 1, maxLength: 3 },
  );
  const pubItem: fc.Arbitrary<PubItem> = fc.record({
    src: mix.connect ? fc.oneof(connIdx, fc.constant<'direct'>('direct')) : fc.constant<'direct'>('direct'),
    dup: fc.oneof({ arbitrary: fc.constant(null), weight: 5 }, { arbitrary: fc.nat(20), weight: 1 }),
  });
  const publish = fc.array(pubItem, { minLength: 1, maxLength: 6 }).map((items) => new Publish(items));
  const arbs: fc.Arbitrary<Cmd>[] = [
    publish,
    publish,
    publish,
    fc.constantFrom(...ADVANCE_STEPS).map((ms) => new Advance(ms)),
  ];
  if (mix.connect) {
    const ack = fc
      .record({
        conn: connIdx,
        mode: fc.constantFrom<AckMode>('behind', 'equal', 'equal', 'ahead'),
        d: fc.integer({ min: 1, max: 3 }),
      })
      .map((r) => new Ack(r.conn, r.mode, r.d));
    arbs.push(
      fc
        .record({
          after: afterArb,
          abandon: fc.nat(9).map((n) => n === 9),
          raceMs: mix.helloRace ? fc.constantFrom(0, 2, 300, 600) : fc.constant(0),
        })
        .map((r) => new ConnectFresh(r.after, r.abandon, r.raceMs)),
      ack,
      ack,
      connIdx.map((c) => new Disconnect(c)),
      connIdx.map((c) => new Slow(c)),
      connIdx.map((c) => new Drain(c)),
    );
  }
  if (mix.resume) {
    const resume = fc
      .record({ sub: fc.nat(7), attempts: attemptsArb })
      .map((r) => new Resume(r.sub, r.attempts));
    arbs.push(resume, resume);
  }
  if (mix.bye) arbs.push(connIdx.map((c) => new Bye(c)));
  if (mix.violations) {
    arbs.push(
      fc
        .record({
          conn: connIdx,
          kind: fc.constantFrom<ViolationKind>('hello-again', 'bad-ack', 'unknown-op'),
        })
        .map((r) => new Violate(r.conn, r.kind)),
    );
  }
  if (mix.end) {
    arbs.push(mix.endTrailing ? fc.nat(2).map((n) => new End(n)) : fc.constant(new End()));
  }
  return fc.commands(arbs, { maxCommands: 40, size: 'medium' });
}

// ── the properties ───────────────────────────────────────────────────────────────────

/** What the runs exercised, printed as a diagnostic so a reader can see the coverage. */
interface Stats {
  runs: number;
  commands: number;
  events: number;
  evs: number;
  pubacks: number;
  ackAhead: number;
  welcomes: { fresh: number; resume: number };
  closes: Record<string, number>;
}
const newStats = (): Stats => ({
  runs: 0,
  commands: 0,
  events: 0,
  evs: 0,
  pubacks: 0,
  ackAhead: 0,
  welcomes: { fresh: 0, resume: 0 },
  closes: {},
});
let stats = newStats();
const RUNS = Number(process.env.FC_RUNS ?? 0) || undefined;

function params(numRuns: number): fc.Parameters<[Limits, Iterable<Cmd>]> {
  const p: fc.Parameters<[Limits, Iterable<Cmd>]> = { numRuns: RUNS ?? numRuns, includeErrorInReport: true };
  if (process.env.FC_SEED !== undefined) p.seed = Number(process.env.FC_SEED);
  return p;
}

async function property(t: TestContext, mix: Mix, numRuns: number): Promise<void> {
  stats = newStats();
  t.mock.timers.enable({ apis: ['setTimeout'] });
  await fc.assert(
    fc.asyncProperty(limitsArb(mix), commandsArb(mix), async (limits, cmds) => {
      // Timers of an earlier run must not fire into this one.
      t.mock.timers.reset();
      t.mock.timers.enable({ apis: ['setTimeout'] });
      const h = new Harness(t, limits, mix);
      await h.init();
      try {
        await fc.asyncModelRun(() => ({ model: {}, real: h }), cmds);
        h.tally(stats);
        await h.checkAll('the last command');
      } finally {
        await h.teardown();
      }
    }),
    params(numRuns),
  );
  t.diagnostic(JSON.stringify(stats));
  stats = newStats();
}

const base: Mix = {
  connect: true,
  idle: true,
  resume: false,
  lastSeqBeyondHead: false,
  helloRace: false,
  bye: false,
  violations: false,
  end: false,
  endTrailing: false,
};

test('session actor vs model: fresh subscribers, publishes (batched, duplicate ids), acks, disconnects, slow sockets, idle actors', async (t) => {
  await property(t, base, 200);
});

test('session actor vs model: + resumes (back to back, abandoned, lastSeq, epoch), bye, resume window', async (t) => {
  await property(t, { ...base, resume: true, bye: true }, 200);
});

test('session actor vs model: + resumes with a lastSeq beyond the head (refused with 4011)', async (t) => {
  await property(t, { ...base, resume: true, bye: true, lastSeqBeyondHead: true }, 200);
});

test('session actor vs model: the session ends (call.ended → eos) while subscribers are connected', async (t) => {
  await property(t, { ...base, idle: false, resume: true, bye: true, end: true }, 200);
});

test('session actor vs model: the session ends while server-side producers publish in the same tick', async (t) => {
  await property(t, { ...base, connect: false, idle: false, end: true, endTrailing: true }, 100);
});

test('session actor vs model: the session ends, its actor goes idle, server-side producers publish later', async (t) => {
  await property(t, { ...base, connect: false, end: true }, 100);
});

test('session actor vs model: time passes while a hello is being checked', async (t) => {
  await property(t, { ...base, helloRace: true }, 200);
});

test('session actor vs model: live connections break the protocol (closed with 4000)', async (t) => {
  await property(t, { ...base, resume: true, bye: true, violations: true }, 200);
});
