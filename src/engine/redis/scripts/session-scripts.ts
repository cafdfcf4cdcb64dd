import { appendLib, SHEBANG, STREAM_LIB } from './lua-lib.ts';
import type { PublishCommand } from './index.ts';

/**
 * Idempotent session creation, step 1 — KEYS: idem. ARGV: sessionId, recordJson,
 * ttlSeconds, eventJson ('' for none).
 * Returns { created (1|0), sessionId, recordJson, committed ('1'|'0'), eventJson }.
 *
 * The idempotency key has its own hash tag (the tenant's), so it cannot share a script
 * with the session's keys. This script is the one decision point: whichever concurrent
 * call runs it first claims the key for its session id; every other call, now or later,
 * reads that claim. The full record and its `call.created` event are stored with the
 * claim, so a loser never depends on the winner's second step having happened. See
 * RedisSessions.create (sessions.ts).
 */
export const IDEM_CLAIM_LUA = `${SHEBANG}
local existing = redis.call('HMGET', KEYS[1], 'sid', 'record', 'committed', 'event')
if existing[1] then
  return { 0, existing[1], existing[2], existing[3] or '0', existing[4] or '' }
end
redis.call('HSET', KEYS[1], 'sid', ARGV[1], 'record', ARGV[2], 'committed', '0', 'event', ARGV[4])
if tonumber(ARGV[3]) > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return { 1, ARGV[1], ARGV[2], '0', ARGV[4] }
`;

/**
 * Step 3 — KEYS: idem. Marks the claim's session record as written. A script only so it
 * cannot recreate (without TTL) a claim that expired in the meantime.
 */
export const IDEM_COMMIT_LUA = `${SHEBANG}
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'committed', '1')
end
return 1
`;

/**
 * createSession, writing the record — KEYS: stream, meta, ids, session.
 * ARGV: recordJson, candidateEpoch, maxLen, channel, then optionally eventId, eventJson.
 * Returns 1 when it wrote the record, 0 when a record was there already.
 *
 * SET NX, and only when that wrote: the session's `call.created` appended like
 * `append` would (so the record never exists without its first event, and a repeat
 * appends nothing). A stream that has ended (a stale one under a reused id) is left alone.
 */
export const createSessionLua = (
  publish: PublishCommand | undefined,
): string => `${SHEBANG}${STREAM_LIB}${appendLib(publish)}
local stream, meta, ids, session = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if not redis.call('SET', session, ARGV[1], 'NX') then return 0 end
if #ARGV >= 6 then
  local epoch, head, ended = load_meta(stream, meta, ids, ARGV[2])
  epoch, head, ended = guard_head(stream, meta, ids, ARGV[2], epoch, head, ended)
  if not new_after_end(ids, ended, ARGV, 5) then
    append_pairs(stream, meta, ids, epoch, head, ARGV[3], ARGV[4], ARGV, 5)
  end
end
return 1
`;

/**
 * transitionSession — KEYS: stream, meta, ids, session, subs.
 * ARGV: expectedVersion, nextRecordJson, endStream ('1'|'0'), ttlSeconds, candidateEpoch,
 * maxLen, channel, eventId, eventJson.
 * Returns one of
 *   { 'applied', epoch, head, endedAt|'', { seq, dup } }
 *   { 'conflict', currentRecordJson }      the stored version is not expectedVersion
 *   { 'not_found' }                        no record
 *   { 'ended', epoch, head, endedAt }      the stream has ended: nothing may follow
 *
 * The engine-level compare-and-set of the lifecycle (RedisSessions.transition, sessions.ts): the
 * version check, the record write, the append of the event that announces the change
 * (the same append_pairs as loAppend: dedupe, seq, epoch, notice) and, for a terminal
 * change, the end of the stream (mark_ended, as loEndStream) are one script on the
 * session's own keys, so of concurrent changes from one version on any number of nodes
 * exactly one applies, and the record and the stream never disagree. Every refusal is
 * decided before the first write.
 */
export const transitionSessionLua = (
  publish: PublishCommand | undefined,
): string => `${SHEBANG}${STREAM_LIB}${appendLib(publish)}
local stream, meta, ids, session = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local current = redis.call('GET', session)
if not current then return { 'not_found' } end
if tonumber(cjson.decode(current).version) ~= tonumber(ARGV[1]) then
  return { 'conflict', current }
end
local epoch, head, ended = load_meta(stream, meta, ids, ARGV[5])
epoch, head, ended = guard_head(stream, meta, ids, ARGV[5], epoch, head, ended)
if new_after_end(ids, ended, ARGV, 8) then
  return { 'ended', epoch, head, ended }
end
local outcomes
head, outcomes = append_pairs(stream, meta, ids, epoch, head, ARGV[6], ARGV[7], ARGV, 8)
redis.call('SET', session, ARGV[2], 'KEEPTTL')
if ARGV[3] == '1' and ended == '' then
  ended = head
  mark_ended(meta, head, tonumber(ARGV[4]) * 1000, { KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5] })
end
return { 'applied', epoch, head, ended, outcomes }
`;
