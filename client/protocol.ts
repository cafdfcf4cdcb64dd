import type { EventPayload, EventType } from '../src/protocol/event-types.ts';

/**
 * The wire contract as the SDK sees it (PROTOCOL.md §3–§5). Only types are taken from the
 * gateway's sources (`import type`, erased at build time), so the browser bundle carries
 * no gateway code; the close-code table is restated here and a test holds it equal to
 * the gateway's (test/client/protocol.test.ts).
 */

export type { EventPayload, EventType };

/** One event as delivered, typed by its `type` (schema v1, PROTOCOL.md §1). */
export type Envelope<T extends EventType = EventType> = T extends EventType
  ? {
      eventId: string;
      sessionId: string;
      ts: string;
      type: T;
      payload: EventPayload<T>;
      schemaVersion: 1;
    }
  : never;

/** The subprotocols of PROTOCOL.md §3, by codec name. */
export const Subprotocols = { json: 'lifeos.v1.json', msgpack: 'lifeos.v1.msgpack' } as const;
export type CodecName = keyof typeof Subprotocols;

/**
 * WebSocket close codes (PROTOCOL.md §5). The range tells the SDK what to do:
 * - 4000–4099: do not resume this subscriber (stop, or start a fresh one);
 * - 4100–4199 and 1001: resume, after a backoff.
 * 1006 (no close frame: the network, a dead peer) resumes too.
 */
export const CloseCodes = {
  normal: 1000,
  going_away: 1001,
  abnormal: 1006,
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

/** Client → gateway. */
export type HelloFrame = {
  op: 'hello';
  sessionId: string;
  token?: string;
  after?: number | 'latest';
  resume?: { token: string; lastSeq?: number; epoch?: string };
};
export type ClientFrame =
  | HelloFrame
  | { op: 'ack'; seq: number }
  | { op: 'pub'; id: string; type: string; payload: unknown; ts?: string }
  | { op: 'ping'; n?: number }
  | { op: 'bye' };

/** Gateway → client. */
export interface WelcomeFrame {
  op: 'welcome';
  connectionId: string;
  sessionId: string;
  subscriberId: string;
  resumeToken: string;
  resumeWindowMs: number;
  epoch: string;
  headSeq: number;
  after: number;
  resumed: boolean;
  heartbeatMs: number;
  maxInFlight: number;
}
export type ServerFrame =
  | WelcomeFrame
  | { op: 'ev'; seq: number; event: Envelope }
  | { op: 'replayed'; seq: number }
  | { op: 'puback'; id: string; seq: number }
  | { op: 'nack'; id: string; code: string; message: string; retryable?: boolean }
  | { op: 'pong'; n?: number | string }
  | { op: 'error'; code: string; message: string; retryable?: boolean }
  | { op: 'eos'; seq: number };

const isSeq = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isStr = (v: unknown): v is string => typeof v === 'string';

/**
 * Checks the fields the SDK relies on; returns undefined for a frame it cannot use (the
 * caller treats that as a broken connection). Unknown ops are ignored by the caller, so a
 * gateway may add frames within v1.
 */
export function checkServerFrame(value: unknown): ServerFrame | { op: string } | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const f = value as Record<string, unknown>;
  switch (f.op) {
    case 'welcome':
      return isStr(f.resumeToken) &&
        isStr(f.epoch) &&
        isSeq(f.after) &&
        isSeq(f.headSeq) &&
        typeof f.heartbeatMs === 'number' &&
        typeof f.maxInFlight === 'number' &&
        typeof f.resumed === 'boolean'
        ? (f as unknown as WelcomeFrame)
        : undefined;
    case 'ev':
      return isSeq(f.seq) && typeof f.event === 'object' && f.event !== null
        ? (f as unknown as ServerFrame)
        : undefined;
    case 'replayed':
    case 'eos':
      return isSeq(f.seq) ? (f as unknown as ServerFrame) : undefined;
    case 'puback':
      return isStr(f.id) && isSeq(f.seq) ? (f as unknown as ServerFrame) : undefined;
    case 'nack':
    case 'error':
      return isStr(f.code) ? (f as unknown as ServerFrame) : undefined;
    default:
      return isStr(f.op) ? { op: f.op } : undefined;
  }
}
