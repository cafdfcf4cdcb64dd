import type { Principal } from './jwt.ts';
import type { SessionRecord } from '../engine/engine.ts';
import { GatewayError } from '../errors/gateway-error.ts';

/** What the access rule reads of a session: set at creation, never changed. */
export type SessionAccess = Pick<SessionRecord, 'tenantId' | 'ownerId'>;

/**
 * The session access rule (PROTOCOL.md §6): same tenant, and either the owner or an
 * agent, operator or service. Another tenant's session does not exist for the caller,
 * so it is `session_not_found`, never `forbidden`.
 */
export function assertCanRead<S extends SessionAccess>(principal: Principal, session: S | undefined): S {
  if (!session || session.tenantId !== principal.tenantId) throw new GatewayError('session_not_found');
  if (principal.role === 'user' && session.ownerId !== principal.userId) throw new GatewayError('forbidden');
  return session;
}
