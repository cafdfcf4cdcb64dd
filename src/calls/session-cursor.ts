import type { SessionPosition } from '../engine/engine.ts';
import { GatewayError } from '../errors/gateway-error.ts';

/**
 * The `cursor` of session listings: opaque to clients, base64url of the JSON
 * `[createdAt, id]` of the last session position a page covered.
 */
export function encodeCursor(position: SessionPosition): string {
  return Buffer.from(JSON.stringify([position.createdAt, position.id])).toString('base64url');
}

/** Throws GatewayError `bad_request` for anything `encodeCursor` did not make. */
export function decodeCursor(cursor: string): SessionPosition {
  let parsed: unknown;
  try {
    if (!/^[A-Za-z0-9_-]{1,2048}$/.test(cursor)) throw new Error('not base64url');
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new GatewayError('bad_request', 'cursor is not a cursor this API returned');
  }
  if (
    !Array.isArray(parsed) ||
    parsed.length !== 2 ||
    typeof parsed[0] !== 'string' ||
    typeof parsed[1] !== 'string' ||
    parsed[1] === ''
  ) {
    throw new GatewayError('bad_request', 'cursor is not a cursor this API returned');
  }
  return { createdAt: parsed[0], id: parsed[1] };
}
