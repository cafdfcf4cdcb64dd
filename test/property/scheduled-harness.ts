/**
 * A harness for exploring interleavings of concurrent operations on ONE session's actor
 * with fast-check's scheduler (`fc.scheduler()`), for the resume / ack / checkpoint logic.
 *
 * The gateway is driven the way the transport drives it: JSON frames into a
 * `RealtimeHandler`, over `Connection`s whose `Sink` is an in-memory fake that records
 * every frame. Under it sits `ScheduledEngine`, a `MemoryEngine` whose every call the
 * actor makes (append, read, head, createSubscriber, getSubscriber, takeover, checkpoint,
 * release, ...) only reaches the store when the scheduler says so: the call's effect is a
 * scheduled task, and with `split` its reply is a second, separate task (so the engine can
 * have applied a takeover whose answer is still on its way while other calls land). The
 * process's `setImmediate` (the actor's publish batching, the memory engine's notices) is
 * scheduled too, and every client action (a hello, an ack, a pub, a close, a server-side
 * publish) is a scheduled task. `setTimeout` is replaced, for the length of a run, by one
 * that never fires (cheaper than node:test's mock, which would have to be reset for each
 * of the 10 000 runs), and the clock is a ManualClock that never moves. So a run is fully
 * determined by the scenario and the scheduler's choices: a seed and path replay it. Runs
 * share one engine (each has its own session), one Metrics and one logger.
 *
 * The effects are applied in whatever order the scheduler picks, which is more than one
 * Redis connection allows (it applies one node's commands in the order they were sent):
 * this is on purpose, it stands for the other nodes and retries of a real deployment, and
 * every check below holds for any order.
 *
 * Checks: at every engine effect (checkpoint monotone, never above what was delivered,
 * never moved by a superseded generation, only to a position the client acknowledged on
 * that generation's connection; takeover generations +1), and after the run quiesces
 * (stream contiguous with unique eventIds; every puback at its seq; per connection:
 * welcome first, evs strictly +1 from welcome.after, in-flight ≤ maxInFlight, replayed
 * once, ack_ahead exactly for acks above what the connection held, nothing after close,
 * only 4009 closes; per subscriber: the connection whose resume was processed last is the
 * only live one, the checkpoint is exactly the max of the legitimate writes that landed
 * while their generation was current, and nothing acked on the live generation is lost;
 * liveness: a live connection holds everything flow control allows).
 */
import assert from 'node:assert/strict';
import { setImmediate as realSetImmediate } from 'node:timers';
import type fc from 'fast-check';
import type { JwtVerifier, Principal } from '../../src/auth/jwt.ts';
import { ResumeTokens } from '../../src/auth/resume-token.ts';
import { jsonCodec } from '../../src/codec/json-codec.ts';
import type {
  AppendResult,
  NewSubscriber,
  ReadResult,
  SessionListener,
  SessionNotice,
  StreamHead,
  SubscriberRecord,
  Watch,
} from '../../src/engine/engine.ts';
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

// ── scenarios ────────────────────────────────────────────────────────────────────────

export interface Limits {
  maxInFlight: number;
  cacheEvents: number;
  replayBatch: number;
}

/**
 * Which seq an ack names, decided when the ack is sent: `held` the highest seq the
 * connection holds, `behind` held − d, `ahead` held + d (→ ack_ahead), `stale` below the
 * connection's acknowledged position, `repeat` the connection's previous ack again, `zero` 0.
 */
export type AckMode = 'held' | 'behind' | 'ahead' | 'stale' | 'repeat' | 'zero';

export type ClientOp =
  | { op: 'ack'; mode: AckMode; d: number }
  /** `retry`: publish again an eventId this client published before (index), else a new one. */
  | { op: 'pub'; retry: number | null }
  /** The client (or the network) closes the socket. */
  | { op: 'close' };

/** The resume's lastSeq: none (→ the checkpoint), what the client holds, held − d, or 0. */
export type LastSeqSpec =
  { kind: 'none' } | { kind: 'held' } | { kind: 'behind'; d: number } | { kind: 'zero' };

export interface ResumeSpec {
  lastSeq: LastSeqSpec;
  /** Send the current epoch along. */
  epoch: boolean;
  /** What the client does on the resumed connection, after its hello. */
  ops: ClientOp[];
}

/**
 * One run: a session with `pre` events; subscriber S on connection c0 (fresh, after 0,
 * acked up to `setupAck` before the race); subscriber P on connection p0 (fresh, after 0).
 * Then, all at once and interleaved by the scheduler: c0's ops, each resume of S (its
 * hello, then its ops), P's ops, `direct` server-side publishes and `remote` appends by
 * another node.
 */
export interface Scenario {
  limits: Limits;
  split: boolean;
  pre: number;
  setupAck: number;
  c0: ClientOp[];
  resumes: ResumeSpec[];
  p: ClientOp[];
  direct: number;
  /**
   * Appends by another node, straight to the engine (scheduled like any engine call): this
   * node hears of them only through their notices.
   */
  remote: number;
  /**
   * Both set-up connections close (the client's side) before the race: the actor is left
   * without connections and stops watching, so the first resume of the race watches and
   * reads the head anew, against the race's remote appends.
   */
  cold: boolean;
}

/** A deliberately broken engine, to show the properties catch what they claim to. */
export type Fault =
  | 'none'
  /** saveCheckpoint ignores the generation: a superseded connection's write lands. */
  | 'ignore-fence'
  /** Every second checkpoint write is acknowledged but not stored. */
  | 'drop-write';

// ── fixed parameters ─────────────────────────────────────────────────────────────────

const TENANT = 'ten_sched';
const OWNER = 'usr_sched';
const AGENT_TOKEN = 'agent-token';
const START_MS = Date.UTC(2026, 10, 28, 12, 0, 0);
const WINDOW_MS = 120_000;
/** Scheduled tasks one run may take before it counts as a livelock. */
const MAX_TASKS = 20_000;
/**
 * Engine calls one run may make, far above what any needs (hundreds). Out of the race (set-up,
 * checks, teardown) calls are not scheduled: an actor looping on the engine would spin in
 * microtasks forever, so past the budget every call rejects, which breaks the loop.
 */
const ENGINE_CALL_BUDGET = 50_000;

/** Runs share one engine (making one per run costs ~40 µs of entropy alone), each with its own session. */
let sessions = 0;
const clock = new ManualClock(START_MS);
let sharedEngine: ScheduledEngine | undefined;

/** One Metrics for the whole process: each instance starts prom-client's default collectors. */
const metrics = new Metrics();
const logger = silentLogger();
const resumeTokens = new ResumeTokens('scheduled-property-secret');

