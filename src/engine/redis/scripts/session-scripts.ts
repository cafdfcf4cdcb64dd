import { SHEBANG } from './lua-lib.ts';

/**
 * Idempotent session creation, step 1 — KEYS: idem. ARGV: sessionId, recordJson, ttlSeconds.
 * Returns { created (1|0), sessionId, recordJson, committed ('1'|'0') }.
 *
 * The idempotency key has its own hash tag (the tenant's), so it cannot share a script
 * with the session's keys. This script is the one decision point: whichever concurrent
 * call runs it first claims the key for its session id; every other call, now or later,
 * reads that claim. The full record is stored with the claim, so a loser never depends
 * on the winner's second step having happened. See RedisEngine.createSession.
 */
export const IDEM_CLAIM_LUA = `${SHEBANG}
local existing = redis.call('HMGET', KEYS[1], 'sid', 'record', 'committed')
if existing[1] then
  return { 0, existing[1], existing[2], existing[3] or '0' }
end
redis.call('HSET', KEYS[1], 'sid', ARGV[1], 'record', ARGV[2], 'committed', '0')
if tonumber(ARGV[3]) > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return { 1, ARGV[1], ARGV[2], '0' }
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
