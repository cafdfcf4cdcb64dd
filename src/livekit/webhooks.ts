import { WebhookReceiver, type WebhookEvent } from 'livekit-server-sdk';
import { GatewayError } from '../errors/gateway-error.ts';
import { createdAtMs } from './translate.ts';

/** How far in the future a webhook's `createdAt` may be (clock skew between LiveKit and us). */
export const WEBHOOK_MAX_FUTURE_MS = 30_000;

/**
 * Verifies LiveKit webhooks. LiveKit signs each one with a JWT in the `Authorization`
 * header (issuer = API key, HS256 with the secret) whose `sha256` claim is the base64
 * SHA-256 of the body; `WebhookReceiver` checks both. It must see the body exactly as it
 * arrived: a re-serialised body (same JSON, other bytes) no longer matches, by design.
 */
export class WebhookVerifier {
  readonly #receiver: WebhookReceiver;
  readonly #maxAgeMs: number;
  readonly #now: () => number;
  readonly #utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

  constructor(options: { apiKey: string; apiSecret: string; maxAgeS: number; now: () => number }) {
    this.#receiver = new WebhookReceiver(options.apiKey, options.apiSecret);
    this.#maxAgeMs = options.maxAgeS * 1000;
    this.#now = options.now;
  }

  /**
   * The verified event. Rejects with `webhook_signature_invalid` (401) for a missing or
   * bad signature, `bad_request` (400) for a signed body that is not a webhook event, and
   * `webhook_stale` (400) for a `createdAt` outside [now − max age, now + 30 s].
   */
  async verify(rawBody: Uint8Array, authorization: string): Promise<WebhookEvent> {
    if (authorization.trim() === '') {
      throw new GatewayError('webhook_signature_invalid', 'the webhook has no Authorization header');
    }
    let body: string;
    try {
      // The SDK hashes a string; only valid UTF-8 maps to one string and back unchanged.
      body = this.#utf8.decode(rawBody);
    } catch {
      throw new GatewayError('webhook_signature_invalid', 'the webhook body is not UTF-8');
    }
    let event: WebhookEvent;
    try {
      event = await this.#receiver.receive(body, authorization);
    } catch (err) {
      // After the signature checks the receiver only parses: those failures are the body's.
      if (err instanceof SyntaxError || /^cannot decode/.test(err instanceof Error ? err.message : '')) {
        throw new GatewayError('bad_request', 'the webhook body is not a LiveKit webhook event', {
          cause: err,
        });
      }
      throw new GatewayError('webhook_signature_invalid', undefined, { cause: err });
    }
    const created = createdAtMs(event);
    const now = this.#now();
    if (!Number.isFinite(created)) throw new GatewayError('webhook_stale', 'the webhook has no createdAt');
    if (created < now - this.#maxAgeMs) {
      throw new GatewayError('webhook_stale', `the webhook is older than ${this.#maxAgeMs / 1000} s`);
    }
    if (created > now + WEBHOOK_MAX_FUTURE_MS) {
      throw new GatewayError('webhook_stale', 'the webhook is dated more than 30 s in the future');
    }
    return event;
  }
}
