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
 * create — KEYS: subs, meta, sub for each subscriber to create (the creates made in the
 * same tick, of any sessions, go in one call; on a Redis Cluster, one call per session,
 * see tick-queue.ts). ARGV: six per subscriber, in the order of its keys: member, userId,
 * tenantId, after, node ('' = none), connectedAt.
 * Creates each one (generation 1, connected, checkpoint = after): a crowd of fresh
 * `hello`s costs one round trip per tick, however many sessions it spreads over.
 * Returns, per subscriber, the size of its session's subs index right after it was
 * added; once that is past PRUNE_THRESHOLD (and past twice what the last prune left) the
 * caller prunes the index (loPruneSubscribers), which needs the subscriber keys
 * declared, so it cannot happen here.
 */
export const CREATE_SUBSCRIBERS_LUA = `${SHEBANG}${SUBSCRIBER_LIB}
if #KEYS == 0 or #KEYS % 3 ~= 0 or #ARGV ~= 2 * #KEYS then
  return redis.error_reply('ERR loCreateSubscribers: three keys and six arguments per subscriber')
end
local sizes = {}
for c = 1, #KEYS / 3 do
  local subs, meta, sub = KEYS[3 * c - 2], KEYS[3 * c - 1], KEYS[3 * c]
  local a = (c - 1) * 6
  redis.call('DEL', sub)
  redis.call('HSET', sub, 'gen', 1, 'cp', ARGV[a + 4], 'conn', 1, 'disc', 0, 'ended', 0,
    'user', ARGV[a + 2], 'tenant', ARGV[a + 3], 'after', ARGV[a + 4])
  if ARGV[a + 5] ~= '' then redis.call('HSET', sub, 'node', ARGV[a + 5], 'at', ARGV[a + 6]) end
  follow_session_ttl(sub, meta)
  redis.call('SADD', subs, ARGV[a + 1])
  follow_session_ttl(subs, meta)
  sizes[c] = redis.call('SCARD', subs)
end
return sizes
`;

/**
 * The subs index is first pruned once it holds more members than this; after that, once
 * it has doubled since the previous prune (RedisSubscribers#prune, subscribers.ts).
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
 * takeover — KEYS: sub, meta of each takeover, in order (the takeovers made in the same
 * tick, of any sessions, go in one call; on a Redis Cluster, one call per session, see
 * tick-queue.ts). ARGV: clockNow, then six per takeover, in the order of
 * its keys: now, windowMs, channel, subscriberId, node ('' = leave node and at as they
 * are; else node, connected at `now`), acked (the checkpoint is raised to it; -1 = none). They are applied one after the other, in order,
 * exactly as separate calls would be (a subscriber taken over twice ends with the later
 * one's generation). Each publishes "t <generation> <subscriberId>" so the node holding
 * the old connection closes it promptly (the generation already fences it); the channel
 * carries the session's hash tag, so an SPUBLISH on a cluster stays in the session's slot.
 * Returns, per takeover, the updated hash as a flat field/value list, or an empty list
 * when it was not resumable.
 */
export const takeoverSubscriberLua = (publish: PublishCommand): string => `${SHEBANG}${SUBSCRIBER_LIB}
if #KEYS == 0 or #KEYS % 2 ~= 0 or #ARGV ~= 1 + 6 * #KEYS / 2 then
  return redis.error_reply('ERR loTakeoverSubscriber: two keys and six arguments per takeover')
end
local clock_now = tonumber(ARGV[1])
local replies = {}
for t = 1, #KEYS / 2 do
  local sub, meta = KEYS[2 * t - 1], KEYS[2 * t]
  local a = 1 + (t - 1) * 6
  local now, window, channel, id, node = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  local acked = tonumber(ARGV[a + 6])
  replies[t] = {}
  if live_sub(sub, clock_now) then
    local r = redis.call('HMGET', sub, 'ended', 'conn', 'disc')
    if r[1] ~= '1' and (r[2] == '1' or tonumber(now) - tonumber(r[3]) <= tonumber(window)) then
      redis.call('HINCRBY', sub, 'gen', 1)
      redis.call('HSET', sub, 'conn', 1, 'disc', 0)
      if node ~= '' then redis.call('HSET', sub, 'node', node, 'at', now) end
      if acked > (tonumber(redis.call('HGET', sub, 'cp')) or 0) then redis.call('HSET', sub, 'cp', acked) end
      redis.call('HDEL', sub, 'exp')
      -- resumed: no longer on the release window's TTL
      follow_session_ttl(sub, meta)
      redis.call('${publish}', channel, 't ' .. redis.call('HGET', sub, 'gen') .. ' ' .. id)
      replies[t] = redis.call('HGETALL', sub)
    end
  end
end
return replies
`;

