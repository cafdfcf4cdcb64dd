import type { JwtVerifier } from '../../auth/jwt.ts';
import { LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, type CallService } from '../../calls/call-service.ts';
import { parseTransitionRequest } from '../../calls/lifecycle.ts';
import { decodeCursor, encodeCursor } from '../../calls/session-cursor.ts';
import type { Engine } from '../../engine/engine.ts';
import { GatewayError } from '../../errors/gateway-error.ts';
import type { ActorRegistry } from '../../session/actor-registry.ts';
import { eventFromHttp } from '../../session/client-event.ts';
import type { Clock } from '../../util/clock.ts';
import { authenticate } from './auth.ts';
import type { HttpContext, HttpReply } from './context.ts';

export interface SessionRouteDeps {
  jwt: JwtVerifier;
  calls: CallService;
  engine: Engine;
  registry: ActorRegistry;
  clock: Clock;
  historyPageMax: number;
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/** `POST /v1/call/sessions`: 201 with the session; a repeated Idempotency-Key returns the same one. */
export async function createSession(deps: SessionRouteDeps, ctx: HttpContext): Promise<HttpReply> {
  const principal = await authenticate(deps.jwt, ctx);
  const key = ctx.headers.idempotencyKey;
  if (key !== '' && !IDEMPOTENCY_KEY.test(key)) {
    throw new GatewayError('bad_request', 'Idempotency-Key must be 1–255 visible ASCII characters');
  }
  const metadata = parseMetadata(ctx.body);
  const { session, created } = await deps.calls.create(
    principal,
    metadata ? { metadata } : {},
    key || undefined,
  );
  return { status: 201, body: session, headers: created ? {} : { 'idempotent-replayed': 'true' } };
}

/** `GET /v1/call/sessions/:id`. */
export async function getSession(deps: SessionRouteDeps, ctx: HttpContext): Promise<HttpReply> {
  const principal = await authenticate(deps.jwt, ctx);
  return { status: 200, body: await deps.calls.get(principal, ctx.params[0]!) };
}

/**
 * `GET /v1/call/sessions?limit=&cursor=&owner=`: the caller's sessions, newest first
 * (see CallService.list); `nextCursor` continues, and is absent on the last page.
 */
export async function listSessions(deps: SessionRouteDeps, ctx: HttpContext): Promise<HttpReply> {
  const principal = await authenticate(deps.jwt, ctx);
  const limit = intParam(ctx.query.get('limit'), LIST_LIMIT_DEFAULT, 'limit');
  if (limit < 1 || limit > LIST_LIMIT_MAX) {
    throw new GatewayError('bad_request', `limit must be between 1 and ${LIST_LIMIT_MAX}`);
  }
  const cursor = ctx.query.get('cursor');
  const owner = ctx.query.get('owner');
  const page = await deps.calls.list(principal, {
    limit,
    ...(cursor ? { after: decodeCursor(cursor) } : {}),
    ...(owner ? { ownerId: owner } : {}),
  });
  return {
    status: 200,
    body: { sessions: page.sessions, ...(page.next ? { nextCursor: encodeCursor(page.next) } : {}) },
  };
}

/**
 * `POST /v1/call/sessions/:id/transitions` `{ to, …fields, expectedVersion? }`: 200 with
 * the session after the change; a replay of the change that produced the current state is
 * 200 with the session unchanged (and `idempotent-replayed: true`).
 */
export async function transitionSession(deps: SessionRouteDeps, ctx: HttpContext): Promise<HttpReply> {
  const principal = await authenticate(deps.jwt, ctx);
  const request = parseTransitionRequest(ctx.body);
  const { session, changed } = await deps.calls.transition(principal, ctx.params[0]!, request);
  return { status: 200, body: session, headers: changed ? {} : { 'idempotent-replayed': 'true' } };
}

/** `GET /v1/call/sessions/:id/events?after=&limit=`: a page of history. */
export async function listEvents(deps: SessionRouteDeps, ctx: HttpContext): Promise<HttpReply> {
  const principal = await authenticate(deps.jwt, ctx);
  const sessionId = ctx.params[0]!;
  await deps.calls.get(principal, sessionId);
  const after = intParam(ctx.query.get('after'), 0, 'after');
  const limit = Math.min(intParam(ctx.query.get('limit'), 100, 'limit'), deps.historyPageMax);
  if (limit < 1) throw new GatewayError('bad_request', 'limit must be at least 1');
  const page = await deps.engine.read(sessionId, after, limit);
  return {
    status: 200,
    body: {
      events: page.events,
      headSeq: page.headSeq,
      epoch: page.epoch,
      firstSeq: page.firstSeq,
      ...(page.endedAt !== undefined ? { endedAt: page.endedAt } : {}),
    },
  };
}

/** `POST /v1/call/sessions/:id/events`: ingest, with the same validation and rights as `pub`. */
export async function ingestEvent(deps: SessionRouteDeps, ctx: HttpContext): Promise<HttpReply> {
  const principal = await authenticate(deps.jwt, ctx);
  const sessionId = ctx.params[0]!;
  await deps.calls.get(principal, sessionId);
  const event = eventFromHttp(ctx.body, sessionId, principal.role, deps.clock.now(), () =>
    deps.calls.newEventId(),
  );
  const outcome = await deps.registry.get(sessionId).publish(event);
  return {
    status: outcome.duplicate ? 200 : 201,
    body: { seq: outcome.seq, eventId: event.eventId, duplicate: outcome.duplicate },
  };
}

function intParam(raw: string | null, fallback: number, name: string): number {
  if (raw === null || raw === '') return fallback;
  if (!/^\d{1,15}$/.test(raw))
    throw new GatewayError('bad_request', `${name} must be a non-negative integer`);
  return Number(raw);
}

function parseMetadata(body: unknown): Record<string, string> | undefined {
  if (body === undefined) return undefined;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new GatewayError('bad_request', 'the body must be a JSON object');
  }
  const { metadata, ...rest } = body as { metadata?: unknown };
  if (Object.keys(rest).length > 0)
    throw new GatewayError('bad_request', `unknown field "${Object.keys(rest).join(', ')}"`);
  if (metadata === undefined) return undefined;
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) {
    throw new GatewayError('bad_request', 'metadata must be an object of strings');
  }
  const entries = Object.entries(metadata);
  if (
    entries.length > 32 ||
    entries.some(([k, v]) => typeof v !== 'string' || k.length > 64 || v.length > 512)
  ) {
    throw new GatewayError(
      'bad_request',
      'metadata: at most 32 string values (keys ≤ 64, values ≤ 512 chars)',
    );
  }
  return Object.fromEntries(entries);
}