const jwtStub = {
  verify(token: string): Promise<Principal> {
    if (token !== AGENT_TOKEN) return Promise.reject(new GatewayError('unauthorized'));
    return Promise.resolve({
      userId: 'agt_sched',
      tenantId: TENANT,
      role: 'agent',
      expiresAt: 4_102_444_800,
    });
  },
} as unknown as JwtVerifier;

// ── the engine whose calls the scheduler completes ───────────────────────────────────

/** What the harness learns at each engine effect (the moment the store changed or answered). */
export type Effect =
  | { op: 'saveCheckpoint'; sub: string; generation: number; seq: number; result: number }
  | { op: 'takeover'; sub: string; acked: number | undefined; result: SubscriberRecord | undefined }
  | { op: 'createSubscriber'; sub: string; result: SubscriberRecord }
  | { op: 'getSubscriber'; sub: string; result: SubscriberRecord | undefined }
  | { op: 'release'; sub: string; generation: number }
  | { op: 'other'; label: string };

export class ScheduledEngine extends MemoryEngine {
  /** Unset: calls go straight to the memory engine (set-up and final checks). */
  scheduler: fc.Scheduler | undefined;
  split = false;
  fault: Fault = 'none';
  onEffect: (e: Effect, label: string) => void = () => {};
  onNotice: (notice: SessionNotice) => void = () => {};
  tasks = 0;
  calls = 0;
  /** Set once the call budget ran out: what was called then. */
  exceeded: string | undefined;
  #writes = 0;

  /** Ready for a new run. */
  reset(fault: Fault, split: boolean): void {
    this.scheduler = undefined;
    this.fault = fault;
    this.split = split;
    this.tasks = 0;
    this.calls = 0;
    this.exceeded = undefined;
    this.#writes = 0;
  }

  async #gate<T>(label: string, apply: () => Promise<T>, effect: (r: T) => Effect): Promise<T> {
    if (++this.calls > ENGINE_CALL_BUDGET) {
      this.exceeded ??= `${label} after ${ENGINE_CALL_BUDGET} engine calls in one run (a loop on the engine?)`;
      throw new Error(this.exceeded);
    }
    const s = this.scheduler;
    if (s) {
      this.tasks++;
      await s.schedule(Promise.resolve(), label);
    }
    const result = await apply();
    this.onEffect(effect(result), label);
    if (s && this.split) {
      this.tasks++;
      await s.schedule(Promise.resolve(), `${label} ⇒ reply`);
    }
    return result;
  }

  override append(sessionId: string, events: readonly Envelope[]): Promise<AppendResult> {
    return this.#gate(
      `engine.append(${events.map((e) => e.eventId).join(',')})`,
      () => super.append(sessionId, events),
      () => ({ op: 'other', label: 'append' }),
    );
  }

  override read(sessionId: string, after: number, limit: number): Promise<ReadResult> {
    return this.#gate(
      `engine.read(after ${after}, limit ${limit})`,
      () => super.read(sessionId, after, limit),
      () => ({ op: 'other', label: 'read' }),
    );
  }

  override head(sessionId: string): Promise<StreamHead> {
    return this.#gate(
      'engine.head()',
      () => super.head(sessionId),
      () => ({ op: 'other', label: 'head' }),
    );
  }

  override endStream(sessionId: string): Promise<StreamHead> {
    return this.#gate(
      'engine.endStream()',
      () => super.endStream(sessionId),
      () => ({ op: 'other', label: 'endStream' }),
    );
  }

  override createSubscriber(sessionId: string, sub: NewSubscriber): Promise<SubscriberRecord> {
    return this.#gate(
      `engine.createSubscriber(${sub.id}, after ${sub.after})`,
      () => super.createSubscriber(sessionId, sub),
      (result) => ({ op: 'createSubscriber', sub: sub.id, result }),
    );
  }

  override getSubscriber(sessionId: string, subscriberId: string): Promise<SubscriberRecord | undefined> {
    return this.#gate(
      `engine.getSubscriber(${subscriberId})`,
      () => super.getSubscriber(sessionId, subscriberId),
      (result) => ({ op: 'getSubscriber', sub: subscriberId, result }),
    );
  }

  override takeoverSubscriber(
    sessionId: string,
    subscriberId: string,
    now: number,
    windowMs: number,
    node?: string,
    acked?: number,
  ): Promise<SubscriberRecord | undefined> {
    return this.#gate(
      `engine.takeover(${subscriberId})`,
      () => super.takeoverSubscriber(sessionId, subscriberId, now, windowMs, node, acked),
      (result) => ({ op: 'takeover', sub: subscriberId, acked, result }),
    );
  }

  override saveCheckpoint(
    sessionId: string,
    subscriberId: string,
    generation: number,
    seq: number,
  ): Promise<number> {
    return this.#gate(
      `engine.saveCheckpoint(${subscriberId}, gen ${generation}, seq ${seq})`,
      () => this.#saveCheckpoint(sessionId, subscriberId, generation, seq),
      (result) => ({ op: 'saveCheckpoint', sub: subscriberId, generation, seq, result }),
    );
  }

  async #saveCheckpoint(sessionId: string, subscriberId: string, generation: number, seq: number) {
    if (this.fault === 'ignore-fence') {
      const current = await super.getSubscriber(sessionId, subscriberId);
      return super.saveCheckpoint(sessionId, subscriberId, current?.generation ?? generation, seq);
    }
    if (this.fault === 'drop-write' && ++this.#writes % 2 === 0) {
      return (await super.getSubscriber(sessionId, subscriberId))?.checkpoint ?? 0;
    }
    return super.saveCheckpoint(sessionId, subscriberId, generation, seq);
  }

  override releaseSubscriber(
    sessionId: string,
    subscriberId: string,
    generation: number,
    now: number,
    windowMs: number,
  ): Promise<void> {
    return this.#gate(
      `engine.release(${subscriberId}, gen ${generation})`,
      () => super.releaseSubscriber(sessionId, subscriberId, generation, now, windowMs),
      () => ({ op: 'release', sub: subscriberId, generation }),
    );
  }

  override endSubscriber(sessionId: string, subscriberId: string): Promise<void> {
    return this.#gate(
      `engine.endSubscriber(${subscriberId})`,
      () => super.endSubscriber(sessionId, subscriberId),
      () => ({ op: 'other', label: 'endSubscriber' }),
    );
  }

  /** Notices are delivered on a (scheduled) setImmediate by the memory engine; logged here. */
  override watch(sessionId: string, listener: SessionListener): Watch {
    return super.watch(sessionId, (notice) => {
      this.onNotice(notice);
      listener(notice);
    });
  }

  /** Direct access for set-up and checks, never scheduled. */
  raw(session: string): {
    read: (after: number) => Promise<ReadResult>;
    getSubscriber: (id: string) => Promise<SubscriberRecord | undefined>;
    append: (events: Envelope[]) => Promise<AppendResult>;
  } {
    return {
      read: (after) => super.read(session, after, 1_000_000),
      getSubscriber: (id) => super.getSubscriber(session, id),
      append: (events) => super.append(session, events),
    };
  }
}

