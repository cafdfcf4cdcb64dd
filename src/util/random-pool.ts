import { randomFillSync } from 'node:crypto';

/**
 * Random bytes for ids, drawn from a pool refilled 4 KiB at a time. One `randomBytes`
 * call per id costs a trip into OpenSSL, which also asks the kernel for the pid on every
 * call (its fork check): a syscall per connection on the handshake path. The bytes are
 * the same CSPRNG output; Node's own `randomUUID` pools them the same way.
 */
const POOL_BYTES = 4096;
const pool = Buffer.alloc(POOL_BYTES);
let at = POOL_BYTES;

function take(bytes: number): number {
  if (bytes > POOL_BYTES) throw new RangeError(`random pool: at most ${POOL_BYTES} bytes at once`);
  if (at + bytes > POOL_BYTES) {
    randomFillSync(pool);
    at = 0;
  }
  const start = at;
  at += bytes;
  return start;
}

/** `bytes` random bytes as url-safe base64 (no padding). */
export function randomBase64url(bytes: number): string {
  const start = take(bytes);
  return pool.toString('base64url', start, start + bytes);
}

/** `bytes` random bytes as lowercase hex. */
export function randomHex(bytes: number): string {
  const start = take(bytes);
  return pool.toString('hex', start, start + bytes);
}
