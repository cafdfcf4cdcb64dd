import { GatewayError } from '../errors/gateway-error.ts';
import type { Logger } from '../observability/logger.ts';
import { isoTimestamp, normalizeEnvelope } from '../protocol/envelope.ts';
import type { EventType } from '../protocol/event-types.ts';
import type { Clock } from '../util/clock.ts';
import type { EventSink } from './ports.ts';

/** What became of a translated event. */
export type EmitResult =
  | { status: 'appended' | 'duplicate'; seq: number }
  | { status: 'session_ended' }
  | { status: 'invalid'; message: string };

/**
 * Appends the bridge's events with the gateway as producer, checked against schema v1
 * like any other event. Two outcomes are normal for provider events and not errors: the
 * stream has ended (a late webhook after `call.ended`), and a translation the schema
 * refuses (a provider value out of bounds), which is logged and dropped so that LiveKit
 * does not retry it for ever. Anything else (the engine is down) rejects.
 */
export class ProviderEventWriter {
  readonly #events: EventSink;
  readonly #clock: Clock;
  readonly #logger: Logger;

  constructor(events: EventSink, clock: Clock, logger: Logger) {
    this.#events = events;
    this.#clock = clock;
    this.#logger = logger;
  }

  async emit(
    sessionId: string,
    eventId: string,
    type: EventType,
    payload: Record<string, unknown>,
  ): Promise<EmitResult> {
    const checked = normalizeEnvelope({
      eventId,
      sessionId,
      ts: isoTimestamp(this.#clock.now()),
      type,
      payload,
      schemaVersion: 1,
    });
    if (!checked.ok) {
      this.#logger.error(
        { sessionId, eventId, type, problem: checked.message },
        'livekit: translated event is invalid',
      );
      return { status: 'invalid', message: checked.message };
    }
    try {
      const outcome = await this.#events.publish(sessionId, checked.value);
      return { status: outcome.duplicate ? 'duplicate' : 'appended', seq: outcome.seq };
    } catch (err) {
      if (err instanceof GatewayError && err.code === 'session_ended') return { status: 'session_ended' };
      throw err;
    }
  }
}
