/**
 * Publishes refused while Redis is down (`nack unavailable`, retryable) are retried by
 * the SDK once it is back, in the order they were made: one publisher's events keep
 * their order through an outage.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import {
  closeClients,
  history,
  newSession,
  testClient,
  until,
  type Wire,
  recordingWebSocket,
} from './support.ts';

let redis: RedisServer;
let gw: TestGateway;
before(async () => {
  redis = await RedisServer.start({ aof: true, appendfsync: 'always' });
  gw = await startTestGateway({
    REDIS_URL: redis.url,
    REDIS_KEY_PREFIX: `sdk-order-${process.pid}:`,
    REDIS_COMMAND_TIMEOUT_MS: '500',
  });
});
after(async () => {
  await closeClients();
  await gw.stop();
  await redis.stop();
});

describe('client: publishes through a Redis outage', () => {
  it('retries refused publishes once Redis is back, in the order they were made', async () => {
    const s = await newSession(gw);
    const wire: Wire = { sockets: [] };
    const sub = testClient(gw, {
      token: s.agentToken,
      WebSocket: recordingWebSocket(wire),
      backoff: { baseMs: 20, capMs: 100 },
    }).subscribe(s.sessionId);
    await sub.publish('transcript.final', { segmentId: 's0', revision: 0, text: 't0' }, { id: 'p0' });

    await redis.kill();
    const ids = ['p1', 'p2', 'p3', 'p4', 'p5', 'p6'];
    const results = ids.map((id) =>
      sub.publish('transcript.final', { segmentId: id, revision: 0, text: id }, { id }),
    );
    const nacks = () =>
      wire.sockets.flatMap((w) => w.log).filter((l) => l.dir === 'in' && l.frame.op === 'nack');
    // every one refused at least once, so each had to be retried
    await until(
      () => ids.every((id) => nacks().some((l) => l.frame.id === id)),
      10_000,
      () => `a nack for each publish (have ${JSON.stringify(nacks().map((l) => l.frame))})`,
    );
    assert.ok(nacks().every((l) => l.frame.code === 'unavailable' && l.frame.retryable === true));
    await redis.restart();

    const seqs = (await Promise.all(results)).map((r) => r.seq);
    assert.deepEqual(seqs, [3, 4, 5, 6, 7, 8], 'stored in the order published');
    const stored = (await history(gw, s)).filter((e) => e.seq > 2).map((e) => e.event.eventId);
    assert.deepEqual(stored, ids);
  });
});
