import { createHmac, timingSafeEqual } from 'node:crypto';
import { isRole, type Role } from '../protocol/roles.ts';

/** What a resume token binds together (PROTOCOL.md §3). */
export interface ResumeClaims {
  sessionId: string;
  subscriberId: string;
  userId: string;
  tenantId: string;
  /** The role of the JWT that opened the subscriber: a resumed connection keeps its rights. */
  role: Role;
}

/**
 * Resume tokens: `v1.<base64url(json claims)>.<base64url(hmac)>`, HMAC-SHA256 with a
 * key derived from the JWT secret. They carry no expiry of their own: validity is the
 * subscriber's state in the engine (live, or inside its resume window, and not ended),
 * so `bye` and window expiry revoke them at once and on every node.
 */
export class ResumeTokens {
  readonly #key: Buffer;

  constructor(secret: string) {
    this.#key = createHmac('sha256', secret).update('lifeos.resume-token.v1').digest();
  }

  issue(claims: ResumeClaims): string {
    const body = Buffer.from(
      JSON.stringify([claims.sessionId, claims.subscriberId, claims.userId, claims.tenantId, claims.role]),
    ).toString('base64url');
    return `v1.${body}.${this.#mac(body)}`;
  }

  /** Returns the claims of a well-formed, correctly signed token, or undefined. */
  verify(token: string): ResumeClaims | undefined {
    const parts = token.split('.');
    if (parts.length !== 3 || parts[0] !== 'v1') return undefined;
    const [, body = '', mac = ''] = parts;
    const expected = Buffer.from(this.#mac(body));
    const given = Buffer.from(mac);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    try {
      const decoded: unknown = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
      if (!Array.isArray(decoded) || decoded.length !== 5 || !decoded.every((v) => typeof v === 'string')) {
        return undefined;
      }
      const [sessionId, subscriberId, userId, tenantId, role] = decoded as [
        string,
        string,
        string,
        string,
        string,
      ];
      if (!isRole(role)) return undefined;
      return { sessionId, subscriberId, userId, tenantId, role };
    } catch {
      return undefined;
    }
  }

  #mac(body: string): string {
    return createHmac('sha256', this.#key).update(body).digest('base64url');
  }
}
