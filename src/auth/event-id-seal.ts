import { createHmac } from 'node:crypto';

/** Characters of the MAC an id carries: 96 bits, base64url. */
const MAC_CHARS = 16;
/** PROTOCOL.md §1: an eventId is at most 128 characters; a sealed one ends in `.<MAC>`. */
export const SEALED_NAME_MAX = 128 - 1 - MAC_CHARS;

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
   * `name` with its MAC. Callers pass names of eventId characters short enough for the
   * MAC to fit (lifecycle names are about 40 characters; the reconciler's are bounded by
   * translate.ts's safeEventId to SEALED_NAME_MAX): a longer one is a bug.
   */
  seal(name: string): string {
    if (name.length > SEALED_NAME_MAX) throw new RangeError(`event id name too long: ${name}`);
    const mac = createHmac('sha256', this.#key).update(name).digest('base64url').slice(0, MAC_CHARS);
    return `${name}.${mac}`;
  }
}
