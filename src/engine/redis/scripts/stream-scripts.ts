import { appendLib, SHEBANG, STREAM_LIB } from './lua-lib.ts';
import type { PublishCommand } from './index.ts';

/**
 * append — one call per tick for the batches of many sessions (ARCHITECTURE-NOTES
 * decision 1; on a Redis Cluster one call per session, see tick-queue.ts).
 * KEYS: stream, meta, ids of each session, in order (the same session may appear more
 * than once: its batches are applied in order). ARGV: maxLen, candidateEpoch, then for
 * each session the header `"<n> <seenHead> <seenEpoch|->"` followed by n eventId, json
 * pairs. Few arguments, because each costs the client a RESP element to build, and a
 * tick's sessions mostly carry one event each (issue 6):
 * - the scalars ride in one header;
 * - the candidate epoch is the call's: a session adopts it only when its meta is missing
 *   or rolled back, at most once per call (adopting makes meta consistent, and no caller
 *   has seen the new epoch yet), and epochs only have to differ within one session;
 * - the notice channel is the meta key with `meta` replaced by `n` (see keys.ts).
 * Returns one reply per session, in order, each one string of space-separated fields:
 * `<epoch> <head> <endedAt|-> <refused|-> <seq1> <dup1> …`, where refused is `ended` when
 * the stream has ended and the batch holds a new event (nothing of that batch was
 * appended). One string, not a nested array, because the client decodes every RESP element
 * with several calls of its own: the array was 5 + 2n elements per session, per tick.
 * The channel carries the session's hash tag: on a cluster the notice is an SPUBLISH,
 * which Redis allows in a script only on a channel of the script's own slot.
 *
 * Atomic per session and as a whole: the dedupe lookups, seq assignment, XADDs, trim,
 * head update and notification of every batch run in one script. The layout is checked
 * before anything is written; the only step that could fail after a write is an XADD
 * whose ID is not above the stream's newest entry. Only a session's first XADD can meet
 * that (each one after it is above the entry just added), and append_pairs makes that
 * first one with pcall: refused, it has written nothing for the session, which then
 * starts a new epoch (guard_head's rule, checked by the write itself instead of one
 * XREVRANGE per session per call).
 */