// ── the fake socket ──────────────────────────────────────────────────────────────────

interface InFrame {
  op: string;
  [key: string]: unknown;
}

type OutFrame =
  | { op: 'hello'; sessionId: string; token?: string; after?: number; resume?: HelloResume }
  | { op: 'ack'; seq: number }
  | { op: 'pub'; id: string; type: string; payload: unknown };

interface HelloResume {
  token: string;
  lastSeq?: number;
  epoch?: string;
}

type Entry = { dir: 'in'; frame: InFrame } | { dir: 'out'; frame: OutFrame; open: boolean };

class FakeSink implements Sink {
  readonly log: Entry[] = [];
  readonly afterClose: InFrame[] = [];
  readonly problems: string[] = [];
  closed: { by: 'gateway' | 'client'; code: number; reason: string } | undefined;
  onFrame: (frame: InFrame) => void = () => {};
  onClose: () => void = () => {};

  send(bytes: Uint8Array, binary: boolean): boolean {
    if (binary) this.problems.push('a binary frame on a json connection');
    const frame = jsonCodec.decode(bytes) as InFrame;
    if (this.closed) this.afterClose.push(frame);
    this.log.push({ dir: 'in', frame });
    this.onFrame(frame);
    return true;
  }

  bufferedAmount(): number {
    return 0;
  }

  cork(fn: () => void): void {
    fn();
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = { by: 'gateway', code, reason };
    this.onClose();
  }

  clientClose(): void {
    if (this.closed) return;
    this.closed = { by: 'client', code: 1006, reason: 'client went away' };
    this.onClose();
  }
}

// ── what the test knows of each connection and client ───────────────────────────────

interface Client {
  name: string;
  conns: ConnRec[];
  /** eventIds this client published, for retries. */
  ids: string[];
  subscriberId: string;
  token: string;
}

interface ConnRec {
  name: string;
  client: Client;
  conn: Connection;
  sink: FakeSink;
  kind: 'fresh' | 'resume';
  /** Order in which the hellos were sent (= the order the actor processes resumes). */
  helloIndex: number;
  /** The lastSeq this resume sent (undefined: none). */
  lastSeq: number | undefined;
  welcome: InFrame | undefined;
  /** Highest seq held: the last ev, or welcome.after. */
  held: number;
  /** Acknowledged position: max(welcome.after, acks the gateway accepted). */
  base: number;
  /** welcome.after and every ack the gateway accepted on this connection. */
  legit: Set<number>;
  maxAcceptedAck: number;
  lastAck: number | undefined;
  aheadAcks: number;
}

function num(frame: InFrame, key: string): number {
  const v = frame[key];
  if (typeof v !== 'number') assert.fail(`frame ${JSON.stringify(frame)} lacks a numeric ${key}`);
  return v;
}

const isOpen = (rec: ConnRec): boolean => rec.welcome !== undefined && rec.sink.closed === undefined;

/** What the runs exercised, printed as a diagnostic so a reader can see the coverage. */
export interface Stats {
  runs: number;
  tasks: number;
  resumes: number;
  superseded: number;
  abandoned: number;
  evs: number;
  acks: number;
  ackAhead: number;
  pubacks: number;
  dupPubacks: number;
  checkpointWrites: number;
  /** Checkpoint writes of a generation that landed after a newer takeover (fenced). */
  lateWrites: number;
  /** Runs whose last resume's connection survived. */
  survivors: number;
}

export const newStats = (): Stats => ({
  runs: 0,
  tasks: 0,
  resumes: 0,
  superseded: 0,
  abandoned: 0,
  evs: 0,
  acks: 0,
  ackAhead: 0,
  pubacks: 0,
  dupPubacks: 0,
  checkpointWrites: 0,
  lateWrites: 0,
  survivors: 0,
});

/** A failed check: carries the scenario, the trace and the scheduler's report. */
export class RunFailure extends Error {}

// ── the harness ──────────────────────────────────────────────────────────────────────

interface SubMirror {
  generation: number;
  checkpoint: number;
  /** Checkpoint when the race started. */
  initial: number;
  /** Checkpoint at each takeover (generation → checkpoint), what a resume without lastSeq starts from. */
  takeoverCheckpoint: Map<number, number>;
  /** Max seq of the writes that landed while their generation was current, and were legitimate. */
  expected: number;
}

export class ScheduledHarness {
  readonly clock = clock;
  readonly session = `ses_sched${++sessions}`;
  readonly engine: ScheduledEngine;
  readonly registry: ActorRegistry;
  readonly handler: RealtimeHandler;
  readonly conns: ConnRec[] = [];
  readonly clients: Client[] = [];
  /** Lines, or (to keep runs that pass cheap) functions of immutable data that make them. */
  readonly trace: (string | (() => string))[] = [];
  readonly problems: string[] = [];
  readonly direct: { id: string; seq: number }[] = [];
  readonly remote: { id: string; seq: number }[] = [];
  readonly published = new Set<string>();
  readonly subs = new Map<string, SubMirror>();
  epoch = '';
  #connN = 0;
  #idN = 0;
  #hellos = 0;
  #lateWrites = 0;
  #writes = 0;
  #scheduler: fc.Scheduler | undefined;
  /** The race ran until nothing was left to run (not stopped by the task budget). */
  quiesced = false;

  constructor(
    readonly scenario: Scenario,
    fault: Fault = 'none',
  ) {
    this.engine = sharedEngine ??= new ScheduledEngine(clock, {
      historyMaxEvents: 100_000,
      historyTtlAfterEndS: 86_400,
    });
    this.engine.reset(fault, scenario.split);
    this.engine.onEffect = (e, label) => this.#effect(e, label);
    this.engine.onNotice = (notice) => this.note(() => `notice ${JSON.stringify(notice)}`);
    const limits = scenario.limits;
    this.registry = new ActorRegistry({
      engine: this.engine,
      clock: this.clock,
      metrics,
      logger,
      issueResumeToken: (claims) => resumeTokens.issue(claims),
      limits: {
        maxInFlight: limits.maxInFlight,
        backpressureBytes: 1 << 20,
        slowConsumerMs: 5_000,
        replayBatch: limits.replayBatch,
        queueMax: 10_000,
        cacheEvents: limits.cacheEvents,
        resumeWindowMs: WINDOW_MS,
        heartbeatMs: 15_000,
        idleMs: 3_600_000,
      },
    });
    this.handler = new RealtimeHandler({
      registry: this.registry,
      engine: this.engine,
      jwt: jwtStub,
      resumeTokens,
      clock: this.clock,
      metrics,
      logger,
      helloTimeoutMs: 10_000,
      maxInFlight: limits.maxInFlight,
    });
  }

