import { CloseCodes } from './protocol.ts';

/** What a close code tells the SDK to do (PROTOCOL.md §5). */
export type CloseAction =
  /** Reconnect after a backoff, resuming the subscriber (fresh if there is no resume token). */
  | 'resume'
  /** 4010: the resume token is dead; start a fresh subscriber after the last processed seq. */
  | 'fresh'
  /** 4001: get a new JWT, then start fresh. */
  | 'reauth'
  /** 4011: position or epoch gone; report it, start fresh once. */
  | 'history_gone'
  /** Do not reconnect: state `closed`. */
  | 'stop';

/**
 * The close-code table of PROTOCOL.md §5 as the SDK applies it. 4000–4099 never resume
 * (4001/4010/4011 start a new subscriber, the rest stop); 4100–4199, 1001 and closes
 * without a code from the gateway (1005, 1006: the network) resume after a backoff, as do
 * the server-side conditions 1011–1014. 1000 and the "fix the client" codes stop.
 */
export function closeAction(code: number): CloseAction {
  switch (code) {
    case CloseCodes.resume_expired:
      return 'fresh';
    case CloseCodes.unauthorized:
      return 'reauth';
    case CloseCodes.history_gone:
      return 'history_gone';
    case CloseCodes.normal:
    case 1002: // protocol error
    case 1003: // unsupported data
    case 1007: // invalid payload
    case 1008: // policy violation
    case 1009: // frame too big: fix the client
    case 1010: // extension required
      return 'stop';
  }
  if (code >= 4000 && code <= 4099) return 'stop';
  return 'resume';
}
