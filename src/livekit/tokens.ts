import { AccessToken, type VideoGrant } from 'livekit-server-sdk';
import type { Role } from '../protocol/roles.ts';

/**
 * Participant tokens for a session's LiveKit room. A token joins exactly one room
 * (`roomJoin` with `room` set, no admin, list or create rights) and lives
 * `LIVEKIT_TOKEN_TTL_S`: LiveKit checks it when the participant connects, so a short
 * lifetime bounds how long a leaked token can be used to join.
 */

/** What each gateway role may do in the room. */
export function grantsFor(role: Role, room: string): VideoGrant {
  const join = { roomJoin: true, room, canUpdateOwnMetadata: false } as const;
  switch (role) {
    case 'user':
    case 'agent':
    case 'service':
      // people talk, agents talk back, services (bots, bridges) do both; all send data
      return { ...join, canPublish: true, canSubscribe: true, canPublishData: true };
    case 'operator':
      // supervisors listen in; visible to the others, so nobody is listened to unknowingly
      return { ...join, canPublish: false, canSubscribe: true, canPublishData: false };
  }
}

/** The participant identity of a principal: `<role>:<sub>`, the same on every token and node. */
export function identityOf(principal: { role: Role; userId: string }): string {
  return `${principal.role}:${principal.userId}`;
}

export interface IssuedToken {
  token: string;
  /** When the token stops admitting joins (ms since the epoch), read back from the token. */
  expiresAtMs: number;
}

export async function issueParticipantToken(options: {
  apiKey: string;
  apiSecret: string;
  ttlS: number;
  room: string;
  identity: string;
  name: string;
  role: Role;
  attributes: Record<string, string>;
}): Promise<IssuedToken> {
  const at = new AccessToken(options.apiKey, options.apiSecret, {
    identity: options.identity,
    name: options.name,
    ttl: options.ttlS,
    attributes: options.attributes,
  });
  at.addGrant(grantsFor(options.role, options.room));
  // LiveKit marks agent participants by the token's kind; they then show up as agents.
  if (options.role === 'agent') at.kind = 'agent';
  const token = await at.toJwt();
  return { token, expiresAtMs: expiryOf(token) };
}

/** `exp` of a JWT we just signed (the SDK sets it from its own clock). */
function expiryOf(jwt: string): number {
  const payload = JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')) as {
    exp?: unknown;
  };
  if (typeof payload.exp !== 'number') throw new Error('livekit: issued token has no exp');
  return payload.exp * 1000;
}