  note(line: string | (() => string)): void {
    if (this.trace.length < 5_000) this.trace.push(line);
  }

  problem(message: string): void {
    this.problems.push(message);
    this.note(`!! ${message}`);
  }

  // ── engine effects ─────────────────────────────────────────────────────────────────

  #effect(e: Effect, label: string): void {
    switch (e.op) {
      case 'createSubscriber': {
        const cp = e.result.checkpoint;
        this.subs.set(e.sub, {
          generation: e.result.generation,
          checkpoint: cp,
          initial: cp,
          takeoverCheckpoint: new Map([[e.result.generation, cp]]),
          expected: cp,
        });
        this.note(`${label} = gen ${e.result.generation}, checkpoint ${cp}`);
        return;
      }
      case 'takeover': {
        const m = this.subs.get(e.sub);
        const r = e.result;
        this.note(`${label} = ${r ? `gen ${r.generation}, checkpoint ${r.checkpoint}` : 'refused'}`);
        if (!m) return this.problem(`takeover of unknown subscriber ${e.sub}`);
        if (!r) return this.problem(`takeover of ${e.sub} refused (no time passes, nobody said bye)`);
        if (r.generation !== m.generation + 1)
          this.problem(`takeover of ${e.sub}: generation ${m.generation} → ${r.generation}, expected +1`);
        // A resume's lastSeq (what the client holds) is stored with its takeover.
        const claimed = e.acked ?? -1;
        if (claimed > this.#maxHeld(e.sub))
          this.problem(`takeover of ${e.sub} claims ${claimed}, above the highest seq delivered to it`);
        if (r.checkpoint !== Math.max(m.checkpoint, claimed))
          this.problem(
            `takeover of ${e.sub} (lastSeq ${String(e.acked)}) returned checkpoint ${r.checkpoint}, the store had ${m.checkpoint}`,
          );
        m.generation = r.generation;
        m.checkpoint = r.checkpoint;
        m.expected = Math.max(m.expected, claimed);
        m.takeoverCheckpoint.set(r.generation, r.checkpoint);
        return;
      }
      case 'getSubscriber': {
        const m = this.subs.get(e.sub);
        this.note(
          `${label} = ${e.result ? `gen ${e.result.generation}, checkpoint ${e.result.checkpoint}` : 'none'}`,
        );
        if (m && e.result && e.result.checkpoint !== m.checkpoint)
          this.problem(
            `getSubscriber(${e.sub}) says checkpoint ${e.result.checkpoint}, expected ${m.checkpoint}`,
          );
        return;
      }
      case 'saveCheckpoint': {
        this.#writes++;
        const m = this.subs.get(e.sub);
        if (!m) return this.problem(`checkpoint write for unknown subscriber ${e.sub}`);
        const before = m.checkpoint;
        const stale = e.generation < m.generation;
        if (stale) this.#lateWrites++;
        this.note(
          `${label} = ${e.result}${stale ? ` (generation ${e.generation} superseded by ${m.generation})` : ''}`,
        );
        const owner = this.#connOf(e.sub, e.generation);
        if (!owner)
          this.problem(
            `checkpoint write for ${e.sub} gen ${e.generation}: no connection had that generation`,
          );
        if (e.result < before) this.problem(`checkpoint of ${e.sub} went back from ${before} to ${e.result}`);
        if (stale && e.result !== before)
          this.problem(
            `a checkpoint write of superseded generation ${e.generation} moved ${e.sub}'s checkpoint ${before} → ${e.result} after takeover ${m.generation} was recorded (generation fencing)`,
          );
        if (e.result > before) {
          const held = this.#maxHeld(e.sub);
          if (e.result > held)
            this.problem(
              `checkpoint of ${e.sub} moved to ${e.result}, above the highest seq delivered to it (${held})`,
            );
          if (owner && !owner.legit.has(e.result))
            this.problem(
              `checkpoint of ${e.sub} moved to ${e.result}, which ${owner.name} (gen ${e.generation}) never acknowledged (its positions: ${[...owner.legit].join(',')})`,
            );
        }
        if (!stale && owner?.legit.has(e.seq)) m.expected = Math.max(m.expected, e.seq);
        m.checkpoint = e.result;
        return;
      }
      case 'release':
        this.note(`${label} done`);
        return;
      case 'other':
        this.note(`${label} done`);
        return;
    }
  }

