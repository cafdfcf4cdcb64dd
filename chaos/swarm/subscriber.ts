import { wsUrl, type SwarmContext } from './context.ts';
import type { Rng } from './rng.ts';
import { WireConn, type Frame } from './wire.ts';

/**
 * A durable subscriber: one logical client of a session that must see every event once,
 * in order, whatever happens to its connections. It follows PROTOCOL.md §5 the way a
 * careful SDK would — resume after 1001/1006/1013/41xx, start fresh after 4010, resync
 * after 4011 (unless another connection still serves the subscriber: then the refusal
 * only ends the connection it closes) — and misbehaves on purpose where the protocol
 * says the gateway must cope: stale, repeated, late and ahead acks, acks on connections
 * that were superseded, bursts of duplicate resumes on several nodes, and phases where
 * it stops reading.
 *
 * Every frame it receives is recorded before the client-side dedupe, so the checker sees
 * what the gateway sent, not what the client made of it.
 */
interface Conn {
  readonly name: string;
  /** The gateway (or proxy) it went to. */
  readonly target: string;
  readonly wire: WireConn;
  readonly race: string | undefined;
  subscriberId: string | undefined;
  /** The gateway's id for it, from the welcome. */
  connectionId: string | undefined;
  epoch: string | undefined;
  welcomed: boolean;
  helloSent: boolean;
  /** Highest seq delivered on this connection. */
  highest: number;
  lastAck: number;
  sinceAck: number;
  ackEvery: number;
  byClient: boolean;
  /** Welcomed after this one: acks here are acks on a superseded connection. */
  superseded: boolean;
  /** The hello was a resume that named `lastSeq` (so its welcome is not a checkpoint reading). */
  sentLastSeq: boolean;
}

export interface SubscriberStats {
  connects: number;
  resumes: number;
  fresh: number;
  races: number;
  duplicatesDropped: number;
  closes: Record<number, number>;
}

const FATAL = new Set([4000, 4001, 4003, 4004]);

export class Subscriber {
  readonly name: string;
  readonly session: string;
  readonly #ctx: SwarmContext;
  readonly #rng: Rng;
  readonly #conns = new Set<Conn>();
  #connCount = 0;
  #raceCount = 0;
  #subscriberId: string | undefined;
  #resumeToken: string | undefined;
  #epoch: string | undefined;
  /** Highest seq processed in `#epoch`: everything up to here reached the application. */
  #watermark = 0;
  #mustStartFresh = true;
  #attempts = 0;
  #stopped = false;
  #racing = false;
  #reconnect: NodeJS.Timeout | undefined;
  #watch: NodeJS.Timeout | undefined;
  #fatal: string | undefined;
  readonly stats: SubscriberStats = {
    connects: 0,
    resumes: 0,
    fresh: 0,
    races: 0,
    duplicatesDropped: 0,
    closes: {},
  };

  readonly #slow: boolean;

  /** `slow`: connect through the slow lane (a reader that never keeps up). */
  constructor(name: string, session: string, ctx: SwarmContext, rng: Rng, slow = false) {
    this.name = name;
    this.session = session;
    this.#ctx = ctx;
    this.#rng = rng;
    this.#slow = slow;
  }

  get watermark(): number {
    return this.#watermark;
  }

  get epoch(): string | undefined {
    return this.#epoch;
  }

  get fatal(): string | undefined {
    return this.#fatal;
  }

  get subscriberId(): string | undefined {
    return this.#subscriberId;
  }

  /**
   * This client's state and its connections', one line each: what a report shows of a
   * subscriber that did not drain, beside what the gateways say of it.
   */
  describe(now = Date.now()): string[] {
    const state = [
      `${this.name}: watermark ${this.#watermark}, epoch ${this.#epoch ?? '-'}, subscriber ${this.#subscriberId ?? '-'}`,
      this.#mustStartFresh ? 'must start fresh' : '',
      this.#racing ? 'racing' : '',
      this.#reconnect ? 'reconnect pending' : '',
      this.#fatal ? `fatal: ${this.#fatal}` : '',
    ].filter(Boolean);
    const conns = [...this.#conns].map((c) =>
      [
        `  ${c.name} → ${c.target}: ${c.wire.state}`,
        c.welcomed
          ? `welcomed as ${c.connectionId ?? '?'} (${c.subscriberId ?? '?'})`
          : c.helloSent
            ? 'hello sent, no welcome'
            : 'no hello',
        c.wire.paused ? 'paused' : '',
        c.superseded ? 'superseded' : '',
        `highest ${c.highest}, acked ${c.lastAck}, quiet ${c.wire.quietMs(now)} ms`,
      ]
        .filter(Boolean)
        .join(', '),
    );
    return [state.join(', '), ...(conns.length ? conns : ['  no connection'])];
  }

