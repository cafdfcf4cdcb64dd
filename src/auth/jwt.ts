import { createHmac, timingSafeEqual } from 'node:crypto';
import { SignJWT } from 'jose';
import { isRole, type Role } from '../protocol/roles.ts';
import { isWellFormed } from '../util/well-formed.ts';
import { GatewayError } from '../errors/gateway-error.ts';

/** Who is calling, from a verified bearer token (PROTOCOL.md §6). */
export interface Principal {
  userId: string;
  tenantId: string;
  role: Role;
  /** Seconds since the epoch. */
  expiresAt: number;
}

/**
 * Verifies HS256 bearer JWTs. The algorithm is pinned: a token signed any other way
 * (`none`, RS256 with the secret as a public key, …) is rejected.
 *
 * Verification is synchronous node:crypto, with the checks `jose`'s `jwtVerify` makes for
 * `{ algorithms: ['HS256'], requiredClaims: ['sub', 'exp'] }` (test/unit/jwt.test.ts holds
 * the two side by side): compact form, a JSON-object header with `alg` HS256, `crit`
 * understood (only `b64`, which must then be true), the HMAC compared in constant time, a
 * JSON-object claims set with `sub` and a numeric `exp` after now, `nbf` (numeric) not
 * after now, `iat` numeric when present. jose verifies through WebCrypto, a thread-pool
 * job and several promise hops per token; it cost more than the rest of a fresh `hello`.
 * Signing (tooling and tests) still goes through jose.
 */
export class JwtVerifier {
  readonly #key: Uint8Array;
  readonly #now: () => number;

  constructor(secret: string, now: () => number = Date.now) {
    this.#key = new TextEncoder().encode(secret);
    this.#now = now;
  }

  async verify(token: string): Promise<Principal> {
    return this.verifySync(token);
  }

  /** As verify, synchronously: returns the principal or throws GatewayError `unauthorized`. */
  verifySync(token: string): Principal {
    const payload = this.#claims(token);
    const { sub, tid, role, exp } = payload;
    if (typeof sub !== 'string' || sub === '' || typeof tid !== 'string' || tid === '' || !isRole(role)) {
      throw new GatewayError('unauthorized', 'token lacks sub, tid or a known role');
    }
    // they name keys and records: a lone surrogate cannot be encoded (see well-formed.ts)
    if (!isWellFormed(sub) || !isWellFormed(tid)) throw invalid();
    return { userId: sub, tenantId: tid, role, expiresAt: exp as number };
  }

  /** The verified claims set; throws GatewayError `unauthorized` ('invalid token' / 'token expired'). */
  #claims(token: string): Record<string, unknown> {
    if (typeof token !== 'string') throw invalid();
    const first = token.indexOf('.');
    const second = first < 0 ? -1 : token.indexOf('.', first + 1);
    if (second < 0 || token.indexOf('.', second + 1) >= 0) throw invalid();
    const signature = Buffer.from(token.slice(second + 1));
    const expected = Buffer.from(
      createHmac('sha256', this.#key).update(token.slice(0, second)).digest('base64url'),
    );
    // Compared as base64url text: only the canonical, unpadded encoding of the right MAC
    // matches (jose also lets a padded one through; RFC 7515 has no padding). Lengths in
    // bytes: a signature as long in characters with a non-ASCII one is longer in bytes,
    // and timingSafeEqual throws on buffers of different lengths.
    if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) throw invalid();
    const header = decodeJsonObject(token.slice(0, first));
    if (header.alg !== 'HS256') throw invalid();
    if (header.crit !== undefined) {
      const { crit } = header;
      // jose understands one critical parameter, b64; a JWT must keep b64 true.
      if (!Array.isArray(crit) || crit.length === 0) throw invalid();
      for (const name of crit as unknown[]) if (name !== 'b64' || header[name] === undefined) throw invalid();
      if (header.b64 !== true) throw invalid();
    }
    const claims = decodeJsonObject(token.slice(first + 1, second));
    const now = Math.floor(this.#now() / 1000);
    for (const name of ['iat', 'nbf', 'exp'] as const) {
      if (claims[name] !== undefined && typeof claims[name] !== 'number') throw invalid();
    }
    if (!Object.hasOwn(claims, 'sub') || !Object.hasOwn(claims, 'exp')) throw invalid();
    if (claims.nbf !== undefined && (claims.nbf as number) > now) throw invalid();
    if ((claims.exp as number) <= now) throw new GatewayError('unauthorized', 'token expired');
    return claims;
  }

  /** Mints a token; for development tooling and tests only. */
  async sign(claims: { sub: string; tid: string; role: Role }, ttlSeconds = 3600): Promise<string> {
    const now = Math.floor(this.#now() / 1000);
    return new SignJWT({ tid: claims.tid, role: claims.role })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(claims.sub)
      .setIssuedAt(now)
      .setExpirationTime(now + ttlSeconds)
      .sign(this.#key);
  }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function invalid(): GatewayError {
  return new GatewayError('unauthorized', 'invalid token');
}

/** A base64url segment holding a JSON object (not an array, not null), strictly UTF-8. */
function decodeJsonObject(segment: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(strictUtf8.decode(Buffer.from(segment, 'base64url')));
  } catch {
    throw invalid();
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid();
  return value as Record<string, unknown>;
}

/** Extracts the token from an `Authorization: Bearer …` header value. */
export function bearerToken(header: string): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}
