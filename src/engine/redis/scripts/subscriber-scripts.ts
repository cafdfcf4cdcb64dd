import { SHEBANG, SUBSCRIBER_LIB } from './lua-lib.ts';
import type { PublishCommand } from './index.ts';

/**
 * Subscriber scripts (ARCHITECTURE-NOTES decision 7). Each one reads and updates one
 * subscriber hash in a single script, so the generation check and the update it guards
 * cannot be split by another node's takeover: that is the fencing.
 *
 * Hash fields: gen, cp (checkpoint), conn (1|0), disc (ms, 0 while connected), ended (0),
 * user, tenant, after, exp (logical expiry, only while released), node and at (the node
 * holding the current connection and when it attached: informational, for the inspector;
 * absent when the caller did not say).
 */

/**
 * create — KEYS: subs, meta, then one subscriber key per subscriber to create.
 * ARGV: six per subscriber, in the order of their keys: member, userId, tenantId, after,
 * node ('' = none), connectedAt.
 * Creates every one of them (generation 1, connected, checkpoint = after) in one atomic
 * step: the subscribers of one session that say `hello` in the same tick cost one round
 * trip together instead of one each. Returns the size of the subs index; once that is past
 * PRUNE_THRESHOLD (and past twice what the last prune left) the caller prunes it
 * (loPruneSubscribers), which needs the subscriber keys declared, so it cannot happen here.
 */
export const CREATE_SUBSCRIBERS_LUA = `${SHEBANG}${SUBSCRIBER_LIB}
if #KEYS < 3 or #ARGV ~= (#KEYS - 2) * 6 then
  return redis.error_reply('ERR loCreateSubscribers: six arguments per subscriber key')
end
for i = 3, #KEYS do
  local a = (i - 3) * 6
  redis.call('DEL', KEYS[i])
  redis.call('HSET', KEYS[i], 'gen', 1, 'cp', ARGV[a + 4], 'conn', 1, 'disc', 0, 'ended', 0,
    'user', ARGV[a + 2], 'tenant', ARGV[a + 3], 'after', ARGV[a + 4])
  if ARGV[a + 5] ~= '' then redis.call('HSET', KEYS[i], 'node', ARGV[a + 5], 'at', ARGV[a + 6]) end
  follow_session_ttl(KEYS[i], KEYS[2])
  redis.call('SADD', KEYS[1], ARGV[a + 1])
end
follow_session_ttl(KEYS[1], KEYS[2])
return redis.call('SCARD', KEYS[1])
`;

/**
 * The subs index is first pruned once it holds more members than this; after that, once
 * it has doubled since the previous prune (RedisEngine#pruneSubscribers).
 */
export const PRUNE_THRESHOLD = 64;

/**
 * prune — KEYS: subs, then one key per member to check. ARGV: those members, in order.
 * Called with a variable number of keys (numkeys first). Keeps the index proportional to
 * live subscribers: drops each passed member whose key has expired. The check and the
 * SREM are one step, so a subscriber (re)created since the caller read the index stays.
 * Returns how many members were dropped.
 */
export const PRUNE_SUBSCRIBERS_LUA = `${SHEBANG}
local dropped = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    dropped = dropped + redis.call('SREM', KEYS[1], ARGV[i - 1])
  end
end
return dropped
`;

/**
 * takeover — KEYS: sub, meta. ARGV: now, windowMs, clockNow, channel, subscriberId,
 * node ('' = leave node and at as they are; else node, connected at `now`).
 * Publishes "t <generation> <subscriberId>" so the node holding the old connection
 * closes it promptly (the generation already fences it); the channel carries the
 * session's hash tag, so an SPUBLISH on a cluster stays in the script's slot.
 * Returns the updated hash as a flat field/value list, or an empty list when not resumable.
 */
export const takeoverSubscriberLua = (publish: PublishCommand): string => `${SHEBANG}${SUBSCRIBER_LIB}
if not live_sub(KEYS[1], tonumber(ARGV[3])) then return {} end
local r = redis.call('HMGET', KEYS[1], 'ended', 'conn', 'disc')
if r[1] == '1' then return {} end
if r[2] ~= '1' and tonumber(ARGV[1]) - tonumber(r[3]) > tonumber(ARGV[2]) then return {} end
redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('HSET', KEYS[1], 'conn', 1, 'disc', 0)
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'node', ARGV[6], 'at', ARGV[1]) end
redis.call('HDEL', KEYS[1], 'exp')
-- resumed: no longer on the release window's TTL
follow_session_ttl(KEYS[1], KEYS[2])
redis.call('${publish}', ARGV[4], 't ' .. redis.call('HGET', KEYS[1], 'gen') .. ' ' .. ARGV[5])
return redis.call('HGETALL', KEYS[1])
`;

/**
 * saveCheckpoint — KEYS: sub. ARGV: generation, seq, clockNow.
 * Returns the checkpoint after the call (0 when the subscriber is gone).
 */
export const SAVE_CHECKPOINT_LUA = `${SHEBANG}${SUBSCRIBER_LIB}
if not live_sub(KEYS[1], tonumber(ARGV[3])) then return 0 end
local r = redis.call('HMGET', KEYS[1], 'gen', 'cp')
local cp = tonumber(r[2])
local seq = tonumber(ARGV[2])
if tonumber(r[1]) == tonumber(ARGV[1]) and seq > cp then
  cp = seq
  redis.call('HSET', KEYS[1], 'cp', ARGV[2])
end
return cp
`;

/**
 * release — KEYS: sub. ARGV: generation, now, windowMs, clockNow, ttlMs.
 * Ignored (returns 0) when the subscriber is gone or a newer generation took over.
 */
export const RELEASE_SUBSCRIBER_LUA = `${SHEBANG}${SUBSCRIBER_LIB}
if not live_sub(KEYS[1], tonumber(ARGV[4])) then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'gen')) ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'conn', 0, 'disc', ARGV[2], 'exp', tonumber(ARGV[2]) + tonumber(ARGV[3]))
local ttl_ms = tonumber(ARGV[5])
local current = redis.call('PTTL', KEYS[1])
-- an ended session's shorter TTL wins; otherwise the key lives for the window
if current < 0 or current > ttl_ms then
  redis.call('PEXPIRE', KEYS[1], ttl_ms)
end
return 1
`;

/** end — KEYS: sub, subs. ARGV: member. Deleting makes the resume token fail at once. */
export const END_SUBSCRIBER_LUA = `${SHEBANG}
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 1
`;
