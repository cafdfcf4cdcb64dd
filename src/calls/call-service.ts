import type { Principal } from '../auth/jwt.ts';
import { assertCanRead } from '../auth/access.ts';
import type { Engine, SessionRecord } from '../engine/engine.ts';
import type { ActorRegistry } from '../session/actor-registry.ts';
import type { Clock } from '../util/clock.ts';
import { isoTimestamp } from '../protocol/envelope.ts';
import { newUlid, randomId } from '../util/ids.ts';

/**
 * Call sessions, the minimal part the realtime path needs: create (owner = token subject,
 * tenant = token `tid`, idempotent by key), read, and end. The full lifecycle with
 * transitions and provider correlation is built on this in the call-session issue.
 */
export class CallService {
  readonly #engine: Engine;
  readonly #registry: ActorRegistry;
  readonly #clock: Clock;

  constructor(deps: { engine: Engine; registry: ActorRegistry; clock: Clock }) {
    this.#engine = deps.engine;
    this.#registry = deps.registry;
    this.#clock = deps.clock;
  }

  async create(
    principal: Principal,
    input: { metadata?: Record<string, string> },
    idempotencyKey?: string,
  ): Promise<{ session: SessionRecord; created: boolean }> {
    const now = this.#clock.now();
    const result = await this.#engine.createSession(
      {
        id: randomId('cs'),
        tenantId: principal.tenantId,
        ownerId: principal.userId,
        createdAt: isoTimestamp(now),
        ...(input.metadata ? { metadata: input.metadata } : {}),
      },
      idempotencyKey,
    );
    if (result.created) {
      await this.#registry.get(result.session.id).publish({
        eventId: `call.created:${result.session.id}`,
        sessionId: result.session.id,
        ts: isoTimestamp(now),
        type: 'call.created',
        payload: { state: 'created' },
        schemaVersion: 1,
      });
    }
    return result;
  }

  async get(principal: Principal, sessionId: string): Promise<SessionRecord> {
    return assertCanRead(principal, await this.#engine.getSession(sessionId));
  }

  /**
   * Ends the session's stream with `call.ended`: subscribers get every event, then `eos`.
   * Idempotent: the event id is fixed per session, so a repeat appends nothing.
   */
  async end(principal: Principal, sessionId: string, reason: string): Promise<{ seq: number }> {
    await this.get(principal, sessionId);
    const actor = this.#registry.get(sessionId);
    const head = await this.#engine.head(sessionId);
    if (head.endedAt !== undefined) return { seq: head.endedAt };
    const outcome = await actor.publish({
      eventId: `call.ended:${sessionId}`,
      sessionId,
      ts: isoTimestamp(this.#clock.now()),
      type: 'call.ended',
      payload: { reason },
      schemaVersion: 1,
    });
    return { seq: outcome.seq };
  }

  /** Generates an event id for producers that have none. */
  newEventId(): string {
    return newUlid();
  }
}
