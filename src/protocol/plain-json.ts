import { isWellFormed } from '../util/well-formed.ts';

/** Deepest nesting an event payload may have (objects and arrays inside one another). */
export const MAX_PAYLOAD_DEPTH = 32;

/**
 * Whether `value` is plain JSON data: null, booleans, finite numbers, well-formed strings
 * (see well-formed.ts), arrays and plain objects, nested at most `maxDepth` deep. A MessagePack decoder hands back more (a
 * BigInt, a Date, a Set, a Uint8Array viewing the socket's buffer, which uWS detaches
 * after the callback, a cycle of references), and JSON.parse takes any depth. None of
 * those could be stored as JSON text, cloned or sent to a JSON subscriber: one such event
 * failed its append after taking a seq, or failed every later read of its session.
 */
export function isPlainJson(value: unknown, maxDepth = MAX_PAYLOAD_DEPTH): boolean {
  switch (typeof value) {
    case 'string':
      return isWellFormed(value);
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value);
    case 'object':
      break;
    default:
      return false;
  }
  if (value === null) return true;
  if (maxDepth === 0) return false;
  if (Array.isArray(value)) {
    for (const item of value as unknown[]) if (!isPlainJson(item, maxDepth - 1)) return false;
    return true;
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return false;
  for (const key in value) {
    if (!isWellFormed(key) || !isPlainJson((value as Record<string, unknown>)[key], maxDepth - 1))
      return false;
  }
  return true;
}