  #connOf(sub: string, generation: number): ConnRec | undefined {
    return this.conns.find(
      (c) => c.welcome !== undefined && c.conn.subscriberId === sub && c.conn.generation === generation,
    );
  }

  #maxHeld(sub: string): number {
    let held = 0;
    for (const c of this.conns) if (c.welcome && c.client.subscriberId === sub) held = Math.max(held, c.held);
    return held;
  }

  // ── connections and frames ─────────────────────────────────────────────────────────

  open(client: Client, kind: 'fresh' | 'resume'): ConnRec {
    const n = ++this.#connN;
    const sink = new FakeSink();
    const conn = new Connection(n, jsonCodec, sink);
    const name = kind === 'fresh' ? `${client.name}0` : `${client.name}r${client.conns.length}`;
    const rec: ConnRec = {
      name,
      client,
      conn,
      sink,
      kind,
      helloIndex: -1,
      lastSeq: undefined,
      welcome: undefined,
      held: 0,
      base: 0,
      legit: new Set(),
      maxAcceptedAck: -1,
      lastAck: undefined,
      aheadAcks: 0,
    };
    sink.onClose = () => {
      this.note(`${name} closed by ${sink.closed!.by} ${sink.closed!.code} ${sink.closed!.reason}`);
      this.handler.closed(conn);
    };
    sink.onFrame = (f) => this.#frame(rec, f);
    client.conns.push(rec);
    this.conns.push(rec);
    this.handler.opened(conn);
    return rec;
  }

  #frame(rec: ConnRec, f: InFrame): void {
    switch (f.op) {
      case 'welcome':
        if (rec.welcome) return;
        rec.welcome = f;
        rec.held = num(f, 'after');
        rec.base = rec.held;
        rec.legit.add(rec.held);
        if (rec.client.subscriberId === '') {
          rec.client.subscriberId = String(f.subscriberId);
          rec.client.token = String(f.resumeToken);
        }
        this.note(
          `${rec.name} ← welcome(after ${String(f.after)}, head ${String(f.headSeq)}, gen ${rec.conn.generation})`,
        );
        return;
      case 'ev':
        rec.held = Math.max(rec.held, num(f, 'seq'));
        this.note(`${rec.name} ← ev ${String(f.seq)}`);
        return;
      default:
        this.note(() => `${rec.name} ← ${JSON.stringify(f)}`);
    }
  }

  send(rec: ConnRec, frame: OutFrame): void {
    const open = rec.sink.closed === undefined;
    rec.sink.log.push({ dir: 'out', frame, open });
    this.note(
      () =>
        `${rec.name} → ${JSON.stringify(frame)}${open ? '' : ' (socket closed: the handler must ignore it)'}`,
    );
    const bytes = jsonCodec.encode(frame);
    const data = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
    // Frames on a closed socket go to the handler too: it must ignore them.
    this.handler.message(rec.conn, data);
  }

  newId(client: Client): string {
    const id = `ev.${++this.#idN}`;
    client.ids.push(id);
    this.published.add(id);
    return id;
  }

  envelope(id: string): Envelope {
    return {
      eventId: id,
      sessionId: this.session,
      ts: new Date(this.clock.now()).toISOString(),
      type: 'transcript.partial',
      payload: { segmentId: 'seg1', revision: 0, text: 'hi' },
      schemaVersion: 1,
    };
  }

  // ── client actions ─────────────────────────────────────────────────────────────────

  helloFresh(client: Client): ConnRec {
    const rec = this.open(client, 'fresh');
    rec.helloIndex = this.#hellos++;
    this.send(rec, { op: 'hello', sessionId: this.session, token: AGENT_TOKEN, after: 0 });
    return rec;
  }

  helloResume(client: Client, spec: ResumeSpec): ConnRec {
    const held = Math.max(0, ...client.conns.filter((c) => c.welcome).map((c) => c.held));
    const l = spec.lastSeq;
    const lastSeq =
      l.kind === 'none'
        ? undefined
        : l.kind === 'held'
          ? held
          : l.kind === 'zero'
            ? 0
            : Math.max(0, held - l.d);
    const rec = this.open(client, 'resume');
    rec.helloIndex = this.#hellos++;
    rec.lastSeq = lastSeq;
    const resume: HelloResume = { token: client.token };
    if (lastSeq !== undefined) resume.lastSeq = lastSeq;
    if (spec.epoch) resume.epoch = this.epoch;
    this.send(rec, { op: 'hello', sessionId: this.session, resume });
    return rec;
  }

  /** Runs one client action on `rec`. */
  act(rec: ConnRec, op: ClientOp): void {
    switch (op.op) {
      case 'ack':
        return this.ack(rec, op.mode, op.d);
      case 'pub': {
        const c = rec.client;
        const id = op.retry !== null && c.ids.length > 0 ? c.ids[op.retry % c.ids.length]! : this.newId(c);
        // Sent before the welcome, a pub waits with the early frames and is handled after it.
        return this.send(rec, {
          op: 'pub',
          id,
          type: 'transcript.partial',
          payload: { segmentId: 'seg1', revision: 0, text: 'hi' },
        });
      }
      case 'close':
        this.note(`${rec.name}: client closes`);
        return rec.sink.clientClose();
    }
  }

  ack(rec: ConnRec, mode: AckMode, d: number): void {
    // A client acks only what a welcome told it about; before that there is nothing to ack.
    if (!rec.welcome) return this.note(`${rec.name}: ack ${mode} skipped (no welcome yet)`);
    const held = rec.held;
    const seq =
      mode === 'held'
        ? held
        : mode === 'behind'
          ? Math.max(0, held - d)
          : mode === 'ahead'
            ? held + d
            : mode === 'stale'
              ? Math.max(0, rec.base - d)
              : mode === 'repeat'
                ? (rec.lastAck ?? held)
                : 0;
    this.ackSeq(rec, seq);
  }

  ackSeq(rec: ConnRec, seq: number): void {
    const held = rec.held;
    rec.lastAck = seq;
    if (rec.sink.closed === undefined) {
      // The protocol's verdict on this ack, decided now (the handler runs synchronously).
      if (seq > held) rec.aheadAcks++;
      else if (seq > rec.base) {
        rec.base = seq;
        rec.legit.add(seq);
        rec.maxAcceptedAck = Math.max(rec.maxAcceptedAck, seq);
      }
    }
    this.send(rec, { op: 'ack', seq });
  }

  publishDirect(): void {
    const id = `ev.d${++this.#idN}`;
    this.published.add(id);
    this.note(`server-side publish ${id}`);
    this.registry
      .get(this.session)
      .publish(this.envelope(id))
      .then(
        (outcome) => {
          this.direct.push({ id, seq: outcome.seq });
          this.note(`server-side publish ${id} = seq ${outcome.seq}`);
        },
        (err: unknown) => this.problem(`server-side publish ${id} failed: ${toGatewayError(err).code}`),
      );
  }

  /** Another node appends an event: only its notice tells this node. */
  publishRemote(): void {
    const id = `ev.r${++this.#idN}`;
    this.published.add(id);
    this.note(`remote append ${id}`);
    this.engine.append(this.session, [this.envelope(id)]).then(
      (result) => {
        const seq = result.outcomes[0]!.seq;
        this.remote.push({ id, seq });
        this.note(`remote append ${id} = seq ${seq}`);
      },
      (err: unknown) => this.problem(`remote append ${id} failed: ${toGatewayError(err).code}`),
    );
  }

  // ── running ────────────────────────────────────────────────────────────────────────

  /** Lets (real) immediates and engine calls run until nothing moves; for set-up only. */
  async settle(): Promise<void> {
    let quiet = 0;
    let last = -1;
    for (let round = 0; round < 200 && quiet < 2; round++) {
      await new Promise<void>((r) => realSetImmediate(r));
      let size = this.trace.length;
      for (const c of this.conns) size += c.sink.log.length;
      quiet = size === last ? quiet + 1 : 0;
      last = size;
    }
  }

  /** Set-up: the stream, S on c0 (acked up to setupAck), P on p0. No scheduler yet. */
  async setup(): Promise<{ s: Client; p: Client }> {
    await this.engine.createSession({
      id: this.session,
      tenantId: TENANT,
      ownerId: OWNER,
      createdAt: new Date(START_MS).toISOString(),
    });
    const pre: Envelope[] = [];
    for (let i = 0; i < this.scenario.pre; i++) {
      const id = `ev.pre${i + 1}`;
      this.published.add(id);
      pre.push(this.envelope(id));
    }
    const appended = await this.engine.raw(this.session).append(pre);
    this.epoch = appended.epoch;
    const s: Client = { name: 'c', conns: [], ids: [], subscriberId: '', token: '' };
    const p: Client = { name: 'p', conns: [], ids: [], subscriberId: '', token: '' };
    this.clients.push(s, p);
    const c0 = this.helloFresh(s);
    const p0 = this.helloFresh(p);
    await this.settle();
    if (!c0.welcome || !p0.welcome) this.fail('set-up: c0 or p0 was not welcomed');
    const ack = Math.min(this.scenario.setupAck, c0.held);
    if (ack > 0) this.ackSeq(c0, ack);
    await this.settle();
    if (this.scenario.cold) {
      c0.sink.clientClose();
      p0.sink.clientClose();
      await this.settle();
    }
    for (const m of this.subs.values()) m.initial = m.checkpoint;
    this.note('── race ──');
    return { s, p };
  }

  /**
   * The race: every client's actions as scheduled tasks, interleaved with the engine's
   * calls and the process's immediates, until nothing is left to run.
   */
  async race(s: fc.Scheduler, clients: { s: Client; p: Client }): Promise<void> {
    const sc = this.scenario;
    this.#scheduler = s;
    this.engine.scheduler = s;
    const saved = globalThis.setImmediate;
    let immediates = 0;
    globalThis.setImmediate = ((cb: (...args: unknown[]) => void, ...args: unknown[]) => {
      const n = ++immediates;
      const what = String(cb).includes('#flush') ? 'actor.flush' : 'immediate';
      this.engine.tasks++;
      void s.schedule(Promise.resolve(), `setImmediate#${n} ${what}`).then(() => {
        try {
          cb(...args);
        } catch (err) {
          this.problem(`setImmediate#${n} threw: ${String(err)}`);
        }
      });
      return { ref() {}, unref() {}, hasRef: () => false } as unknown as NodeJS.Immediate;
    }) as unknown as typeof setImmediate;
    try {
      const c0 = clients.s.conns[0]!;
      const p0 = clients.p.conns[0]!;
      const step = async <T>(label: string, fn: () => T): Promise<T | undefined> => {
        this.engine.tasks++;
        await s.schedule(Promise.resolve(), label);
        try {
          return fn();
        } catch (err) {
          this.problem(`${label} threw: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
          return undefined;
        }
      };
      const ops = async (rec: ConnRec, list: ClientOp[]): Promise<void> => {
        for (const op of list) await step(`${rec.name}: ${opString(op)}`, () => this.act(rec, op));
      };
      const running: Promise<unknown>[] = [ops(c0, sc.c0), ops(p0, sc.p)];
      sc.resumes.forEach((spec, i) => {
        const resume = async (): Promise<void> => {
          const rec = await step(`resume #${i + 1} (${resumeString(spec)})`, () =>
            this.helloResume(clients.s, spec),
          );
          if (rec) await ops(rec, spec.ops);
        };
        running.push(resume());
      });
      for (let i = 0; i < sc.direct; i++) {
        running.push(step(`server-side publish #${i + 1}`, () => this.publishDirect()));
      }
      for (let i = 0; i < sc.remote; i++) {
        running.push(step(`remote append #${i + 1}`, () => this.publishRemote()));
      }
      // One task at a time, then one real macrotask, so that every consequence of it
      // (microtask chains, the tasks they schedule) has happened before the scheduler picks
      // the next, and "nothing scheduled after a macrotask" means the run is over. (waitOne
      // is deprecated in favour of waitNext(1), which gets the same predictability from an
      // awaiter of ~50 promises per task; under node:test's async hook that costs 3–4×.)
      for (;;) {
        await new Promise<void>((r) => realSetImmediate(r));
        if (s.count() === 0) {
          await Promise.all(running); // all triggered: this only lets them return
          this.quiesced = true;
          break;
        }
        if (this.engine.tasks > MAX_TASKS) {
          this.problem(`more than ${MAX_TASKS} scheduled tasks: a livelock?`);
          break;
        }
        await s.waitOne();
      }
    } finally {
      globalThis.setImmediate = saved;
      this.engine.scheduler = undefined;
    }
    this.note('── quiescent ──');
  }

  // ── checks after the race ──────────────────────────────────────────────────────────

  fail(message: string): never {
    const s = this.#scheduler;
    throw new RunFailure(
      [
        message,
        `  scenario: ${JSON.stringify(this.scenario)}`,
        '  trace (client actions, engine effects, frames, in the order they happened):',
        ...this.trace.map((l) => `    ${typeof l === 'string' ? l : l()}`),
        "  scheduler's report:",
        s ? schedulerReport(s) : '    (no scheduler)',
      ].join('\n'),
    );
  }

  /** `message` is a function: it is only built when the check fails (most runs pass). */
  check(ok: boolean, message: () => string): asserts ok {
    if (!ok) this.fail(message());
  }

  async checkAll(clients: { s: Client; p: Client }): Promise<void> {
    this.check(this.problems.length === 0, () => `during the race: ${this.problems.join('\n  ')}`);
    this.check(
      this.engine.exceeded === undefined,
      () => `the actor kept calling the engine: ${String(this.engine.exceeded)}`,
    );
    const { maxInFlight } = this.scenario.limits;

    // The stream: seqs 1..head contiguous, one eventId each, only eventIds someone published.
    const read = await this.engine.raw(this.session).read(0);
    const head = read.headSeq;
    this.check(
      read.events.length === head,
      () => `the engine holds ${read.events.length} events, head ${head}`,
    );
    const ids: string[] = [];
    const seen = new Set<string>();
    read.events.forEach((e, i) => {
      this.check(e.seq === i + 1, () => `stored seqs not contiguous: index ${i} has seq ${e.seq}`);
      this.check(
        !seen.has(e.event.eventId),
        () => `eventId ${e.event.eventId} stored twice (again at ${e.seq})`,
      );
      this.check(this.published.has(e.event.eventId), () => `eventId ${e.event.eventId} was never published`);
      seen.add(e.event.eventId);
      ids.push(e.event.eventId);
    });

    // Every puback'd event is stored exactly once, at the seq its puback named.
    const named = new Map<string, number>();
    const puback = (via: string, id: string, seq: number) => {
      this.check(
        ids[seq - 1] === id,
        () => `${via}: puback of ${id} names seq ${seq}, the stream has ${ids[seq - 1] ?? 'nothing'} there`,
      );
      const before = named.get(id);
      this.check(
        before === undefined || before === seq,
        () => `${id} was puback'd with seq ${String(before)} and with seq ${seq}`,
      );
      named.set(id, seq);
    };
    for (const d of this.direct) puback('server-side publish', d.id, d.seq);
    for (const r of this.remote) puback('remote append', r.id, r.seq);

    for (const rec of this.conns) this.#checkConn(rec, head, ids, puback);

    // Subscriber S: the connection whose resume was processed last is its only live one.
    const s = clients.s;
    const last = s.conns.reduce((a, b) => (b.helloIndex > a.helloIndex ? b : a));
    const open = s.conns.filter((c) => c.sink.closed === undefined);
    const lastByClient = last.sink.closed?.by === 'client';
    if (lastByClient) {
      this.check(
        open.length === 0,
        () =>
          `${last.name} (processed last) was closed by its client, yet ${open.map((c) => c.name).join(', ')} is open`,
      );
    } else {
      this.check(
        open.length === 1 && open[0] === last && last.welcome !== undefined,
        () =>
          `the connection processed last is ${last.name}; live: [${open.map((c) => c.name).join(', ')}], ${last.name} ${last.welcome ? 'welcomed' : 'not welcomed'}, closed ${String(last.sink.closed?.code)}`,
      );
    }
    for (const c of s.conns) {
      if (c === last || c.sink.closed?.by === 'client') continue;
      this.check(
        c.sink.closed?.code === 4009,
        () =>
          `${c.name} was superseded by a later resume but is ${c.sink.closed ? `closed with ${c.sink.closed.code}` : 'open'} (want 4009)`,
      );
    }
    await this.#checkSubscriber(s, last, head);
    await this.#checkSubscriber(clients.p, clients.p.conns[0]!, head);

    // Liveness: a live connection holds everything flow control lets it have.
    for (const rec of this.conns) {
      if (!isOpen(rec)) continue;
      const want = Math.max(rec.held, Math.min(head, rec.base + maxInFlight));
      this.check(
        rec.held === want,
        () =>
          `${rec.name} stalled: holds ${rec.held}, acked ${rec.base}, head ${head}, maxInFlight ${maxInFlight}; should hold ${want}`,
      );
      if (rec.held >= head) {
        this.check(
          rec.sink.log.some((e) => e.dir === 'in' && e.frame.op === 'replayed'),
          () => `${rec.name} caught up at ${head} but got no replayed`,
        );
      }
    }
  }

  async #checkSubscriber(client: Client, last: ConnRec, head: number): Promise<void> {
    const id = client.subscriberId;
    const m = this.subs.get(id)!;
    const record = await this.engine.raw(this.session).getSubscriber(id);
    this.check(record !== undefined, () => `${id} vanished from the engine`);
    const resumes = client.conns.filter((c) => c.kind === 'resume').length;
    this.check(
      record.generation === 1 + resumes,
      () =>
        `${id}: generation ${record.generation} after ${resumes} resumes (every one should have taken it over)`,
    );
    this.check(
      record.connected === (last.sink.closed === undefined),
      () =>
        `${id}: the engine marks it ${record.connected ? 'connected' : 'disconnected'}, but its last connection ${last.name} is ${last.sink.closed ? 'closed' : 'open'}`,
    );
    const cp = record.checkpoint;
    this.check(
      cp === m.checkpoint,
      () => `${id}: checkpoint ${cp}, but the effects seen say ${m.checkpoint}`,
    );
    // Exactly the max of the legitimate writes that landed while their generation was current.
    this.check(
      cp === m.expected,
      () =>
        `${id}: final checkpoint ${cp}, expected ${m.expected} (the max of the initial ${m.initial}, the resumes' lastSeqs and the acked seqs written while their generation was current)`,
    );
    // Nothing acknowledged on the live generation is lost; a closed one also persisted its after.
    let lower = Math.max(m.initial, last.maxAcceptedAck);
    if (last.welcome && last.sink.closed?.by === 'client')
      lower = Math.max(lower, num(last.welcome, 'after'));
    this.check(
      cp >= lower,
      () =>
        `${id}: checkpoint ${cp}, but ${last.name} (the last generation) had acknowledged ${lower}: an ack was lost`,
    );
    const held = this.#maxHeld(id);
    this.check(cp <= held, () => `${id}: checkpoint ${cp} is above everything delivered to it (${held})`);
    this.check(cp <= head, () => `${id}: checkpoint ${cp} is above the head ${head}`);
  }

  #checkConn(
    rec: ConnRec,
    head: number,
    ids: string[],
    puback: (via: string, id: string, seq: number) => void,
  ): void {
    const { sink, name } = rec;
    const { maxInFlight } = this.scenario.limits;
    this.check(sink.problems.length === 0, () => `${name}: ${sink.problems.join('; ')}`);
    this.check(
      sink.afterClose.length === 0,
      () =>
        `${name} received frames after it was closed (${String(sink.closed?.code)}): ${JSON.stringify(sink.afterClose.map((f) => [f.op, f.seq]))}`,
    );
    const closed = sink.closed;
    if (closed?.by === 'gateway') {
      this.check(closed.code === 4009, () => `${name} was closed with ${closed.code} (${closed.reason})`);
    }
    const frames = sink.log.filter((e) => e.dir === 'in').map((e) => e.frame);
    const welcome = rec.welcome;
    if (!welcome) {
      this.check(frames.length === 0, () => `${name} received ${String(frames[0]?.op)} before any welcome`);
      this.check(sink.closed !== undefined, () => `${name} was never welcomed and is still open`);
      return;
    }
    this.check(
      frames[0] === welcome,
      () => `${name}: the first frame is ${String(frames[0]?.op)}, not welcome`,
    );
    this.check(welcome.epoch === this.epoch, () => `${name}: welcome.epoch ${String(welcome.epoch)}`);
    this.check(
      welcome.subscriberId === rec.client.subscriberId,
      () => `${name}: welcome for subscriber ${String(welcome.subscriberId)}`,
    );
    const after = num(welcome, 'after');
    if (rec.kind === 'resume') {
      this.check(welcome.resumed === true, () => `${name}: resume welcome says resumed false`);
      const m = this.subs.get(rec.client.subscriberId)!;
      const cp = m.takeoverCheckpoint.get(rec.conn.generation);
      const expected = rec.lastSeq ?? cp;
      this.check(
        after === expected,
        () =>
          `${name}: welcome.after ${after}, expected ${String(expected)} (lastSeq ${String(rec.lastSeq)}, checkpoint at takeover gen ${rec.conn.generation}: ${String(cp)})`,
      );
    }
    let last = after;
    let base = after;
    let replayed = false;
    let aheadErrors = 0;
    let pubs = 0;
    let replies = 0;
    let index = 0;
    for (const e of sink.log) {
      if (e.dir === 'out') {
        if (!e.open) continue;
        // Pubs sent before the welcome wait with the early frames and are answered after it.
        if (e.frame.op === 'pub') pubs++;
        if (index > 0 && e.frame.op === 'ack' && e.frame.seq <= last && e.frame.seq > base)
          base = e.frame.seq;
        continue;
      }
      const f = e.frame;
      if (index++ === 0) continue;
      switch (f.op) {
        case 'ev': {
          const seq = num(f, 'seq');
          this.check(
            seq === last + 1,
            () => `${name} received ev ${seq} after ${last} (welcome.after ${after})`,
          );
          this.check(
            seq - base <= maxInFlight,
            () =>
              `${name}: ${seq - base} events in flight (ev ${seq}, acked ${base}) > maxInFlight ${maxInFlight}`,
          );
          const ev = f.event as { eventId?: unknown } | undefined;
          this.check(
            seq <= head && ev?.eventId === ids[seq - 1],
            () =>
              `${name} received ev ${seq} = ${String(ev?.eventId)}, the stream has ${ids[seq - 1] ?? 'nothing'} there`,
          );
          last = seq;
          break;
        }
        case 'replayed': {
          const seq = num(f, 'seq');
          this.check(!replayed, () => `${name} received a second replayed (${seq})`);
          this.check(seq === last, () => `${name}: replayed ${seq}, but the last ev before it was ${last}`);
          this.check(
            seq >= num(welcome, 'headSeq'),
            () => `${name}: replayed ${seq} before welcome.headSeq ${String(welcome.headSeq)}`,
          );
          replayed = true;
          break;
        }
        case 'error':
          this.check(f.code === 'ack_ahead', () => `${name} received ${JSON.stringify(f)}`);
          aheadErrors++;
          break;
        case 'puback':
          puback(name, String(f.id), num(f, 'seq'));
          replies++;
          break;
        case 'nack':
          this.check(f.code === 'rate_limited', () => `${name} received ${JSON.stringify(f)}`);
          replies++;
          break;
        default:
          this.fail(`${name} received an unexpected frame ${JSON.stringify(f)}`);
      }
    }
    this.check(
      aheadErrors === rec.aheadAcks,
      () =>
        `${name} sent ${rec.aheadAcks} acks above what it held while open, and got ${aheadErrors} ack_ahead errors`,
    );
    if (sink.closed === undefined)
      this.check(replies === pubs, () => `${name} sent ${pubs} pubs, got ${replies} replies`);
    else this.check(replies <= pubs, () => `${name} sent ${pubs} pubs, got ${replies} replies`);
  }

  tally(stats: Stats, clients: { s: Client; p: Client }): void {
    stats.runs++;
    stats.tasks += this.engine.tasks;
    stats.checkpointWrites += this.#writes;
    stats.lateWrites += this.#lateWrites;
    const pubacked = new Map<string, number>();
    for (const rec of this.conns) {
      if (rec.kind === 'resume') stats.resumes++;
      if (rec.sink.closed?.code === 4009) stats.superseded++;
      if (rec.kind === 'resume' && !rec.welcome) stats.abandoned++;
      for (const e of rec.sink.log) {
        if (e.dir === 'out') {
          if (e.frame.op === 'ack') stats.acks++;
          continue;
        }
        const op = e.frame.op;
        if (op === 'ev') stats.evs++;
        else if (op === 'error') stats.ackAhead++;
        else if (op === 'puback') {
          stats.pubacks++;
          const id = String(e.frame.id);
          pubacked.set(id, (pubacked.get(id) ?? 0) + 1);
        }
      }
    }
    for (const n of pubacked.values()) if (n > 1) stats.dupPubacks++;
    const s = clients.s;
    const last = s.conns.reduce((a, b) => (b.helloIndex > a.helloIndex ? b : a));
    if (last.kind === 'resume' && isOpen(last)) stats.survivors++;
  }

  async teardown(): Promise<void> {
    await this.registry.stopAll(1001, 'going_away');
  }
}

