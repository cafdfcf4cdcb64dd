import type { SessionPosition } from './engine.ts';

/**
 * The order of session listings (Engine.listSessions), shared by the engines: newest
 * first by `createdAt`, then by id. Both are folded into one string key whose ascending
 * (code-unit) order is the listing order: the redis engine keeps the keys as members of
 * a lexicographically ordered sorted set, the memory engine as a sorted array.
 *
 *   <15 digits: MAX_MS − createdAt in ms, zero-padded>:<id>
 *
 * A `createdAt` that is not a valid time sorts as the epoch (oldest).
 */
const MAX_MS = 10 ** 15 - 1;
const DIGITS = 15;

function millis(createdAt: string): number {
  const ms = Date.parse(createdAt);
  return Number.isFinite(ms) ? Math.min(MAX_MS, Math.max(0, ms)) : 0;
}

export function sessionOrderKey(createdAt: string, id: string): string {
  return `${String(MAX_MS - millis(createdAt)).padStart(DIGITS, '0')}:${id}`;
}

/** The session id an order key names. */
export function idOfOrderKey(key: string): string {
  return key.slice(DIGITS + 1);
}

/** The listing position of an order key (its createdAt normalised to an ISO time). */
export function positionOfOrderKey(key: string): SessionPosition {
  const ms = MAX_MS - Number(key.slice(0, DIGITS));
  return { createdAt: new Date(ms).toISOString(), id: idOfOrderKey(key) };
}
