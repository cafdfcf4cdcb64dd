import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { RedisCluster } from '../../chaos/toolkit/redis-cluster.ts';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { clusterSubscriberClient } from '../../src/engine/redis/client.ts';
import { mapRedisError } from '../../src/engine/redis/errors.ts';
import { Notifications } from '../../src/engine/redis/notifications.ts';
import { EngineUnavailableError } from '../../src/errors/gateway-error.ts';

/**
 * How the redis engine classifies what Redis and ioredis throw (src/engine/redis/errors.ts):
 * what a retry can fix is `unavailable`, a defect stays as it is (and surfaces as
 * `internal`). Both found by the chaos scenario `redis-cluster-failover`, where they had
 * surfaced as `internal`: NOSCRIPT from a promoted node, and a failed SSUBSCRIBE.
 */
let srv: RedisServer;
before(async () => {
  srv = await RedisServer.start({ aof: false });
});
after(() => srv.stop());

async function failure(run: () => Promise<unknown>): Promise<unknown> {
  return run().then(
    () => assert.fail('expected a failure'),
    (err: unknown) => err,
  );
}

describe('mapRedisError', () => {
  it('NOSCRIPT is unavailable: the script did not run, and a retry loads it', async () => {
    const redis = new Redis(srv.url);
    try {
      const noscript = await failure(() => redis.evalsha('0'.repeat(40), 0));
      assert.match(String(noscript), /NOSCRIPT/);
      const mapped = mapRedisError(noscript, 'append');
      assert.ok(mapped instanceof EngineUnavailableError, String(mapped));
      // a reply that says the request is wrong stays a defect
      const wrongType = await failure(async () => {
        await redis.set('redis-errors:string', 'x');
        return redis.xadd('redis-errors:string', '*', 'f', 'v');
      });
      assert.equal(mapRedisError(wrongType, 'append'), wrongType);
    } finally {
      redis.disconnect();
    }
  });

  it('EXECABORT after commands refused for memory (OOM) is unavailable; after a wrong command it stays a defect', async () => {
    const redis = new Redis(srv.url);
    try {
      await redis.config('SET', 'maxmemory', '1');
      const oom = await failure(() =>
        redis.multi().zadd('redis-errors:z', 0, 'a').zadd('redis-errors:z', 0, 'b').exec(),
      );
      assert.match(String(oom), /EXECABORT/);
      assert.ok(mapRedisError(oom, 'createSession') instanceof EngineUnavailableError, String(oom));
    } finally {
      await redis.config('SET', 'maxmemory', '0');
    }
    try {
      const wrong = await failure(() => redis.multi().call('NOSUCHCOMMAND').exec());
      assert.match(String(wrong), /EXECABORT/);
      assert.equal(mapRedisError(wrong, 'createSession'), wrong);
    } finally {
      redis.disconnect();
    }
  });

  it('a failed SSUBSCRIBE rejects a watch with EngineUnavailableError', async () => {
    const cluster = await RedisCluster.start({ masters: 3 });
    const subscriber = clusterSubscriberClient({ nodes: cluster.nodes, commandTimeoutMs: 300 });
    const notifications = new Notifications(subscriber, () => {}, 'sharded');
    try {
      await notifications.watch('redis-errors:{a}:n', () => {}).ready;
      await cluster.stop();
      const lost = notifications.watch('redis-errors:{b}:n', () => {});
      await assert.rejects(lost.ready, EngineUnavailableError);
    } finally {
      notifications.close();
      await cluster.stop();
    }
  });
});
