import { SHEBANG, STREAM_LIB } from './lua-lib.ts';

/**
 * append — one call per batch (ARCHITECTURE-NOTES decision 1).
 * KEYS: stream, meta, ids. ARGV: candidateEpoch, maxLen, channel, then eventId, json pairs.
 * Returns { epoch, head, endedAt|'', { seq1, dup1, seq2, dup2, … } }.
 *
 * Atomic: the dedupe lookups, seq assignment, XADDs, trim, head update and notification
 * run as one script, on keys of one hash tag. The only step that could fail after a
 * write is an XADD whose ID is not above the stream's newest entry; the guard below
 * rules that out before anything is written.
 */
export const APPEND_LUA = `${SHEBANG}${STREAM_LIB}
local stream, meta, ids = KEYS[1], KEYS[2], KEYS[3]
local epoch, head, ended = load_meta(stream, meta, ids, ARGV[1])

-- Guard: meta's head must cover every stored entry. If it does not, meta was rolled back
-- behind its stream (partial restore, manual edits): that history cannot be trusted and
-- reusing its seqs under the same epoch is exactly what epochs forbid, so start a new one.
local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
if newest and (seq_of(newest[1]) or math.huge) > head then
  redis.call('DEL', stream, ids, meta)
  epoch, head, ended = load_meta(stream, meta, ids, ARGV[1])
end

local outcomes = {}
local added = 0
for i = 4, #ARGV, 2 do
  local event_id, json = ARGV[i], ARGV[i + 1]
  local known = redis.call('HGET', ids, event_id)
  if known then
    outcomes[#outcomes + 1] = tonumber(known)
    outcomes[#outcomes + 1] = 1
  else
    head = head + 1
    redis.call('XADD', stream, '0-' .. head, 'e', json)
    -- recorded at once, so a second copy later in the same batch is a duplicate too
    redis.call('HSET', ids, event_id, head)
    outcomes[#outcomes + 1] = head
    outcomes[#outcomes + 1] = 0
    added = added + 1
  end
end

if added > 0 then
  redis.call('HSET', meta, 'head', head)
  redis.call('XTRIM', stream, 'MAXLEN', '=', tonumber(ARGV[2]))
  if ended ~= '' then
    -- the event that ends the session may land after endStream: keep everything on one TTL
    local ttl = redis.call('PTTL', meta)
    if ttl > 0 then
      redis.call('PEXPIRE', stream, ttl)
      redis.call('PEXPIRE', ids, ttl)
    end
  end
  -- fast path for other nodes; the stream stays the truth (decision 6)
  redis.call('PUBLISH', ARGV[3], head .. ' ' .. epoch)
end
return { epoch, head, ended, outcomes }
`;

/**
 * read — KEYS: stream, meta, ids. ARGV: candidateEpoch, after, limit.
 * Returns { epoch, head, endedAt|'', firstSeq, { {id, {field, value}}, … } }.
 * One script so head, firstSeq and the events are one consistent snapshot; it writes
 * only when meta is missing (see load_meta). The XRANGE always carries COUNT.
 */
export const READ_LUA = `${SHEBANG}${STREAM_LIB}
local epoch, head, ended = load_meta(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
local first_seq = head + 1
if first then first_seq = seq_of(first[1]) or first_seq end
local limit = tonumber(ARGV[3])
local entries = {}
-- COUNT 0 would mean "no limit" to Redis: a limit below 1 reads nothing instead
if limit >= 1 then
  entries = redis.call('XRANGE', KEYS[1], '(0-' .. ARGV[2], '+', 'COUNT', limit)
end
return { epoch, head, ended, first_seq, entries }
`;

/**
 * head — KEYS: stream, meta, ids. ARGV: candidateEpoch. Returns { epoch, head, endedAt|'' }.
 * A script (not HMGET) because the first look at a stream must create its epoch.
 */
export const HEAD_LUA = `${SHEBANG}${STREAM_LIB}
local epoch, head, ended = load_meta(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
return { epoch, head, ended }
`;

/**
 * endStream — KEYS: stream, meta, ids, session, subs. ARGV: candidateEpoch, ttlSeconds,
 * subscriberKeyPrefix. Returns { epoch, head, endedAt }.
 *
 * Idempotent: only the first call sets endedAt and the TTLs, so repeating it neither moves
 * endedAt nor pushes the expiry out. Subscriber keys are built from the `subs` index
 * inside the script; they share the session's hash tag, so they are in this slot.
 */
export const END_STREAM_LUA = `${SHEBANG}${STREAM_LIB}
local epoch, head, ended = load_meta(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
if ended == '' then
  ended = head
  redis.call('HSET', KEYS[2], 'endedAt', head)
  local ttl_ms = tonumber(ARGV[2]) * 1000
  for i = 1, 5 do
    redis.call('PEXPIRE', KEYS[i], ttl_ms)
  end
  for _, member in ipairs(redis.call('SMEMBERS', KEYS[5])) do
    local key = ARGV[3] .. member
    local ttl = redis.call('PTTL', key)
    -- a released subscriber may already expire sooner; never extend that
    if ttl == -1 or ttl > ttl_ms then
      redis.call('PEXPIRE', key, ttl_ms)
    end
  end
end
return { epoch, head, ended }
`;