/**
 * The scheduler's report, in the form fast-check prints it (and `fc.schedulerFor` reads
 * it back): the tasks in the order it completed them, then those left pending.
 */
function schedulerReport(s: fc.Scheduler): string {
  const lines = s.report().map((r) => {
    const value = r.outputValue === undefined ? '' : ` with value ${r.outputValue}`;
    return `-> [task\${${r.taskId}}] ${r.schedulingType}::${r.label} ${r.status}${value}`;
  });
  return ['schedulerFor()`', ...lines].join('\n') + '`';
}

export function opString(op: ClientOp): string {
  switch (op.op) {
    case 'ack':
      return `ack ${op.mode}${op.mode === 'behind' || op.mode === 'ahead' || op.mode === 'stale' ? ` ${op.d}` : ''}`;
    case 'pub':
      return op.retry === null ? 'pub new' : `pub retry #${op.retry}`;
    case 'close':
      return 'close';
  }
}

function resumeString(spec: ResumeSpec): string {
  const l = spec.lastSeq;
  const ls =
    l.kind === 'none' ? 'no lastSeq' : l.kind === 'behind' ? `lastSeq held-${l.d}` : `lastSeq ${l.kind}`;
  return `${ls}${spec.epoch ? ', epoch' : ''}`;
}

/** What `setTimeout` returns while a run is on: a timer that never fires. */
class NeverTimeout {
  ref(): this {
    return this;
  }
  unref(): this {
    return this;
  }
  hasRef(): boolean {
    return false;
  }
  refresh(): this {
    return this;
  }
  [Symbol.toPrimitive](): number {
    return 0;
  }
}

