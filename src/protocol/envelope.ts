import { Type, type Static } from '@sinclair/typebox';
import { compileCheck, type FastCheck } from './closed-check.ts';
import {
  EventIdPattern,
  EventTypePattern,
  isCanonicalTimestamp,
  TimestampPattern,
  timestampOf,
} from './events/common.ts';
import { EventRefinements, EventTypes, isEventType } from './event-types.ts';
import { isPlainJson, MAX_PAYLOAD_DEPTH } from './plain-json.ts';

export { EventIdPattern, EventTypePattern, TimestampPattern, isCanonicalTimestamp };

/**
 * The canonical event envelope, schema v1 (PROTOCOL.md §1). Closed: a key outside the
 * table is rejected. `payload` is only "an object" here; its shape is checked against
 * the type's schema in `validateEventBody`.
 */
export const EnvelopeSchema = Type.Object(
  {
    eventId: Type.String({
      pattern: EventIdPattern,
      description: 'Producer-chosen idempotency key, unique within the session.',
    }),
    sessionId: Type.String({
      minLength: 1,
      maxLength: 128,
      description: 'The call session the event belongs to.',
    }),
    ts: Type.String({
      pattern: TimestampPattern,
      description:
        'When the producer says it happened: RFC 3339 UTC with milliseconds; a calendar-valid time.',
    }),
    type: Type.String({ pattern: EventTypePattern, description: 'One of the supported event types.' }),
    payload: Type.Record(Type.String(), Type.Unknown(), {
      description: 'Checked against the schema of `type`.',
    }),
    schemaVersion: Type.Literal(1),
  },
  { additionalProperties: false, $id: 'lifeos.event.v1' },
);

export type Envelope = Static<typeof EnvelopeSchema>;

/** Canonical key order; normalized envelopes are rebuilt in it. */
const ENVELOPE_KEYS = ['eventId', 'sessionId', 'ts', 'type', 'payload', 'schemaVersion'] as const;

/**
 * The envelope as checked: `payload` only has to be an object, since the type's own check
 * follows (TypeBox's Record check walks Object.entries of every payload for nothing).
 */
const envelopeCheck = compileCheck(
  Type.Object({ ...EnvelopeSchema.properties, payload: Type.Object({}) }, { additionalProperties: false }),
);
const payloadChecks = new Map<string, FastCheck>(
  Object.entries(EventTypes).map(([type, schema]) => [type, compileCheck(schema)]),
);
const refinements = EventRefinements as Readonly<
  Record<string, ((payload: never) => string | undefined) | undefined>
>;

export type Validated<T> = { ok: true; value: T } | { ok: false; code: 'invalid_event'; message: string };

function invalid(message: string): Validated<never> {
  return { ok: false, code: 'invalid_event', message };
}

function firstError(check: FastCheck, value: unknown, where: string): string {
  const e = check.errors.Errors(value).First();
  return e ? `${where}${e.path || '/'}: ${e.message}` : `${where}: invalid`;
}

/** Legacy key → canonical key (PROTOCOL.md §1). */
const LEGACY_KEYS = { timestamp: 'ts', version: 'schemaVersion' } as const;
const CANONICAL_TO_LEGACY = new Map<string, string>(Object.entries(LEGACY_KEYS).map(([l, c]) => [c, l]));

function isLegacyKey(key: string): key is keyof typeof LEGACY_KEYS {
  return Object.hasOwn(LEGACY_KEYS, key);
}

/**
 * Validates an envelope from any producer and returns it in canonical form: a new
 * object with the canonical keys in canonical order (the payload object is shared, not
 * copied).
 *
 * A legacy key (`timestamp`, `version`) is renamed when its canonical key (`ts`,
 * `schemaVersion`) is absent; when both are present they must be strictly equal, and
 * the legacy one is dropped. Any other key outside the table is rejected. Then
 * everything `validateEventBody` checks.
 */
export function normalizeEnvelope(input: unknown): Validated<Envelope> {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    return invalid('envelope must be an object');
  }
  const source = input as Readonly<Record<string, unknown>>;
  for (const key of Object.keys(source)) {
    if (isLegacyKey(key)) {
      const canonical = LEGACY_KEYS[key];
      if (Object.hasOwn(source, canonical) && source[canonical] !== source[key]) {
        return invalid(`both "${key}" and "${canonical}" are present with different values`);
      }
    } else if (!(ENVELOPE_KEYS as readonly string[]).includes(key)) {
      return invalid(`envelope: unknown key "${key}"`);
    }
  }
  const ordered: Record<string, unknown> = {};
  for (const key of ENVELOPE_KEYS) {
    const legacy = CANONICAL_TO_LEGACY.get(key);
    if (Object.hasOwn(source, key)) ordered[key] = source[key];
    else if (legacy !== undefined && Object.hasOwn(source, legacy)) ordered[key] = source[legacy];
  }
  return validateEventBody(ordered as Envelope);
}

/**
 * Checks a canonical envelope completely: its shape (closed, each key's format), that
 * `ts` is a calendar-valid instant, that `type` is supported, that `payload` matches the
 * type's schema, and the type's refinements (relations JSON Schema cannot express). The
 * `Envelope` type does not prove any of this, so server-side producers call it too.
 * Returns the same object when valid.
 */
export function validateEventBody(envelope: Envelope): Validated<Envelope> {
  if (!envelopeCheck(envelope)) return invalid(firstError(envelopeCheck, envelope, 'envelope'));
  if (!isCanonicalTimestamp(envelope.ts)) return invalid('envelope/ts: not a valid time');
  if (!isEventType(envelope.type)) return invalid(`unknown event type "${envelope.type}"`);
  const check = payloadChecks.get(envelope.type)!;
  if (!check(envelope.payload)) return invalid(firstError(check, envelope.payload, 'payload'));
  if (!isPlainJson(envelope.payload)) {
    return invalid(
      `payload: only JSON values (objects, arrays, well-formed strings, finite numbers, booleans, null), nested at most ${MAX_PAYLOAD_DEPTH} deep`,
    );
  }
  const refinementError = refinements[envelope.type]?.(envelope.payload as never);
  if (refinementError !== undefined) return invalid(`payload/${refinementError}`);
  return { ok: true, value: envelope };
}

/** RFC 3339 UTC with milliseconds, as the envelope wants it. */
export function isoTimestamp(ms: number): string {
  return timestampOf(ms);
}
