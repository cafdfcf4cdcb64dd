import { isoTimestamp, normalizeEnvelope, validateEventBody, type Envelope } from '../protocol/envelope.ts';
import { isEventType, mayPublish } from '../protocol/event-types.ts';
import type { Role } from '../protocol/roles.ts';
import type { PubFrame } from '../protocol/frames.ts';
import { GatewayError } from '../errors/gateway-error.ts';

/**
 * Turns what a client sent (a `pub` frame, or an HTTP ingest body) into a canonical
 * envelope, applying the same rules on both paths: schema v1 with legacy-key
 * normalization, then the producer rights of PROTOCOL.md §1. Throws a GatewayError
 * (`invalid_event` or `forbidden_type`).
 */
export function eventFromPub(frame: PubFrame, sessionId: string, role: Role, now: number): Envelope {
  assertMayPublish(frame.type, role);
  // Built in canonical form, with no legacy keys: the full check is all it needs, not
  // normalizeEnvelope's key scan and copy (this is every publish's path).
  const result = validateEventBody({
    eventId: frame.id,
    sessionId,
    ts: frame.ts ?? isoTimestamp(now),
    type: frame.type,
    // not known to be an object yet: validateEventBody checks it
    payload: frame.payload as Envelope['payload'],
    schemaVersion: 1,
  });
  if (!result.ok) throw new GatewayError('invalid_event', result.message);
  return result.value;
}

/**
 * An HTTP ingest body is an envelope; `sessionId`, `ts` and `schemaVersion` may be left
 * out (the path and the clock fill them), and so may `eventId`, in which case the
 * gateway makes a ULID — but then a retried request is a new event.
 */
export function eventFromHttp(
  body: unknown,
  sessionId: string,
  role: Role,
  now: number,
  newId: () => string,
): Envelope {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new GatewayError('invalid_event', 'the body must be a JSON object');
  }
  const input: Record<string, unknown> = { ...(body as Record<string, unknown>) };
  if (input.sessionId !== undefined && input.sessionId !== sessionId) {
    throw new GatewayError('invalid_event', 'sessionId does not match the path');
  }
  input.sessionId = sessionId;
  if (input.eventId === undefined) input.eventId = newId();
  if (input.ts === undefined && input.timestamp === undefined) input.ts = isoTimestamp(now);
  if (input.schemaVersion === undefined && input.version === undefined) input.schemaVersion = 1;
  return checked(input, role);
}

function assertMayPublish(type: unknown, role: Role): void {
  if (typeof type === 'string' && isEventType(type) && !mayPublish(role, type)) {
    throw new GatewayError('forbidden_type', `role "${role}" may not publish "${type}"`);
  }
}

function checked(input: unknown, role: Role): Envelope {
  assertMayPublish((input as { type?: unknown }).type, role);
  const result = normalizeEnvelope(input);
  if (!result.ok) throw new GatewayError('invalid_event', result.message);
  return result.value;
}
