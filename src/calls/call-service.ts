import type { EventIdSeal } from '../auth/event-id-seal.ts';
import type { Principal } from '../auth/jwt.ts';
import { assertCanRead } from '../auth/access.ts';
import type { Engine, SessionPosition, SessionRecord } from '../engine/engine.ts';
import type { Clock } from '../util/clock.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { isoTimestamp, normalizeEnvelope, type Envelope } from '../protocol/envelope.ts';
import { GatewayError } from '../errors/gateway-error.ts';
import { newUlid, randomId } from '../util/ids.ts';
import { decide, StateEvents, TerminalStates, type TransitionRequest } from './lifecycle.ts';

/** Bounds of `GET /v1/call/sessions?limit=`. */
export const LIST_LIMIT_DEFAULT = 20;
export const LIST_LIMIT_MAX = 100;

/**
 * A session changes at most five times, so a transition that keeps losing the
 * compare-and-set to other changes gives up after this many decisions (it cannot
 * happen with the lifecycle as it is; the bound keeps the loop obviously finite).
 */
const MAX_DECISIONS = 8;

/**
 * Call sessions: create (owner = token subject, tenant = token `tid`, idempotent by
 * key), read, list, and move through the lifecycle (./lifecycle.ts). Every change is
 * one engine step that stores the record and appends the `call.*` event announcing it;
 * session actors on every node learn of it through the engine's notices like of any
 * other append, and a terminal change ends the stream (subscribers get `eos`).
 */
export class CallService {
  readonly #engine: Engine;
  readonly #clock: Clock;
  readonly #metrics: Metrics | undefined;
  readonly #logger: Logger | undefined;
  readonly #eventIds: EventIdSeal;

  /**
   * With `metrics`, engine calls are timed and the events they append counted; with
   * `logger`, every applied transition is logged. `eventIds` seals the ids of the
   * lifecycle events, so no client can publish one first (see EventIdSeal).
   */
  constructor(deps: {
    engine: Engine;
    clock: Clock;
    eventIds: EventIdSeal;
    metrics?: Metrics;
    logger?: Logger;
  }) {
    this.#engine = deps.engine;
    this.#clock = deps.clock;
    this.#eventIds = deps.eventIds;
    this.#metrics = deps.metrics;
    this.#logger = deps.logger;
  }