  /** Whether some connection is welcomed and open (not counting paused reading). */
  get live(): boolean {
    for (const conn of this.#conns) if (conn.welcomed && conn.wire.isOpen) return true;
    return false;
  }

  start(): void {
    this.#connect(undefined);
    this.#watch = setInterval(() => {
      for (const conn of this.#conns)
        if (!conn.wire.heartbeat(this.#ctx.behaviour.deadAfterMs)) conn.byClient = true;
    }, 500);
  }

  /**
   * A burst of `count` concurrent resumes of this subscriber, each on a random node, while
   * its current connection stays open. Resolves once the burst settled (one connection
   * left, or the timeout) and records the outcome. False when the client was not in a
   * state to race (not welcomed yet, or already racing).
   */
  async race(count: number, settleTimeoutMs = 5000): Promise<boolean> {
    if (this.#racing || this.#stopped || this.#mustStartFresh || !this.#resumeToken || !this.live)
      return false;
    this.#racing = true;
    const race = `${this.name}/r${++this.#raceCount}`;
    this.stats.races++;
    try {
      const before = [...this.#conns];
      const started = Array.from({ length: count }, () => this.#connect(race));
      const all = [...before, ...started];
      const deadline = Date.now() + settleTimeoutMs;
      // Settled: no connection of the race is still waiting for its answer, and at most
      // one of them (old ones included) is open.
      const settled = (): boolean =>
        started.every((c) => c.welcomed || c.wire.closed) && all.filter((c) => !c.wire.closed).length <= 1;
      while (!settled() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const inRace = all.filter((c) => c.helloSent);
      this.#ctx.recorder.record({
        op: 'race_settled',
        session: this.session,
        client: this.name,
        race,
        subscriberId: this.#subscriberId ?? '',
        conns: inRace.map((c) => c.name),
        survivors: inRace.filter((c) => !c.wire.closed).map((c) => c.name),
      });
      return true;
    } finally {
      this.#racing = false;
      // The race may have left no connection at all (a node died meanwhile).
      this.#ensureConnected();
    }
  }

  /** Stops reading every open connection for `ms` (a stalled consumer), then reads again. */
  stall(ms: number): void {
    for (const conn of this.#conns) conn.wire.pause();
    setTimeout(() => {
      for (const conn of this.#conns) conn.wire.resume();
    }, ms);
  }

  /** Drops every connection without a close frame, like a network change on a phone. */
  dropConnections(): void {
    for (const conn of this.#conns) {
      conn.byClient = true;
      conn.wire.terminate();
    }
  }

  /**
   * Starts over as a new subscriber (a fresh hello after what the application holds), as an
   * app that lost its resume token would: drops every connection like dropConnections.
   */
  startOver(): void {
    this.#mustStartFresh = true;
    this.dropConnections();
  }

  /**
   * The end of the run: waits until the application holds `headSeq` of `epoch` (or the
   * deadline), acks it, and closes. Returns whether it caught up; when it did not,
   * `onBehind` runs first, while its connections are still open (for the report).
   */
  async drain(
    epoch: string,
    headSeq: number,
    deadline: number,
    onBehind?: () => Promise<void>,
  ): Promise<boolean> {
    for (const conn of this.#conns) conn.wire.resume();
    while (!this.#fatal && Date.now() < deadline && !(this.#epoch === epoch && this.#watermark >= headSeq)) {
      this.#ensureConnected();
      await new Promise((r) => setTimeout(r, 50));
    }
    const caughtUp = this.#epoch === epoch && this.#watermark >= headSeq;
    if (!caughtUp) await onBehind?.().catch(() => {});
    for (const conn of this.#conns) if (conn.welcomed) this.#sendAck(conn, conn.highest, 'cumulative');
    this.stop();
    return caughtUp;
  }

  stop(): void {
    this.#stopped = true;
    if (this.#watch) clearInterval(this.#watch);
    if (this.#reconnect) clearTimeout(this.#reconnect);
    for (const conn of this.#conns) {
      conn.byClient = true;
      conn.wire.close(1000);
    }
  }

  #ensureConnected(): void {
    if (this.#stopped || this.#fatal || this.#reconnect || this.#racing) return;
    for (const conn of this.#conns) if (!conn.wire.closed) return;
    const delay = this.#rng.backoff(
      ++this.#attempts,
      this.#ctx.behaviour.backoffBaseMs,
      this.#ctx.behaviour.backoffCapMs,
    );
    this.#reconnect = setTimeout(() => {
      this.#reconnect = undefined;
      if (![...this.#conns].some((c) => !c.wire.closed)) this.#connect(undefined);
    }, delay);
  }

  #connect(race: string | undefined): Conn {
    const { behaviour, targets, slowTargets } = this.#ctx;
    const codec = this.#rng.chance(behaviour.msgpackShare) ? 'msgpack' : 'json';
    const target = this.#rng.pick(this.#slow ? slowTargets.urls : targets.urls);
    const url = wsUrl(target);
    const conn: Conn = {
      name: `${this.name}#${++this.#connCount}`,
      target,
      race,
      subscriberId: undefined,
      connectionId: undefined,
      epoch: undefined,
      welcomed: false,
      helloSent: false,
      highest: 0,
      lastAck: 0,
      sinceAck: 0,
      ackEvery: this.#rng.int(1, behaviour.ackEveryMax),
      byClient: false,
      superseded: false,
      sentLastSeq: false,
      wire: new WireConn(url, codec, {
        onOpen: () => this.#sendHello(conn),
        onFrame: (frame) => this.#onFrame(conn, frame),
        onClose: (code, reason) => this.#onClose(conn, code, reason),
      }),
    };
    this.#conns.add(conn);
    this.stats.connects++;
    return conn;
  }

  #sendHello(conn: Conn): void {
    if (this.#stopped) {
      conn.byClient = true;
      conn.wire.close(1000);
      return;
    }
    const base = {
      op: 'hello',
      session: this.session,
      client: this.name,
      conn: conn.name,
      codec: conn.wire.codec,
    } as const;
    if (this.#mustStartFresh || !this.#resumeToken || !this.#subscriberId) {
      if (conn.race) {
        // The client had to start over since the race began: a fresh hello would create
        // another subscriber, not race the one being resumed. This connection stays out.
        conn.byClient = true;
        conn.wire.close(1000);
        return;
      }
      // Fresh: a new subscriber, starting after what the application already holds.
      const after = this.#watermark;
      this.#ctx.recorder.record({ ...base, after });
      conn.wire.send({ op: 'hello', sessionId: this.session, token: this.#ctx.subscriberToken, after });
      this.stats.fresh++;
    } else {
      const { resumeWithLastSeq, bogusEpochResume } = this.#ctx.behaviour;
      const withLastSeq = this.#rng.chance(resumeWithLastSeq);
      const resume: { token: string; lastSeq?: number; epoch?: string } = { token: this.#resumeToken };
      conn.sentLastSeq = withLastSeq;
      if (withLastSeq) {
        resume.lastSeq = this.#watermark;
        const bogus = this.#rng.chance(bogusEpochResume);
        if (bogus) resume.epoch = `bogus-${conn.name}`;
        else if (this.#epoch) resume.epoch = this.#epoch;
      }
      this.#ctx.recorder.record({
        ...base,
        resume: {
          subscriberId: this.#subscriberId,
          ...(resume.lastSeq !== undefined ? { lastSeq: resume.lastSeq } : {}),
          ...(resume.epoch !== undefined ? { epoch: resume.epoch } : {}),
        },
        ...(conn.race ? { race: conn.race } : {}),
      });
      conn.wire.send({ op: 'hello', sessionId: this.session, resume });
      this.stats.resumes++;
    }
    conn.helloSent = true;
  }

  #onFrame(conn: Conn, frame: Frame): void {
    switch (frame.op) {
      case 'welcome':
        this.#onWelcome(conn, frame);
        return;
      case 'ev':
        this.#onEvent(conn, frame);
        return;
      case 'replayed':
        this.#ctx.recorder.record({
          op: 'replayed',
          session: this.session,
          client: this.name,
          conn: conn.name,
          seq: Number(frame['seq']),
        });
        return;
      case 'error':
        this.#ctx.recorder.record({
          op: 'error',
          session: this.session,
          client: this.name,
          conn: conn.name,
          code: String(frame['code']),
        });
        return;
      default:
        return; // pong, eos: nothing to record
    }
  }

  #onWelcome(conn: Conn, frame: Frame): void {
    const subscriberId = String(frame['subscriberId']);
    const epoch = String(frame['epoch']);
    const after = Number(frame['after']);
    const resumed = frame['resumed'] === true;
    conn.welcomed = true;
    conn.subscriberId = subscriberId;
    conn.connectionId = String(frame['connectionId']);
    conn.epoch = epoch;
    conn.highest = after;
    conn.lastAck = after;
    this.#ctx.recorder.record({
      op: 'welcome',
      session: this.session,
      client: this.name,
      conn: conn.name,
      subscriberId,
      epoch,
      headSeq: Number(frame['headSeq']),
      after,
      resumed,
    });
    for (const other of this.#conns) if (other !== conn && other.welcomed) other.superseded = true;
    if (resumed && !conn.sentLastSeq) {
      this.#ctx.recorder.record({
        op: 'checkpoint',
        session: this.session,
        client: this.name,
        subscriberId,
        epoch,
        seq: after,
      });
    }
    if (!resumed && this.#epoch !== undefined && epoch !== this.#epoch && after > 0) {
      // A fresh start after 4010 from our position in the old epoch, but the stream moved
      // on to a new one meanwhile: that position means nothing here. Resync from 0.
      this.#resetToNewEpoch();
      conn.byClient = true;
      conn.wire.close(1000);
      return;
    }
    this.#subscriberId = subscriberId;
    this.#resumeToken = String(frame['resumeToken']);
    this.#mustStartFresh = false;
    this.#attempts = 0;
    // A new stream for this client only right after a resync (4011), which reset it.
    this.#epoch = epoch;
  }

  /** History gone: the application resyncs (here: takes the new epoch from its start). */
  #resetToNewEpoch(): void {
    this.#mustStartFresh = true;
    this.#epoch = undefined;
    this.#watermark = 0;
  }

