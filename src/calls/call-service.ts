import type { Principal } from '../auth/jwt.ts';
import { assertCanRead } from '../auth/access.ts';
import type { Engine, SessionRecord } from '../engine/engine.ts';
import type { ActorRegistry } from '../session/actor-registry.ts';
import type { Clock } from '../util/clock.ts';
import { isoTimestamp, normalizeEnvelope, type Envelope } from '../protocol/envelope.ts';
import { GatewayError } from '../errors/gateway-error.ts';
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
      const sessionId = result.session.id;
      await this.#registry
        .get(sessionId)
        .publish(
          gatewayEvent(`call.created:${sessionId}`, sessionId, now, 'call.created', { state: 'created' }),
        );
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
    const outcome = await actor.publish(
      gatewayEvent(`call.ended:${sessionId}`, sessionId, this.#clock.now(), 'call.ended', { reason }),
    );
    return { seq: outcome.seq };
  }

  /** Generates an event id for producers that have none. */
  newEventId(): string {
    return newUlid();
  }
}

/**
 * An event the gateway itself emits, checked against schema v1 like any other: a bug
 * here must fail loudly, not store an event clients cannot parse.
 */
function gatewayEvent(
  eventId: string,
  sessionId: string,
  now: number,
  type: string,
  payload: object,
): Envelope {
  const result = normalizeEnvelope({
    eventId,
    sessionId,
    ts: isoTimestamp(now),
    type,
    payload,
    schemaVersion: 1,
  });
  if (!result.ok) throw new GatewayError('internal', `gateway event ${type} is invalid: ${result.message}`);
  return result.value;
}
