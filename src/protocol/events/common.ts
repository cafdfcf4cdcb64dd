import { Type, type Static, type TLiteral, type TSchema, type TUnion } from '@sinclair/typebox';

/**
 * Building blocks shared by the event families of schema v1. Every payload is a closed
 * object (`additionalProperties: false`): a key the schema does not name is rejected,
 * so a typo in a producer fails loudly instead of being stored and ignored.
 */

/** Options for a closed object schema. */
export function closed(description: string): { additionalProperties: false; description: string } {
  return { additionalProperties: false, description };
}

/** `eventId`: 1–128 chars of `[A-Za-z0-9._:-]` (PROTOCOL.md §1). */
export const EventIdPattern = '^[A-Za-z0-9._:-]{1,128}$';

/**
 * RFC 3339 UTC with exactly three fraction digits and `Z` (`2026-11-28T21:33:16.123Z`).
 * The pattern alone accepts impossible dates (Feb 31, 24:00); `isCanonicalTimestamp`
 * is the complete check and the validators apply it wherever a timestamp appears.
 */
export const TimestampPattern = '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z$';

/** `family.name[.name[.name]]`, lowercase; names may contain `_`. */
export const EventTypePattern = '^[a-z]+(\\.[a-z_]+){1,3}$';

/** The last timestamp timestampOf wrote, and the last one isCanonicalTimestamp accepted. */
let lastMs = 0;
let lastWritten = new Date(0).toISOString();
let lastAccepted = lastWritten;

/**
 * `new Date(ms).toISOString()`, remembered for the next call: the publishes of one
 * millisecond share one string (the gateway stamps every `pub` without `ts`).
 */
export function timestampOf(ms: number): string {
  if (ms !== lastMs) {
    lastWritten = new Date(ms).toISOString();
    lastMs = ms;
  }
  return lastWritten;
}

/** True when `value` is a real instant written exactly as `Date#toISOString` writes it. */
export function isCanonicalTimestamp(value: string): boolean {
  // What toISOString wrote is canonical by definition; so is what passed just before.
  if (value === lastWritten || value === lastAccepted) return true;
  const ms = Date.parse(value);
  const canonical = Number.isFinite(ms) && new Date(ms).toISOString() === value;
  if (canonical) lastAccepted = value;
  return canonical;
}

/** An opaque identifier chosen by a producer or a provider (segment, action, track…). */
export function Id(description: string) {
  return Type.String({ minLength: 1, maxLength: 128, description });
}

/** A machine-readable lowercase token: `a-z`, digits, `_` and `.` (categories, meters, codes). */
export function Token(description: string) {
  return Type.String({ pattern: '^[a-z][a-z0-9_.]{0,63}$', description });
}

/** A timestamp in envelope format, for payload fields. */
export function Timestamp(description: string) {
  return Type.String({ pattern: TimestampPattern, description });
}

/** Human-readable text with a length bound. */
export function Text(maxLength: number, description: string, minLength = 1) {
  return Type.String({ minLength, maxLength, description });
}

/** A non-negative integer count of milliseconds. */
export function DurationMs(description: string) {
  return Type.Integer({ minimum: 0, description });
}

type Literals<T extends string[]> = { [K in keyof T]: TLiteral<T[K]> };

/** A closed set of string values (JSON Schema: `anyOf` of `const`). */
export function OneOf<const T extends [string, ...string[]]>(
  values: T,
  description: string,
): TUnion<Literals<T>> {
  return Type.Union(
    values.map((v) => Type.Literal(v)),
    { description },
  ) as unknown as TUnion<Literals<T>>;
}

/** Ordered severity scale shared by safety flags and action risk. */
export const Severities = ['low', 'medium', 'high', 'critical'] as const;
export type Severity = (typeof Severities)[number];

/**
 * A check JSON Schema cannot express (a relation between two fields, a calendar-valid
 * timestamp). Runs only after the payload passed its schema; returns a message when the
 * payload is invalid. Every refinement is also written in the field's `description`, so
 * clients reading the schema learn the rule.
 */
export type Refinement<S extends TSchema> = (payload: Static<S>) => string | undefined;
export type Refinements<M extends Record<string, TSchema>> = { readonly [K in keyof M]?: Refinement<M[K]> };

/** Message for the first of `fields` that is present but not a canonical timestamp. */
export function badTimestamp(
  payload: Readonly<Record<string, unknown>>,
  fields: readonly string[],
): string | undefined {
  for (const field of fields) {
    const value = payload[field];
    if (typeof value === 'string' && !isCanonicalTimestamp(value)) return `${field}: not a valid time`;
  }
  return undefined;
}
