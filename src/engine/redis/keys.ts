/**
 * The Redis key layout. Every key of one session carries the hash tag `{<sessionId>}`
 * (ARCHITECTURE-NOTES decision 6), so every script that touches a session's keys runs
 * on one Redis Cluster slot and stays atomic there.
 *
 *   <prefix>{<sid>}:stream        Redis stream; entry IDs are `0-<seq>`, field `e` = envelope JSON
 *   <prefix>{<sid>}:meta          hash: epoch, head, endedAt (absent until ended)
 *   <prefix>{<sid>}:ids           hash: eventId → seq (dedupe; kept for the stream's lifetime)
 *   <prefix>{<sid>}:session       string: the SessionRecord as JSON
 *   <prefix>{<sid>}:subs          set: ids of the session's subscribers (to expire them at end)
 *   <prefix>{<sid>}:sub:<subId>   hash: one subscriber (generation, checkpoint, …)
 *   <prefix>{<sid>}:n             pub/sub channel: "<head> <epoch>" after each append
 *                                 (loAppend derives it from the meta key: keep the two alike)
 *   <prefix>idem:{<tenantId>}:<ownerId>:<key>   hash: idempotent createSession (own slot)
 *   <prefix>ix:{<tenantId>}:tenant             sorted set: the tenant's sessions, for listing
 *   <prefix>ix:{<tenantId>}:owner:<ownerId>    sorted set: one owner's sessions, for listing
 *
 * The listing indexes live in the tenant's slot, like the idempotency record: members
 * are order keys (../session-order.ts) with score 0, read in lexicographic order
 * (ZRANGEBYLEX), and are written before the session's record, outside its scripts.
 *
 * Ids are URI-encoded before they go into a key, so an id containing `{`, `}` or `:`
 * can neither break the hash tag nor collide with another id's keys. Ids the gateway
 * makes itself (ULIDs, base64url) are unchanged by the encoding.
 */
export interface SessionKeys {
  stream: string;
  meta: string;
  ids: string;
  session: string;
  subs: string;
  /** Prefix of every subscriber key; the scripts append the subscriber id to it. */
  subPrefix: string;
  channel: string;
}

export const DEFAULT_KEY_PREFIX = 'lo:';

export function sessionKeys(prefix: string, sessionId: string): SessionKeys {
  const base = `${prefix}{${encodeURIComponent(sessionId)}}:`;
  return {
    stream: `${base}stream`,
    meta: `${base}meta`,
    ids: `${base}ids`,
    session: `${base}session`,
    subs: `${base}subs`,
    subPrefix: `${base}sub:`,
    channel: `${base}n`,
  };
}

/** The subscriber id as it appears in the `subs` set and after `subPrefix`. */
export function subscriberMember(subscriberId: string): string {
  return encodeURIComponent(subscriberId);
}

export function subscriberKey(keys: SessionKeys, subscriberId: string): string {
  return keys.subPrefix + subscriberMember(subscriberId);
}

/** Tagged by tenant: the idempotency record lives in its own slot, not the session's. */
export function idempotencyKey(prefix: string, tenantId: string, ownerId: string, key: string): string {
  return `${prefix}idem:{${encodeURIComponent(tenantId)}}:${encodeURIComponent(ownerId)}:${encodeURIComponent(key)}`;
}

/** The listing indexes of a tenant (see the layout above). */
export function tenantIndexKey(prefix: string, tenantId: string): string {
  return `${prefix}ix:{${encodeURIComponent(tenantId)}}:tenant`;
}

export function ownerIndexKey(prefix: string, tenantId: string, ownerId: string): string {
  return `${prefix}ix:{${encodeURIComponent(tenantId)}}:owner:${encodeURIComponent(ownerId)}`;
}
