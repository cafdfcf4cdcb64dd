import { CloseCodes } from '../protocol/close-codes.ts';
import type { ErrorCode } from '../errors/codes.ts';

/**
 * How a failed `hello` closes the socket. Codes without a close code of their own
 * (the engine is unavailable, the node is draining, an internal error) close with 1013
 * "try again later" (RFC 6455), which clients treat like 1001: back off and retry.
 */
export const TRY_AGAIN_LATER = 1013;

const helloCloseCodes: Partial<Record<ErrorCode, number>> = {
  bad_request: CloseCodes.bad_request,
  unauthorized: CloseCodes.unauthorized,
  forbidden: CloseCodes.forbidden,
  session_not_found: CloseCodes.session_not_found,
  resume_expired: CloseCodes.resume_expired,
  history_gone: CloseCodes.history_gone,
  rate_limited: CloseCodes.rate_limited,
};

export function closeCodeFor(code: ErrorCode): number {
  return helloCloseCodes[code] ?? TRY_AGAIN_LATER;
}
