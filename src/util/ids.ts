import { monotonicFactory } from 'ulid';
import { randomBase64url } from './random-pool.ts';

const ulid = monotonicFactory();

/** A ULID: sortable by creation time, used for event ids the gateway makes itself. */
export function newUlid(): string {
  return ulid();
}

/** A short random id (url-safe base64), for connection, subscriber and session ids. */
export function randomId(prefix: string, bytes = 12): string {
  return `${prefix}_${randomBase64url(bytes)}`;
}
