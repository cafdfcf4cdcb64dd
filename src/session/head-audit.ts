import type { Engine } from '../engine/engine.ts';
import type { WarnSink } from '../observability/log-throttle.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Clock } from '../util/clock.ts';
import type { ActorRegistry } from './actor-registry.ts';
import type { SessionActor } from './session-actor.ts';

export interface HeadAuditDeps {
  registry: ActorRegistry;
  engine: Engine;
  clock: Clock;
  metrics: Metrics;
  warnings: WarnSink;
  /** HEAD_AUDIT_MS: how long a session with connections here may go without news of its head. */
  quietMs: number;
}

/** Sessions per engine call (one pipeline on one Redis). */
export const AUDIT_BATCH = 500;
/** Sessions per round at most; the rest are still due at the next round. */
export const AUDIT_ROUND_MAX = 5_000;
/** How often a round looks for due sessions, at most: a lost notice waits quietMs plus this. */
const AUDIT_TICK_MAX_MS = 1_000;

/**
 * Anti-entropy for cross-node notices (ARCHITECTURE-NOTES decision 6: the stream is the
 * truth, notices only the fast path). A notice can be lost without the pub/sub connection
 * dropping, which is when every session resyncs: a notice sent after a WAIT that failed,
 * a sharded channel moved with its slot, a subscription that failed and is retried. The
 * next notice of the session carries the lost head with it, so a busy session heals by
 * itself; a quiet one would hold its subscribers on this node back until its next event.
 *
 * So, per round: the sessions with connections here that have heard nothing of their
 * head for `quietMs` (SessionActor#auditDue) have their heads read in batches
 * (Engine.peekHeads, read only), and an actor behind the stream fills the gap as if the
 * notice had come (`lifeos_remote_notices_total{kind="anti_entropy"}`). Each session is
 * read at most once per `quietMs`, busy ones never. One round at a time: while Redis is
 * slow or away, rounds do not pile up, and the sessions stay due for the next one. On a
 * cluster a master that does not answer leaves only its own sessions due (their heads
 * come back null); the rest are audited.
 */
export class HeadAudit {
  readonly #deps: HeadAuditDeps;
  #timer: NodeJS.Timeout | undefined;
  #round: Promise<void> | undefined;

  constructor(deps: HeadAuditDeps) {
    this.#deps = deps;
  }

  start(): void {
    if (this.#timer || this.#deps.quietMs <= 0) return;
    const every = Math.min(this.#deps.quietMs, AUDIT_TICK_MAX_MS);
    this.#timer = setInterval(() => void this.round(), every);
    this.#timer.unref();
  }

  /** Stops the rounds and waits for the one under way. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#round;
  }

  /** One round now (the timer's, and tests'); joins the one under way if there is one. */
  round(): Promise<void> {
    this.#round ??= this.#audit().finally(() => (this.#round = undefined));
    return this.#round;
  }

  async #audit(): Promise<void> {
    const { registry, engine, clock, metrics, quietMs } = this.#deps;
    const now = clock.now();
    const due: SessionActor[] = [];
    for (const actor of registry.actors()) {
      if (!actor.auditDue(now, quietMs)) continue;
      due.push(actor);
      if (due.length === AUDIT_ROUND_MAX) break;
    }
    for (let at = 0; at < due.length; at += AUDIT_BATCH) {
      const batch = due.slice(at, at + AUDIT_BATCH);
      try {
        const heads = await engine.peekHeads(batch.map((actor) => actor.sessionId));
        let unread = 0;
        batch.forEach((actor, i) => {
          const head = heads[i];
          // its master did not answer (a cluster): the session stays due for the next round
          if (head === null) unread++;
          else actor.audited(head);
        });
        metrics.headAudits.inc(batch.length - unread);
        if (unread > 0) this.#deps.warnings.warn({ sessions: unread }, 'head audit: some heads not read');
      } catch (err) {
        // Redis is away: these sessions stay due. Its reconnect resyncs every session anyway.
        this.#deps.warnings.warn({ err, sessions: due.length - at }, 'head audit failed');
        return;
      }
    }
  }
}
