import type { Engine } from '../engine/engine.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Clock } from '../util/clock.ts';
import { actorTicks } from '../util/next-tick-tasks.ts';
import type { Connection } from './connection.ts';

/** What the writes need of the node: the deps every actor of the node shares. */
export interface SubscriberWritesDeps {
  engine: Engine;
  clock: Clock;
  metrics: Metrics;
  limits: { resumeWindowMs: number };
}

/** What the writes need of their owner, the session actor; one host serves every actor. */
export interface SubscriberWritesHost<O> {
  /** A warning every session may raise at once for one cause (throttled by the owner). */
  warn(owner: O, fields: object, msg: string): void;
  /**
   * A checkpoint write the engine did not apply: it fenced the connection's generation,
   * so another connection took the subscriber over and its notice never reached this node.
   */
  fenced(owner: O, conn: Connection): void;
}

/**
 * What one session actor writes of its subscribers' state: their checkpoints and their
 * releases. Both go on after the socket closed (nothing acked is lost, and a dropped
 * connection's resume window opens), and both are tracked, so shutdown can wait for them
 * (settle).
 *
 * Checkpoints: one write at a time per connection, coalescing newer acks. The acks of a
 * tick, of all the actor's connections, go to the engine as one saveCheckpoints call at
 * the end of the tick (with the checkpoints of every other session, see the engine's
 * tick queue): a fan-out to thousands at a few events a second is acked event by event,
 * and a promise and a handler per ack would cost as much as the rest of the ack.
 */
export class SubscriberWrites<O> {
  readonly #sessionId: string;
  readonly #deps: SubscriberWritesDeps;
  readonly #host: SubscriberWritesHost<O>;
  readonly #owner: O;
  /** Writes under way, awaited by settle. */
  readonly #writes = new Set<Promise<unknown>>();
  /** Connections whose checkpoint goes out with this tick's saveCheckpoints. */
  #due: Connection[] = [];

  constructor(sessionId: string, deps: SubscriberWritesDeps, host: SubscriberWritesHost<O>, owner: O) {
    this.#sessionId = sessionId;
    this.#deps = deps;
    this.#host = host;
    this.#owner = owner;
  }

  /** Persists the connection's latest ack, unless a write of it is under way (that one picks it up). */
  checkpoint(conn: Connection): void {
    if (conn.checkpointWriting || conn.ackedSeq <= conn.savedSeq) return;
    conn.checkpointWriting = true;
    this.#due.push(conn);
    if (this.#due.length === 1) actorTicks.schedule(this.#flush);
  }

  /** The subscriber's connection is gone: its resume window starts. */
  release(subscriberId: string, generation: number): void {
    const { engine, clock, metrics, limits } = this.#deps;
    const { resumeWindowMs } = limits;
    const write = metrics
      .time('release', () =>
        engine.releaseSubscriber(this.#sessionId, subscriberId, generation, clock.now(), resumeWindowMs),
      )
      .catch((err: unknown) =>
        this.#host.warn(this.#owner, { sessionId: this.#sessionId, err }, 'release subscriber failed'),
      );
    this.#writes.add(write);
    void write.finally(() => this.#writes.delete(write));
  }

  /** Resolves once every write is done, the checkpoints of acks that came meanwhile too. */
  async settle(): Promise<void> {
    // A finished checkpoint write may queue the next one (newer acks): until none is left.
    while (this.#writes.size > 0 || this.#due.length > 0) {
      this.#flush();
      await Promise.allSettled([...this.#writes]);
    }
  }

  /** Writes the checkpoints due, each up to its connection's latest ack by now. */
  readonly #flush = (): void => {
    const conns = this.#due;
    if (conns.length === 0) return;
    this.#due = [];
    const writes = conns.map((conn) => ({
      subscriberId: conn.subscriberId,
      generation: conn.generation,
      seq: conn.ackedSeq,
    }));
    const { engine, metrics } = this.#deps;
    // Timed here rather than through metrics.time, which would chain one more promise. One
    // observation per call (per actor and tick); `op` keeps its name for dashboards.
    const start = performance.now();
    const write: Promise<void> = engine.saveCheckpoints(this.#sessionId, writes).then(
      (stored) => {
        metrics.timed('saveCheckpoint', start, false, undefined);
        this.#writes.delete(write);
        for (let i = 0; i < conns.length; i++) this.#done(conns[i]!, writes[i]!.seq, stored[i]);
      },
      (err: unknown) => {
        metrics.timed('saveCheckpoint', start, true, err);
        this.#writes.delete(write);
        this.#host.warn(this.#owner, { sessionId: this.#sessionId, err }, 'checkpoint write failed');
        for (let i = 0; i < conns.length; i++) this.#done(conns[i]!, writes[i]!.seq, undefined);
      },
    );
    this.#writes.add(write);
  };

  /** A checkpoint write finished: `stored` is the engine's checkpoint, undefined if it failed. */
  #done(conn: Connection, target: number, stored: number | undefined): void {
    if (stored !== undefined) {
      conn.savedSeq = Math.max(conn.savedSeq, target);
      if (stored < target) this.#host.fenced(this.#owner, conn);
    }
    conn.checkpointWriting = false;
    // Keep writing newer acks, even after the socket closed: nothing acked is lost.
    if (conn.ackedSeq > conn.savedSeq && conn.savedSeq >= target) this.checkpoint(conn);
  }
}
