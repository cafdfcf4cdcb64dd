import type { SubscriberRecord } from '../engine/engine.ts';
import { GatewayError } from '../errors/gateway-error.ts';
import type { ResumeClaims } from '../auth/resume-token.ts';
import type { Connection } from './connection.ts';
import { Mailbox } from './mailbox.ts';

/** A resume waiting for its turn (see ResumeQueue). */
export interface QueuedResume {
  conn: Connection;
  claims: ResumeClaims;
  lastSeq: number | undefined;
  epoch: string | undefined;
  resolve(): void;
  reject(err: unknown): void;
}

/**
 * What a resume tells the engine the client holds: its lastSeq, stored with the takeover
 * so the position survives whatever then happens to the connection (superseded by the
 * next resume of the same burst before it could write a checkpoint, say). A socket that
 * closed during its hello claims nothing.
 */
export function claimedAck(r: QueuedResume): number | undefined {
  return r.conn.state === 'closed' ? undefined : r.lastSeq;
}

/** What the queue needs of its owner, the session actor; one host serves every actor (see AppendHost). */
export interface ResumeHost<O> {
  /** Before a run: the actor watches the session and knows its head. */
  prepare(owner: O): Promise<void>;
  /** The actor's epoch and head now (a run's checks read them as the run goes). */
  epoch(owner: O): string;
  head(owner: O): number;
  /** The engine's takeover of the resume's subscriber. */
  takeover(owner: O, r: QueuedResume): Promise<SubscriberRecord | undefined>;
  /** Applies a takeover's result to the resuming connection; throws when refused. */
  resumed(owner: O, r: QueuedResume, record: SubscriberRecord | undefined): void;
  /** A resume whose lastSeq is beyond the head: the actor asks the stream first. */
  resumeAlone(owner: O, r: QueuedResume): Promise<void>;
}

/**
 * A session's resumes (`hello` with `resume`), run in arrival order: "the resume
 * processed last wins" is then well defined on this node.
 *
 * Resumes that arrive while a run is out wait and then run together: their takeovers are
 * made in arrival order without waiting for each other's round trip (the engine applies
 * them in that order, one script per tick), and their results are applied in that same
 * order, exactly as if each had run on its own. A resume that needs a look at the stream
 * first (its lastSeq is beyond this node's head) runs on its own at its place.
 */
export class ResumeQueue<O> {
  readonly #host: ResumeHost<O>;
  readonly #owner: O;
  readonly #max: number;
  readonly #mailbox: Mailbox;
  /** Resumes waiting for the mailbox; #queued: a run of them is queued there. */
  readonly #waiting: QueuedResume[] = [];
  #queued = false;

  constructor(max: number, host: ResumeHost<O>, owner: O) {
    this.#max = max;
    this.#host = host;
    this.#owner = owner;
    this.#mailbox = new Mailbox(max);
  }

  /** Settles once the resume ran: attached, or refused with the reason. */
  push(conn: Connection, claims: ResumeClaims, lastSeq?: number, epoch?: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.#waiting.length >= this.#max) {
        reject(new GatewayError('overloaded'));
        return;
      }
      this.#waiting.push({ conn, claims, lastSeq, epoch, resolve, reject });
      if (this.#queued) return;
      this.#queued = true;
      this.#mailbox.run(() => this.#runWaiting()).catch(() => {});
    });
  }

  /** Resolves once every resume queued so far has run (for shutdown). */
  drain(): Promise<void> {
    return this.#mailbox.drain();
  }

  /** Runs every resume queued so far, in arrival order. */
  async #runWaiting(): Promise<void> {
    this.#queued = false;
    const queued = this.#waiting.splice(0);
    try {
      await this.#host.prepare(this.#owner);
    } catch (err) {
      for (const r of queued) r.reject(err);
      return;
    }
    try {
      await this.#inOrder(queued);
    } catch (err) {
      // Not expected: whatever is still waiting fails rather than hangs (settled ones stay).
      for (const r of queued) r.reject(err);
    }
  }

  /**
   * A run holds resumes of distinct subscribers only: takeovers of different subscribers
   * do not depend on each other, whatever order the engine applies them in. A second
   * resume of a subscriber in the run starts a new run after the first one's result,
   * so "the resume processed last wins" never depends on the engine's order.
   */
  async #inOrder(queued: readonly QueuedResume[]): Promise<void> {
    const host = this.#host;
    const owner = this.#owner;
    let run: QueuedResume[] = [];
    const inRun = new Set<string>();
    for (const r of queued) {
      const subscriberId = r.claims.subscriberId;
      if (inRun.has(subscriberId)) {
        await this.#takeovers(run);
        run = [];
        inRun.clear();
      }
      // Every refusal is decided before the takeover: a refused resume must leave the
      // subscriber (and its current connection) exactly as it was.
      if (r.epoch !== undefined && r.epoch !== host.epoch(owner)) {
        r.reject(new GatewayError('history_gone', 'epoch changed'));
        continue;
      }
      if (r.lastSeq === undefined || r.lastSeq <= host.head(owner)) {
        run.push(r);
        inRun.add(subscriberId);
        continue;
      }
      await this.#takeovers(run);
      run = [];
      inRun.clear();
      await host.resumeAlone(owner, r).then(
        () => r.resolve(),
        (err: unknown) => r.reject(err),
      );
    }
    await this.#takeovers(run);
  }

  /** The takeovers of resumes that passed their checks, made together, applied in order. */
  async #takeovers(run: readonly QueuedResume[]): Promise<void> {
    if (run.length === 0) return;
    const host = this.#host;
    const owner = this.#owner;
    const results = await Promise.allSettled(run.map((r) => host.takeover(owner, r)));
    run.forEach((r, i) => {
      const result = results[i]!;
      if (result.status === 'rejected') return r.reject(result.reason);
      try {
        host.resumed(owner, r, result.value);
        r.resolve();
      } catch (err) {
        r.reject(err);
      }
    });
  }
}