/**
 * saveCheckpoint — KEYS: one subscriber key per checkpoint to save (the checkpoints of
 * many subscribers saved in the same tick go in one call; on a Redis Cluster, one call
 * per session, see tick-queue.ts). ARGV: clockNow, then generation, seq
 * for each key, in order. Each one is applied on its own: only for the current
 * generation, only upwards. Returns each checkpoint after the call, in order (0 when the
 * subscriber is gone).
 */
export const SAVE_CHECKPOINT_LUA = `${SHEBANG}
if #KEYS == 0 or #ARGV ~= 1 + 2 * #KEYS then
  return redis.error_reply('ERR loSaveCheckpoint: two arguments per subscriber key')
end
local now = tonumber(ARGV[1])
local cps = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local cp = 0
  -- live_sub's test in the same read: a missing key has no gen; an expired one is deleted
  local r = redis.call('HMGET', key, 'gen', 'cp', 'exp')
  if r[3] and tonumber(r[3]) <= now then
    redis.call('DEL', key)
  elseif r[1] then
    cp = tonumber(r[2]) or 0
    local seq = tonumber(ARGV[2 * i + 1])
    if tonumber(r[1]) == tonumber(ARGV[2 * i]) and seq > cp then
      cp = seq
      redis.call('HSET', key, 'cp', ARGV[2 * i + 1])
    end
  end
  cps[i] = cp
end
return cps
`;

/**
 * release — KEYS: one subscriber key per release (the releases made in the same tick, of
 * any sessions, go in one call; on a Redis Cluster, one call per session, see
 * tick-queue.ts). ARGV: clockNow, then generation, now, windowMs, ttlMs per key, in order.
 * Each is applied on its own and ignored (0) when the subscriber is gone or a newer
 * generation took over. Returns 1 or 0 per release, in order.
 */
export const RELEASE_SUBSCRIBERS_LUA = `${SHEBANG}${SUBSCRIBER_LIB}
if #KEYS == 0 or #ARGV ~= 1 + 4 * #KEYS then
  return redis.error_reply('ERR loReleaseSubscribers: four arguments per subscriber key')
end
local clock_now = tonumber(ARGV[1])
local released = {}
for i = 1, #KEYS do
  local key, a = KEYS[i], 1 + (i - 1) * 4
  released[i] = 0
  if live_sub(key, clock_now) and tonumber(redis.call('HGET', key, 'gen')) == tonumber(ARGV[a + 1]) then
    redis.call('HSET', key, 'conn', 0, 'disc', ARGV[a + 2], 'exp', tonumber(ARGV[a + 2]) + tonumber(ARGV[a + 3]))
    local ttl_ms = tonumber(ARGV[a + 4])
    local current = redis.call('PTTL', key)
    -- an ended session's shorter TTL wins; otherwise the key lives for the window
    if current < 0 or current > ttl_ms then
      redis.call('PEXPIRE', key, ttl_ms)
    end
    released[i] = 1
  end
end
return released
`;

/** end — KEYS: sub, subs. ARGV: member. Deleting makes the resume token fail at once. */
export const END_SUBSCRIBER_LUA = `${SHEBANG}
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 1
`;