  async create(
    principal: Principal,
    input: { metadata?: Record<string, string> },
    idempotencyKey?: string,
  ): Promise<{ session: SessionRecord; created: boolean }> {
    const now = this.#clock.now();
    const id = randomId('cs');
    const created = gatewayEvent(`call.created:${id}`, id, now, StateEvents.created, {
      state: 'created',
      version: 1,
    });
    const result = await this.#time('createSession', () =>
      this.#engine.createSession(
        {
          id,
          tenantId: principal.tenantId,
          ownerId: principal.userId,
          createdAt: isoTimestamp(now),
          ...(input.metadata ? { metadata: input.metadata } : {}),
        },
        idempotencyKey,
        created,
      ),
    );
    if (result.created) this.#metrics?.eventsAppended.inc();
    else if (!sameMetadata(result.session.metadata, input.metadata)) {
      // A retry carries the request it retries: the same key with another body is a
      // client bug, and answering with the first session would hide it.
      throw new GatewayError('idempotency_conflict');
    }
    return result;
  }

  async get(principal: Principal, sessionId: string): Promise<SessionRecord> {
    return assertCanRead(principal, await this.#engine.getSession(sessionId));
  }

  /**
   * The caller's sessions, newest first. Role `user` sees its own; `agent`, `service`
   * and `operator` see the whole tenant's (they may read every session of it), or one
   * owner's with `ownerId`. A user asking for another owner's is `forbidden`.
   */
  async list(
    principal: Principal,
    query: { limit: number; after?: SessionPosition; ownerId?: string },
  ): Promise<{ sessions: SessionRecord[]; next?: SessionPosition }> {
    let ownerId = query.ownerId;
    if (principal.role === 'user') {
      if (ownerId !== undefined && ownerId !== principal.userId) {
        throw new GatewayError('forbidden', 'a user lists only its own sessions');
      }
      ownerId = principal.userId;
    }
    const tenantId = principal.tenantId;
    return this.#time('listSessions', () =>
      this.#engine.listSessions({
        tenantId,
        limit: query.limit,
        ...(ownerId !== undefined ? { ownerId } : {}),
        ...(query.after ? { after: query.after } : {}),
      }),
    );
  }

  /**
   * Moves a session (see lifecycle.ts for the rules). Who may: whoever may read it (the
   * owner, and the tenant's agents, services and operators). Decides on the current
   * record and applies with a compare-and-set on its version; when another change won
   * in between, decides again on the record that won (which may make this a replay).
   * `changed` is false for a replay.
   */
  async transition(
    principal: Principal,
    sessionId: string,
    request: TransitionRequest,
  ): Promise<{ session: SessionRecord; changed: boolean }> {
    let current = await this.get(principal, sessionId);
    for (let attempt = 1; ; attempt++) {
      const now = this.#clock.now();
      const decision = decide(current, request, isoTimestamp(now));
      if (decision.kind === 'replay') return { session: current, changed: false };
      if (decision.kind === 'reject') throw new GatewayError(decision.code, decision.message);
      const { next, event } = decision;
      const eventId = this.#eventIds.seal(`${event.type}:${sessionId}:v${next.version}`);
      const envelope = transitionEvent(eventId, sessionId, now, event.type, event.payload);
      const change = {
        expectedVersion: current.version,
        next,
        event: envelope,
        endStream: TerminalStates.has(next.state),
      };
      const result = await this.#time('transitionSession', () =>
        this.#engine.transitionSession(sessionId, change),
      );
      switch (result.status) {
        case 'applied':
          if (!result.outcome.duplicate) this.#metrics?.eventsAppended.inc();
          this.#logger?.info(
            {
              sessionId,
              from: current.state,
              to: next.state,
              version: next.version,
              seq: result.outcome.seq,
            },
            'call session transition',
          );
          return { session: result.session, changed: true };
        case 'not_found':
          throw new GatewayError('session_not_found');
        case 'conflict':
          if (attempt >= MAX_DECISIONS) {
            throw new GatewayError('version_conflict', 'the session keeps changing; read it and retry');
          }
          current = result.current;
      }
    }
  }

  /** Generates an event id for producers that have none. */
  newEventId(): string {
    return newUlid();
  }

  #time<T>(op: string, call: () => Promise<T>): Promise<T> {
    return this.#metrics ? this.#metrics.time(op, call) : call();
  }
}

/**
 * A lifecycle event. Its id names the session and the version it announces (sealed), so
 * each change has exactly one. The payload comes from the caller's fields: a format the
 * event schema refuses (a provider name with capitals) is the caller's `bad_request`.
 */
function transitionEvent(
  eventId: string,
  sessionId: string,
  now: number,
  type: string,
  payload: object,
): Envelope {
  const result = normalizeEnvelope(envelope(eventId, sessionId, now, type, payload));
  if (!result.ok) throw new GatewayError('bad_request', result.message);
  return result.value;
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
  const result = normalizeEnvelope(envelope(eventId, sessionId, now, type, payload));
  if (!result.ok) throw new GatewayError('internal', `gateway event ${type} is invalid: ${result.message}`);
  return result.value;
}

function envelope(eventId: string, sessionId: string, now: number, type: string, payload: object): object {
  return { eventId, sessionId, ts: isoTimestamp(now), type, payload, schemaVersion: 1 };
}

/** Metadata is the only field of a create request: equal maps, in any key order. */
function sameMetadata(a: Record<string, string> | undefined, b: Record<string, string> | undefined): boolean {
  const ka = a ? Object.keys(a) : [];
  const kb = b ? Object.keys(b) : [];
  if (ka.length !== kb.length) return false;
  return ka.every((k) => Object.hasOwn(b!, k) && a![k] === b![k]);
}
