/**
 * The one registry of stable error codes, grouped by area. A code is part of the public
 * contract: it is never renamed and, once retired, never reused. `docs/errors.md` lists
 * every code here (a test checks it).
 */
export const ErrorCodes = {
  // request shape
  bad_request: { status: 400, retryable: false, message: 'The request is malformed.' },
  invalid_event: { status: 400, retryable: false, message: 'The event does not match schema v1.' },
  payload_too_large: { status: 413, retryable: false, message: 'The body or frame is too large.' },
  unsupported_media_type: { status: 415, retryable: false, message: 'Send application/json.' },
  not_found: { status: 404, retryable: false, message: 'No such route.' },
  method_not_allowed: { status: 405, retryable: false, message: 'Method not allowed on this route.' },
  // auth
  unauthorized: { status: 401, retryable: false, message: 'Missing or invalid bearer token.' },
  forbidden: { status: 403, retryable: false, message: 'No access to this session.' },
  forbidden_type: { status: 403, retryable: false, message: 'This role may not publish this event type.' },
  // sessions and streams
  session_not_found: { status: 404, retryable: false, message: 'No such session.' },
  session_ended: { status: 409, retryable: false, message: 'The session has ended.' },
  idempotency_conflict: {
    status: 409,
    retryable: false,
    message: 'This Idempotency-Key was used with another request.',
  },
  ack_ahead: { status: 400, retryable: false, message: 'Ack above the highest seq delivered.' },
  history_gone: {
    status: 410,
    retryable: false,
    message: 'That seq is no longer retained, or the epoch changed.',
  },
  resume_expired: { status: 401, retryable: false, message: 'Unknown or expired resume token; start fresh.' },
  // call session lifecycle
  invalid_transition: {
    status: 409,
    retryable: false,
    message: 'The session cannot move to that state from its current one.',
  },
  version_conflict: {
    status: 409,
    retryable: false,
    message: 'The session is not at the expected version; read it and decide again.',
  },
  provider_correlation_immutable: {
    status: 409,
    retryable: false,
    message: "The session's provider correlation is set once, with the move to active.",
  },
  // the LiveKit bridge
  livekit_not_configured: {
    status: 501,
    retryable: false,
    message: 'The LiveKit bridge is not configured on this gateway.',
  },
  livekit_unavailable: { status: 503, retryable: true, message: 'LiveKit did not answer in time; retry.' },
  webhook_signature_invalid: {
    status: 401,
    retryable: false,
    message: 'Missing or invalid webhook signature for this body.',
  },
  webhook_stale: {
    status: 400,
    retryable: false,
    message: "The webhook's createdAt is outside the accepted window.",
  },
  // capacity and availability
  overloaded: { status: 503, retryable: true, message: 'Too many operations queued; retry.' },
  rate_limited: { status: 429, retryable: true, message: 'Too many requests; retry later.' },
  unavailable: { status: 503, retryable: true, message: 'The event store is unavailable; retry.' },
  draining: { status: 503, retryable: true, message: 'This node is shutting down; retry elsewhere.' },
  internal: { status: 500, retryable: true, message: 'Internal error.' },
} as const satisfies Record<string, { status: number; retryable: boolean; message: string }>;

export type ErrorCode = keyof typeof ErrorCodes;
