/**
 * The gateway restarts on the redis engine (its own redis-server, whatever TEST_ENGINE
 * says): the SDK sees 1001, retries while nothing listens, and resumes the same
 * subscriber on the new process: every event exactly once, in order.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FaultProxy } from '../../chaos/toolkit/fault-proxy.ts';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { ConnectionRefusedError } from '../../client/index.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import {
  assertExactlyOnce,
  closeClients,
  newSession,
  postEvents,
  record,
  testClient,
  until,
} from './support.ts';

let redis: RedisServer;
before(async () => {
  redis = await RedisServer.start({ aof: true, appendfsync: 'always' });
});
after(async () => {
  await closeClients();
  await redis.stop();
});

for (const codec of ['json', 'msgpack'] as const) {
  describe(`client: gateway restart on redis [${codec}]`, () => {
    it('resumes the same subscriber on the restarted gateway, exactly once, in order', async () => {
      const env = { REDIS_URL: redis.url, REDIS_KEY_PREFIX: `sdk-restart-${codec}-${process.pid}:` };
      let gw: TestGateway | undefined = await startTestGateway(env);
      // The proxy keeps one address for the client while the gateway's port changes.
      const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port: gw.gateway.port } });
      try {
        const s = await newSession(gw);
        const sub = testClient(
          { wsUrl: `ws://127.0.0.1:${proxy.port}/v1/realtime` },
          { codec, token: async () => s.ownerToken },
        ).subscribe(s.sessionId, { after: 0 });
        const r = record(sub);
        await postEvents(gw, s, 4);
        await until(() => r.seqs.length === 5, 5000, 'events before the restart');

        await gw.stop(); // drains: 1001 to every socket
        gw = undefined;
        await until(() => sub.state === 'resuming', 5000, 'the SDK to notice');
        gw = await startTestGateway(env);
        proxy.retarget({ host: '127.0.0.1', port: gw.gateway.port });
        await postEvents(gw, s, 4);
        await until(
          () => r.seqs.length === 9,
          10_000,
          () => `events after the restart (have ${r.seqs.length})`,
        );
        assertExactlyOnce(r.seqs, 1, 9);
        assert.equal(sub.state, 'live');
        assert.ok(sub.stats.resumes >= 1, 'resumed, not started over');
        assert.equal(sub.stats.freshStarts, 1);
        assert.ok(!r.errors.some((e) => e instanceof ConnectionRefusedError), r.errors.join('; '));
        await closeClients();
      } finally {
        await proxy.close();
        await gw?.stop();
      }
    });
  });
}
