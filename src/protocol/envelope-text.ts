import type { Envelope } from './envelope.ts';

/**
 * An envelope's JSON text, made at most once per envelope object. The same text is the
 * stored form (the Redis stream's `e` field) and the `event` member of the JSON `ev`
 * frame, so a published event is serialized once, not once for the engine and again
 * for the subscribers; an event read back from Redis keeps the text it was stored as.
 *
 * The text rides on the envelope under a symbol (JSON.stringify skips symbol keys), and
 * envelopes are not changed once validated, so it cannot go stale.
 */
const TEXT: unique symbol = Symbol('lifeos.envelopeText');

type WithText = Envelope & { [TEXT]?: string };

export function envelopeText(event: Envelope): string {
  return (event as WithText)[TEXT] ?? remember(event, JSON.stringify(event));
}

/** Parses a stored envelope and remembers the text it came from. */
export function parseEnvelopeText(text: string): Envelope {
  const event = JSON.parse(text) as Envelope;
  remember(event, text);
  return event;
}

/**
 * Not enumerable: deep equality, spreads and msgpack see the envelope as it was, and a
 * copy never carries a text that is not its own.
 */
function remember(event: Envelope, text: string): string {
  Object.defineProperty(event, TEXT, { value: text });
  return text;
}
