import type { PublishCommand } from './index.ts';

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

-- Ends the stream at head: endedAt is set, and every key of the session (the list the
-- caller passes: stream, meta, ids, session, subs) goes on the retention TTL.
local function mark_ended(meta, head, ttl_ms, keys)
  redis.call('HSET', meta, 'endedAt', head)
  for _, key in ipairs(keys) do
    redis.call('PEXPIRE', key, ttl_ms)
  end
end
`;

/**
 * Appending (needs STREAM_LIB before it), shared by every script that appends: append
 * itself, and the session scripts that append the event of a change in the same atomic
 * step as the change (createSession, transitionSession). So every append anywhere has
 * the same dedupe, seq, epoch, end and notice semantics.
 */
export const appendLib = (publish: PublishCommand | undefined): string => `
-- Guard: meta's head must cover every stored entry. If it does not, meta was rolled back
-- behind its stream (partial restore, manual edits): that history cannot be trusted and
-- reusing its seqs under the same epoch is exactly what epochs forbid, so start a new one.
-- This is also what rules out the one way an XADD could fail after earlier writes.
local function beyond_head(stream, head)
  local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
  return newest ~= nil and (seq_of(newest[1]) or math.huge) > head
end

local function guard_head(stream, meta, ids, candidate, epoch, head, ended)
  if beyond_head(stream, head) then
    redis.call('DEL', stream, ids, meta)
    return load_meta(stream, meta, ids, candidate)
  end
  return epoch, head, ended
end

-- Nothing new follows the end of a stream: true when it has ended and the eventId/json
-- pairs args[from], args[from + 1], … (up to args[to], default the last) hold an event
-- not stored yet. Checked before any write, so a refused batch changes nothing.
local function new_after_end(ids, ended, args, from, to)
  if ended == '' then return false end
  for i = from, (to or #args), 2 do
    if redis.call('HEXISTS', ids, args[i]) == 0 then return true end
  end
  return false
end

-- Appends the eventId/json pairs args[from], args[from + 1], … (up to args[to], default
-- the last): dedupe by eventId, next seqs, XADD at 0-<seq>, head, trim, then the head
-- notice "<head> <epoch>" on the session's channel (the fast path for other nodes; the
-- stream stays the truth; with REDIS_WAIT_REPLICAS the engine sends it instead, after
-- WAIT, so no node hears of an event a failover could lose). Returns the new head and
-- { seq1, dup1, seq2, dup2, … }.
--
-- It guards the head itself (see guard_head), so loAppend need not read the stream's
-- newest entry before every batch (a command per session per call, issue 6): the batch's
-- first XADD, at head + 1, is refused by Redis exactly when an entry beyond head exists.
-- That XADD is its first write, so on that refusal it returns nil having written nothing,
-- and the caller starts a new epoch and appends again. A batch of duplicates only makes no
-- XADD and checks with XREVRANGE instead. Callers that ran guard_head never get nil.
-- The trim runs only once the stream can be over max_len: its entries are seqs 1..head.
local function append_pairs(stream, meta, ids, epoch, head, max_len, channel, args, from, to)
  local outcomes = {}
  local added = 0
  for i = from, (to or #args), 2 do
    local event_id, json = args[i], args[i + 1]
    local known = redis.call('HGET', ids, event_id)
    if known then
      outcomes[#outcomes + 1] = tonumber(known)
      outcomes[#outcomes + 1] = 1
    else
      head = head + 1
      if added == 0 then
        local r = redis.pcall('XADD', stream, '0-' .. head, 'e', json)
        if type(r) == 'table' and r.err then
          if beyond_head(stream, head - 1) then return nil end
          error(r)
        end
      else
        redis.call('XADD', stream, '0-' .. head, 'e', json)
      end
      -- recorded at once, so a second copy later in the same batch is a duplicate too
      redis.call('HSET', ids, event_id, head)
      outcomes[#outcomes + 1] = head
      outcomes[#outcomes + 1] = 0
      added = added + 1
    end
  end
  if added == 0 then
    if #outcomes > 0 and beyond_head(stream, head) then return nil end
    return head, outcomes
  end
  redis.call('HSET', meta, 'head', head)
  if head > tonumber(max_len) then
    redis.call('XTRIM', stream, 'MAXLEN', '=', tonumber(max_len))
  end
  ${publish ? `redis.call('${publish}', channel, head .. ' ' .. epoch)` : '-- the head notice: sent by the engine once replicas confirm'}
  return head, outcomes
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
