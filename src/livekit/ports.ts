import type { AppendOutcome } from '../engine/engine.ts';
import type { Envelope } from '../protocol/envelope.ts';

/**
 * What the LiveKit bridge needs from the rest of the gateway, as narrow interfaces wired
 * in src/app.ts. The bridge never reaches into the call service or the actors directly.
 */

/** The call session lifecycle, as far as the provider side drives or reads it. */
export interface SessionLifecycle {
  /** The session's state, or undefined when it does not exist (any more). */
  status(sessionId: string): Promise<SessionStatus | undefined>;
  /**
   * The provider reports the call's room finished. An active (or ending) session moves to
   * `ended`, which ends its stream (`call.ended`, then `eos`); in any other state this
   * does nothing. Idempotent: a repeat after the session ended does nothing. Resolves
   * whether the session has ended now (by this call or before), or does not exist.
   */
  endFromProvider(sessionId: string, reason: string): Promise<boolean>;
}

export interface SessionStatus {
  state: string;
  /** The stream has ended (`call.ended` / `call.failed` appended): nothing more is accepted. */
  ended: boolean;
}

/**
 * Appends a gateway-produced event to a session's stream through the same path an HTTP
 * ingest takes (the session actor: batching, dedupe by eventId, fan-out). Rejects with
 * GatewayError `session_ended` once the stream has ended.
 */
export interface EventSink {
  publish(sessionId: string, event: Envelope): Promise<AppendOutcome>;
}