  #onEvent(conn: Conn, frame: Frame): void {
    const seq = Number(frame['seq']);
    const event = frame['event'] as { eventId?: unknown } | undefined;
    this.#ctx.recorder.record({
      op: 'deliver',
      session: this.session,
      client: this.name,
      conn: conn.name,
      subscriberId: conn.subscriberId ?? '',
      epoch: conn.epoch ?? '',
      seq,
      eventId: String(event?.eventId),
    });
    if (seq > conn.highest) conn.highest = seq;
    // Client-side dedupe: only the next seq of the client's own epoch moves it on.
    if (conn.epoch === this.#epoch) {
      if (seq <= this.#watermark) this.stats.duplicatesDropped++;
      else this.#watermark = seq; // a jump is a gap: recorded above, judged by the checker
    }
    if (++conn.sinceAck >= conn.ackEvery) {
      conn.sinceAck = 0;
      conn.ackEvery = this.#rng.int(1, this.#ctx.behaviour.ackEveryMax);
      this.#ackWithMischief(conn);
    }
  }

  #ackWithMischief(conn: Conn): void {
    const b = this.#ctx.behaviour;
    const seq = conn.highest;
    this.#sendAck(conn, seq, 'cumulative');
    if (this.#rng.chance(b.repeatAck)) this.#sendAck(conn, seq, 'repeat');
    if (seq > 1 && this.#rng.chance(b.staleAck)) this.#sendAck(conn, this.#rng.int(1, seq - 1), 'stale');
    if (this.#rng.chance(b.aheadAck)) this.#sendAck(conn, seq + this.#rng.int(1, 5), 'ahead');
    if (this.#rng.chance(b.lateAck)) {
      setTimeout(() => this.#sendAck(conn, seq, 'stale'), this.#rng.int(200, 2000));
    }
  }

  #sendAck(conn: Conn, seq: number, kind: 'cumulative' | 'stale' | 'repeat' | 'ahead'): void {
    if (!conn.welcomed || !conn.wire.isOpen) return;
    if (!conn.wire.send({ op: 'ack', seq })) return;
    if (kind === 'cumulative' && seq > conn.lastAck) conn.lastAck = seq;
    this.#ctx.recorder.record({
      op: 'ack',
      session: this.session,
      client: this.name,
      conn: conn.name,
      subscriberId: conn.subscriberId ?? '',
      seq,
      kind: conn.superseded && kind === 'cumulative' ? 'on_superseded' : kind,
    });
  }

  #onClose(conn: Conn, code: number, reason: string): void {
    this.#conns.delete(conn);
    this.stats.closes[code] = (this.stats.closes[code] ?? 0) + 1;
    if (conn.helloSent) {
      this.#ctx.recorder.record({
        op: 'close',
        session: this.session,
        client: this.name,
        conn: conn.name,
        code,
        reason,
        byClient: conn.byClient,
      });
    }
    if (this.#stopped) return;
    if (FATAL.has(code)) {
      // A refusal retrying cannot fix. Only the newest connection decides for the client.
      if (![...this.#conns].some((c) => !c.wire.closed)) this.#fatal = `closed ${code} ${reason}`;
      return;
    }
    // 4010 and 4011 answer this connection's resume. They speak for the subscriber only
    // when no other connection of it is being served: a resume that lost its race to a
    // welcomed sibling (or answered while the current connection lives on) says nothing
    // about the live connection's position or epoch. If the history really is gone, the
    // live connection is closed 4011 too, and that close resets the client.
    if ((code === 4010 || code === 4011) && !this.#servedElsewhere()) {
      if (code === 4010) this.#mustStartFresh = true;
      else this.#resetToNewEpoch();
    }
    this.#ensureConnected();
  }

  /** Some connection of the current subscriber is welcomed and open. */
  #servedElsewhere(): boolean {
    for (const c of this.#conns) {
      if (c.welcomed && c.wire.isOpen && c.subscriberId === this.#subscriberId) return true;
    }
    return false;
  }
}
