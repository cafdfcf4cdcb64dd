import { createHash, createHmac } from 'node:crypto';

/** Characters of the MAC an id carries: 96 bits, base64url. */
const MAC_CHARS = 16;
/** PROTOCOL.md §1: an eventId is at most 128 characters. */
const EVENT_ID_MAX = 128;

/**
 * The eventIds of events the gateway makes itself (a lifecycle change's `call.*` event,
 * the LiveKit reconciler's corrections). They must be deterministic, so that a retry on
 * any node dedupes against the first attempt, and no client may be able to make them
 * first: publishing is idempotent by eventId within a session, so a member who published
 * `call.ended:<session>:v5` before the gateway did made the gateway's own `call.ended`
 * a duplicate, and the record moved on with no event announcing it.
 *
 * So each such id ends in a MAC of its readable part, keyed by a key derived from the JWT
 * secret that every node shares: `call.ended:cs_…:v5.<16 chars>`. Clients can read these
 * ids in the stream but cannot make the next one.
 */
export class EventIdSeal {
  readonly #key: Buffer;

  constructor(secret: string) {
    this.#key = createHmac('sha256', secret).update('lifeos.event-id.v1').digest();
  }

  /**
   * `name` (already of eventId characters) with its MAC; a name too long to fit is
   * replaced by its hash first.
   */
  seal(name: string): string {
    const readable =
      name.length + 1 + MAC_CHARS <= EVENT_ID_MAX
        ? name
        : `h.${createHash('sha256').update(name).digest('hex').slice(0, 48)}`;
    const mac = createHmac('sha256', this.#key).update(readable).digest('base64url').slice(0, MAC_CHARS);
    return `${readable}.${mac}`;
  }
}
