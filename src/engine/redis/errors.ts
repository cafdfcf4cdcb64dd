import { EngineUnavailableError } from '../../errors/gateway-error.ts';

/**
 * Server replies that mean "Redis cannot serve this right now" rather than "this request
 * is wrong": loading after a restart, a busy script, a failover in progress, memory or
 * disk trouble. Retrying later can succeed, so they map to EngineUnavailableError.
 *
 * NOSCRIPT is one of them: the node ran nothing. ioredis resends a script once, as EVAL,
 * on NOSCRIPT, and marks a connection as having the script once it wrote an EVAL there,
 * whatever the answer; so during failovers (an EVAL answered with a redirection, a node
 * that lost its cache) the resend can meet NOSCRIPT again. A retry loads it (the chaos
 * scenario redis-cluster-failover found 36 such publishes in 68 failovers).
 */
const TRANSIENT_REPLY =
  /^(LOADING|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|READONLY|NOREPLICAS|MISCONF|OOM|NOSCRIPT)\b/;

/**
 * Maps what ioredis throws to the engine's error contract. Anything that did not come
 * back as a reply from the server (connection refused or closed, "Command timed out",
 * offline queue disabled, retries exhausted) means the store was not reached in time:
 * EngineUnavailableError. A non-transient server error reply (a script bug, WRONGTYPE)
 * is a defect, not an outage, and is rethrown as it is so it surfaces as `internal`.
 */
export function mapRedisError(err: unknown, operation: string): Error {
  if (err instanceof EngineUnavailableError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const isReply = err instanceof Error && err.name === 'ReplyError';
  if (isReply && !TRANSIENT_REPLY.test(message) && !abortedByOutage(err)) return err;
  return new EngineUnavailableError(`redis ${operation} failed: ${message}`, { cause: err });
}

/**
 * A server's refusal of a command for what it was given or found (WRONGTYPE, a script's
 * error), as left by mapRedisError: not an outage, so sending the same call again fails
 * the same way, while its neighbours in a batch may not (see EngineCore#sendChunk).
 */
export function isDataFault(err: unknown): boolean {
  return err instanceof Error && err.name === 'ReplyError' && !(err instanceof EngineUnavailableError);
}

/**
 * EXECABORT: Redis refused a MULTI's commands as they were queued, and says why in the
 * errors before it (ioredis's `previousErrors`). Refused for memory or a read-only
 * replica (OOM, READONLY, MISCONF), it is an outage like those replies alone.
 */
function abortedByOutage(err: Error): boolean {
  if (!err.message.startsWith('EXECABORT')) return false;
  const previous = (err as { previousErrors?: unknown }).previousErrors;
  return (
    Array.isArray(previous) &&
    previous.some((e: unknown) => e instanceof Error && TRANSIENT_REPLY.test(e.message))
  );
}
