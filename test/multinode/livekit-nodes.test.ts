/**
 * The LiveKit bridge on several gateway nodes sharing one Redis: the same room from every
 * node, and a webhook delivered many times to several nodes at once processed exactly
 * once.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { LK_ENV, postWebhook, signWebhook, webhookEvent } from '../helpers/livekit.ts';

let redis: RedisServer;
let nodes: TestGateway[] = [];

before(async () => {
  redis = await RedisServer.start({ aof: true, appendfsync: 'everysec' });
  const env = { ...LK_ENV, REDIS_URL: redis.url, REDIS_KEY_PREFIX: `lkmn${process.pid}:` };
  nodes = await Promise.all([0, 1, 2].map((i) => startTestGateway({ ...env, NODE_ID: `lk${i}` })));
});
after(async () => {
  await Promise.allSettled(nodes.map((n) => n.stop()));
  await redis.stop();
});

const post = (gw: TestGateway, path: string, token: string) =>
  gw.http('POST', path, token, undefined, { connection: 'close' });

describe('LiveKit bridge on several nodes', () => {
  it('every node hands out the same room for a session, also concurrently', async () => {
    const owner = await nodes[0]!.token('mn-owner');
    const sessionId = await nodes[0]!.createSession(owner);
    const replies = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        post(nodes[i % 3]!, `/v1/call/sessions/${sessionId}/livekit-token`, owner),
      ),
    );
    for (const r of replies) assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(new Set(replies.map((r) => r.body.room)), new Set([`lifeos-${sessionId}`]));
  });

  it('50 copies of one webhook spread over three nodes: all 2xx, one event appended', async () => {
    const owner = await nodes[1]!.token('mn-owner-2');
    const sessionId = await nodes[1]!.createSession(owner);
    const token = await post(nodes[2]!, `/v1/call/sessions/${sessionId}/livekit-token`, owner);
    const body = webhookEvent('participant_joined', {
      room: { sid: 'RM_mn', name: token.body.room },
      participant: { sid: 'PA_mn', identity: 'user:mn' },
    }).toJsonString();
    const authorization = await signWebhook(body);
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => postWebhook(nodes[i % 3]!.url, body, authorization)),
    );
    assert.deepEqual(
      results.map((r) => r.status).filter((s) => s !== 200),
      [],
    );
    assert.equal(results.filter((r) => r.body.status === 'processed').length, 1);
    const history = await nodes[0]!.http(
      'GET',
      `/v1/call/sessions/${sessionId}/events?after=0`,
      owner,
      undefined,
      {
        connection: 'close',
      },
    );
    assert.deepEqual(
      history.body.events.map((e: any) => e.event.type),
      ['call.created', 'call.participant_joined'],
    );
  });
});
