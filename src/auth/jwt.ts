import { jwtVerify, SignJWT, errors as joseErrors } from 'jose';
import { isRole, type Role } from '../protocol/roles.ts';
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
 */
export class JwtVerifier {
  readonly #key: Uint8Array;
  readonly #now: () => number;

  constructor(secret: string, now: () => number = Date.now) {
    this.#key = new TextEncoder().encode(secret);
    this.#now = now;
  }

  async verify(token: string): Promise<Principal> {
    try {
      const { payload } = await jwtVerify(token, this.#key, {
        algorithms: ['HS256'],
        currentDate: new Date(this.#now()),
        requiredClaims: ['sub', 'exp'],
      });
      const { sub, tid, role, exp } = payload;
      if (typeof sub !== 'string' || sub === '' || typeof tid !== 'string' || tid === '' || !isRole(role)) {
        throw new GatewayError('unauthorized', 'token lacks sub, tid or a known role');
      }
      return { userId: sub, tenantId: tid, role, expiresAt: exp! };
    } catch (err) {
      if (err instanceof GatewayError) throw err;
      const reason = err instanceof joseErrors.JWTExpired ? 'token expired' : 'invalid token';
      throw new GatewayError('unauthorized', reason, { cause: err });
    }
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

/** Extracts the token from an `Authorization: Bearer …` header value. */
export function bearerToken(header: string): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}