export const appendLua = (
  publish: PublishCommand | undefined,
): string => `${SHEBANG}${STREAM_LIB}${appendLib(publish)}
if #KEYS == 0 or #KEYS % 3 ~= 0 then
  return redis.error_reply('ERR loAppend: three keys per session')
end
local headers = {}
local at = 3
for s = 1, #KEYS / 3 do
  local n, seen_head, seen_epoch = string.match(ARGV[at] or '', '^(%d+) (%d+) (%S+)$')
  if not n then
    return redis.error_reply('ERR loAppend: bad session header')
  end
  if seen_epoch == '-' then seen_epoch = '' end
  headers[s] = { tonumber(n), seen_head, seen_epoch }
  at = at + 1 + 2 * tonumber(n)
end
if at - 1 ~= #ARGV then
  return redis.error_reply('ERR loAppend: arguments do not match the keys')
end
local function packed(epoch, head, ended, outcomes, refused)
  local parts = { epoch, string.format('%d', head), ended == '' and '-' or ended, refused }
  for i = 1, #outcomes do parts[#parts + 1] = string.format('%d', outcomes[i]) end
  return table.concat(parts, ' ')
end
local replies = {}
local candidate = ARGV[2]
at = 3
for s = 1, #KEYS / 3 do
  local stream, meta, ids = KEYS[3 * s - 2], KEYS[3 * s - 1], KEYS[3 * s]
  local n, seen_head, seen_epoch = headers[s][1], headers[s][2], headers[s][3]
  local channel = string.sub(meta, 1, -5) .. 'n'
  local from = at + 1
  local to = at + 2 * n
  local epoch, head, ended = load_meta(stream, meta, ids, candidate)
  epoch, head, ended = check_seen(stream, meta, ids, candidate, epoch, head, ended, seen_epoch, seen_head)
  if new_after_end(ids, ended, ARGV, from, to) then
    replies[s] = packed(epoch, head, ended, {}, 'ended')
  else
    local appended, outcomes = append_pairs(stream, meta, ids, epoch, head, ARGV[1], channel, ARGV, from, to)
    if not appended then
      -- meta is behind its stream (see guard_head): nothing was written; a new epoch
      redis.call('DEL', stream, ids, meta)
      epoch, head, ended = load_meta(stream, meta, ids, candidate)
      appended, outcomes = append_pairs(stream, meta, ids, epoch, head, ARGV[1], channel, ARGV, from, to)
    end
    head = appended
    replies[s] = packed(epoch, head, ended, outcomes, '-')
  end
  at = to + 1
end
return replies
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
 * head — KEYS: stream, meta, ids, session. ARGV: candidateEpoch, seenEpoch, seenHead,
 * ttlMs (for a meta it makes while the session has no record). Returns
 * { epoch, head, endedAt|'' }.
 * A script (not HMGET) because the first look at a stream must create its epoch.
 */
export const HEAD_LUA = `${SHEBANG}${STREAM_LIB}
local made = redis.call('EXISTS', KEYS[2]) == 0
local epoch, head, ended = load_meta(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
epoch, head, ended = check_seen(KEYS[1], KEYS[2], KEYS[3], ARGV[1], epoch, head, ended, ARGV[2], ARGV[3])
-- A meta this read had to make for a session with no record (never created, or gone
-- after its end: a resume with an old token loads the actor before its takeover fails)
-- expires like an ended stream's keys instead of staying for ever.
if made and redis.call('EXISTS', KEYS[4]) == 0 then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
return { epoch, head, ended }
`;

/**
 * endStream — KEYS: stream, meta, ids, session, subs, then one key per subscriber.
 * ARGV: candidateEpoch, ttlSeconds, then the subscriber members, in the order of their keys.
 * Called with a variable number of keys (numkeys first). Returns
 * { epoch, head, endedAt, { members of subs that were not passed } }.
 *
 * The first call sets endedAt and puts the five session keys on the retention TTL; a
 * repeat neither moves endedAt nor pushes the expiry out. Every call caps the passed
 * subscriber keys at that TTL (what is left of it, on a repeat): a subscriber key never
 * outlives its session, and a released one that expires sooner keeps its own TTL.
 *
 * Subscriber keys are passed by the caller, not built here from the subs index, so the
 * script touches declared keys only (a Redis Cluster requirement). The caller reads the
 * index first; a subscriber created between that read and this script is reported back
 * as missing and the caller runs the script again with it. Subscribers created after
 * the end follow the TTL on their own (follow_session_ttl), so one more call suffices.
 */
export const END_STREAM_LUA = `${SHEBANG}${STREAM_LIB}
local epoch, head, ended = load_meta(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
local ttl_ms, cap
if ended == '' then
  ended = head
  ttl_ms = tonumber(ARGV[2]) * 1000
  mark_ended(KEYS[2], head, ttl_ms, { KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5] })
  cap = true
else
  -- a repeat: what is left of the session's TTL (none if meta has none)
  ttl_ms = redis.call('PTTL', KEYS[2])
  cap = ttl_ms > 0
end
local passed = {}
for i = 6, #KEYS do
  passed[ARGV[i - 3]] = true
  if cap then
    local ttl = redis.call('PTTL', KEYS[i])
    -- a released subscriber may already expire sooner; never extend that
    if ttl == -1 or ttl > ttl_ms then
      redis.call('PEXPIRE', KEYS[i], ttl_ms)
    end
  end
end
local missing = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  if not passed[member] then missing[#missing + 1] = member end
end
return { epoch, head, ended, missing }
`;

/**
 * notify — the head notices of a round of appends, on one Redis (PUBLISH), sent by the
 * engine once WAIT confirmed them (REDIS_WAIT_REPLICAS; the append scripts then send
 * none). ARGV: channel, message pairs. One call for the round: a PUBLISH each from the
 * client would cost it a command per session. Not for a cluster, where a channel must be
 * of the script's own slot: there the engine sends one SPUBLISH per session.
 */
export const NOTIFY_LUA = `${SHEBANG}
for i = 1, #ARGV, 2 do
  redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end
return #ARGV / 2
`;