/**
 * Replaces setTimeout / clearTimeout until the returned function is called: no timer
 * (hello timeout, idle, slow consumer, retries) fires during a run, as no time passes.
 */
function neverFiringTimers(): () => void {
  const saved = { setTimeout: globalThis.setTimeout, clearTimeout: globalThis.clearTimeout };
  globalThis.setTimeout = (() => new NeverTimeout()) as unknown as typeof setTimeout;
  globalThis.clearTimeout = () => {};
  return () => {
    globalThis.setTimeout = saved.setTimeout;
    globalThis.clearTimeout = saved.clearTimeout;
  };
}

/**
 * One scenario under one scheduler: set up, race, check. Throws a RunFailure (with the
 * scenario, the trace and the scheduler's report) when a check fails.
 */
export async function runScenario(
  s: fc.Scheduler,
  scenario: Scenario,
  stats: Stats,
  fault: Fault = 'none',
): Promise<void> {
  const restoreTimers = neverFiringTimers();
  const h = new ScheduledHarness(scenario, fault);
  try {
    const clients = await h.setup();
    await h.race(s, clients);
    await h.checkAll(clients);
    h.tally(stats, clients);
  } finally {
    // A run stopped by the task budget leaves calls waiting on tasks nobody will run: its
    // actor is left as it is (its session is its own), rather than waited for forever.
    if (h.quiesced) await h.teardown();
    restoreTimers();
  }
}
