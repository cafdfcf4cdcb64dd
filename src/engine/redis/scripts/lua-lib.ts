/**
 * Lua shared by the scripts. Each script is sent as one chunk: `#!lua` + the helpers it
 * needs + its body.
 *
 * Why `#!lua` (a Redis 7 shebang with no flags): such a script is declared as writing,
 * so Redis refuses it up front while the server is out of memory or cannot persist,
 * instead of failing at its first write after some of its reads. Together with a body
 * that validates before it writes, a script is applied entirely or not at all: Redis
 * runs one script at a time, with no command of another client in between, and does
 * not roll back a script that fails half-way, so "nothing fails after the first write"
 * is what makes the whole batch atomic.
 */
export const SHEBANG = '#!lua\n';

/** Stream helpers: entry IDs and the meta record (epoch + head). */
export const STREAM_LIB = `
-- A stream entry ID is "0-<seq>"; returns seq, or nil for an ID this engine never writes.
local function seq_of(id)
  return tonumber(string.match(id, '^0%-(%d+)$'))
end

-- Loads epoch, head and endedAt ('' while not ended), creating the meta record when it is
-- missing. The candidate epoch is a fresh random value chosen by the caller; it is adopted
-- only here. Epoch and head live in the same hash, so they are kept or lost together: a
-- missing meta means first use or lost history (FLUSHALL, restart without persistence,
-- expiry after end), and the new epoch restarts at head 0. A stream or ids hash left
-- behind without meta belongs to the lost epoch and is dropped, so no seq of the new
-- epoch ever collides with an old entry.
local function load_meta(stream, meta, ids, candidate)
  local m = redis.call('HMGET', meta, 'epoch', 'head', 'endedAt')
  if m[1] then
    return m[1], tonumber(m[2]) or 0, m[3] or ''
  end
  redis.call('DEL', stream, ids)
  redis.call('HSET', meta, 'epoch', candidate, 'head', 0)
  return candidate, 0, ''
end

-- A caller that has seen this epoch reach seen_head proves the stored head was rolled
-- back (truncated AOF, restore): those seqs must not be handed out again under the same
-- epoch, so the stream starts over under a new one.
local function check_seen(stream, meta, ids, candidate, epoch, head, ended, seen_epoch, seen_head)
  if seen_epoch == epoch and head < (tonumber(seen_head) or 0) then
    redis.call('DEL', stream, ids, meta)
    return load_meta(stream, meta, ids, candidate)
  end
  return epoch, head, ended
end
`;

/** Subscriber helpers: logical expiry and following the session's retention TTL. */
export const SUBSCRIBER_LIB = `
-- A released subscriber is gone once the engine's clock reaches its 'exp' (release time +
-- window), even while Redis still holds the key (Redis's own TTL is only the garbage
-- collector, a little longer). This mirrors the memory engine and lets an injected clock
-- drive resume windows. An expired record is deleted on access, like the memory engine does.
local function live_sub(key, clock_now)
  if redis.call('EXISTS', key) == 0 then return false end
  local exp = redis.call('HGET', key, 'exp')
  if exp and tonumber(exp) <= clock_now then
    redis.call('DEL', key)
    return false
  end
  return true
end

-- Once a session ended, all its keys expire with the retention TTL; a subscriber key or the
-- subscriber index (re)activated after that must not outlive them. Otherwise it persists.
local function follow_session_ttl(key, meta)
  if redis.call('HEXISTS', meta, 'endedAt') == 1 then
    local ttl = redis.call('PTTL', meta)
    if ttl > 0 then
      redis.call('PEXPIRE', key, ttl)
      return
    end
  end
  redis.call('PERSIST', key)
end
`;
