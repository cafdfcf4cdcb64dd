/**
 * Whether a node's first hello to a session can miss another node's append for good (the
 * race of session 22, end to end on a real Redis): two gateway processes on a private
 * redis-server and one session, and ROUNDS rounds of a fresh subscriber on node B while a
 * publisher on node A stores a burst of BURST events 0–MAX_DELAY_MS after its hello (see
 * bench/lib/burst-rounds.ts). Prints the rounds where B's subscriber never got the burst.
 *
 *   npx tsx bench/tools/notice-loss.ts [ROUNDS=300] [BURST=16] [MAX_DELAY_MS=6]
 */
import { GatewayProcess, processToken } from '../../chaos/toolkit/gateway-process.ts';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { burstRounds } from '../lib/burst-rounds.ts';

const [roundsArg, burstArg, delayArg] = process.argv.slice(2);
const rounds = Number(roundsArg ?? 300);
const burst = Number(burstArg ?? 16);
const maxDelayMs = Number(delayArg ?? 6);

const redis = await RedisServer.start({ aof: false });
const [a, b] = await Promise.all(
  ['a', 'b'].map((name) => GatewayProcess.start({ REDIS_URL: redis.url, NODE_ID: name })),
);
try {
  const sessionId = await a!.createSession(await processToken('owner', 'user'));
  const token = await processToken('bot', 'agent');
  const { misses, missedAt } = await burstRounds({
    a: a!,
    b: b!,
    sessionId,
    token,
    rounds,
    burst,
    maxDelayMs,
    missAfterMs: 500,
  });
  console.log(`${rounds} rounds of ${burst} events: ${misses} where B's subscriber never got the burst`);
  for (const line of missedAt) console.log(`  ${line}`);
} finally {
  await Promise.all([a!.stop(), b!.stop()]);
  await redis.stop();
}
