import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { GatewayProcess, processToken } from '../../chaos/toolkit/gateway-process.ts';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { burstRounds } from '../../bench/lib/burst-rounds.ts';

/**
 * A node's first hello to a session, while another node stores a burst, on a real Redis
 * (bench/lib/burst-rounds.ts). The burst's one notice can reach the hello's node before
 * the reply of the head read its actor makes on attaching (pub/sub and commands are two
 * connections); before session 22 the actor dropped it, and that node's subscriber
 * waited for the burst for good. On this machine 3 to 10 rounds in 1,000 lost it then
 * (docs/bench/2026-12-01-notice-loss.txt); so a build that drops the notice fails here
 * in all but a small share of runs. The ordering itself is pinned down deterministically
 * in test/unit/notice-during-load.test.ts and test/property/notice-load.property.test.ts.
 */

let redis: RedisServer;
let a: GatewayProcess;
let b: GatewayProcess;

before(async () => {
  redis = await RedisServer.start({ aof: false });
  [a, b] = (await Promise.all(
    ['a', 'b'].map((name) => GatewayProcess.start({ REDIS_URL: redis.url, NODE_ID: name })),
  )) as [GatewayProcess, GatewayProcess];
});

after(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await redis?.stop();
});

it('a first hello on one node never misses a burst another node stores meanwhile', async () => {
  const sessionId = await a.createSession(await processToken('owner', 'user'));
  const { misses, missedAt } = await burstRounds({
    a,
    b,
    sessionId,
    token: await processToken('bot', 'agent'),
    rounds: 1500,
    burst: 16,
    maxDelayMs: 3,
    missAfterMs: 2000,
  });
  assert.equal(misses, 0, `rounds where node b's subscriber never got the burst: ${missedAt.join('; ')}`);
});
