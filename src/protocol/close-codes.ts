/**
 * WebSocket close codes (PROTOCOL.md §5). The range tells a client what to do:
 * - 4000–4099: do not resume this subscriber (fix the cause, or start fresh);
 * - 4100–4199 and 1001: resume, after a backoff.
 */
export const CloseCodes = {
  normal: 1000,
  going_away: 1001,
  bad_request: 4000,
  unauthorized: 4001,
  forbidden: 4003,
  session_not_found: 4004,
  superseded: 4009,
  resume_expired: 4010,
  history_gone: 4011,
  rate_limited: 4100,
  slow_consumer: 4101,
} as const;

export type CloseName = keyof typeof CloseCodes;
export type CloseCode = (typeof CloseCodes)[CloseName];

/** True when a client should resume after this close (after a backoff). */
export function isResumable(code: number): boolean {
  return code === CloseCodes.going_away || (code >= 4100 && code <= 4199);
}
