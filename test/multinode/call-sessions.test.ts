import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { subscribe, type Frame, type TestClient } from '../helpers/ws-client.ts';

/**
 * Call session transitions on several nodes sharing one Redis: the compare-and-set is
 * the engine's (one Lua script per change), so of racing transitions exactly one wins,
 * whichever nodes they arrive on, and the change reaches subscribers on every node,
 * with `eos` when it ends the stream.
 */
let redis: RedisServer;
let run = 0;
const nodes: TestGateway[] = [];

before(async () => {
  redis = await RedisServer.start({ aof: true, appendfsync: 'everysec' });
});
after(async () => {
  await Promise.allSettled(nodes.map((n) => n.stop()));
  await redis.stop();
});

async function gateways(count: number): Promise<TestGateway[]> {
  const env = { REDIS_URL: redis.url, REDIS_KEY_PREFIX: `cs${++run}:` };
  const started = await Promise.all(
    Array.from({ length: count }, (_, i) => startTestGateway({ ...env, NODE_ID: `n${i}` })),
  );
  nodes.push(...started);
  return started;
}

function transition(gw: TestGateway, sessionId: string, token: string, body: unknown) {
  return gw.http('POST', `/v1/call/sessions/${sessionId}/transitions`, token, body, { connection: 'close' });
}

async function history(gw: TestGateway, sessionId: string, token: string): Promise<any[]> {
  const res = await gw.http(
    'GET',
    `/v1/call/sessions/${sessionId}/events?after=0&limit=1000`,
    token,
    undefined,
    {
      connection: 'close',
    },
  );
  assert.equal(res.status, 200);
  return res.body.events;
}

/** Every frame up to and including eos; then the socket closes with 1000. */
async function untilEos(client: TestClient): Promise<Frame[]> {
  const frames: Frame[] = [];
  for (;;) {
    const frame = await client.next(() => true);
    frames.push(frame);
    if (frame.op === 'ev') client.send({ op: 'ack', seq: frame.seq });
    if (frame.op === 'eos') break;
  }
  assert.equal(await client.closeCode(), 1000);
  return frames;
}

describe('call sessions on several nodes', () => {
  it('racing transitions from both nodes: exactly one wins each race, one event each, and every node’s subscribers get them and eos', async () => {
    const [a, b] = (await gateways(2)) as [TestGateway, TestGateway];
    const owner = await a.token('alice');
    const agent = await a.token('bot', 'agent');
    const RACERS = 16;
    for (let round = 0; round < 5; round++) {
      const sessionId = await a.createSession(owner);
      const watchers = await Promise.all(
        [a, b].map((n) => subscribe(n.wsUrl, { sessionId, token: owner, after: 0 }, 'json')),
      );
      const node = (i: number) => (i % 2 === 0 ? a : b);

      // 1. from version 1, each with its own provider: one applies, the rest see another version
      const connecting = await Promise.all(
        Array.from({ length: RACERS }, (_, i) =>
          transition(node(i), sessionId, i % 3 === 0 ? agent : owner, {
            to: 'connecting',
            provider: 'livekit',
            providerRoomId: `room-${i}`,
            expectedVersion: 1,
          }),
        ),
      );
      const won = connecting.filter((r) => r.status === 200);
      assert.equal(won.length, 1, JSON.stringify(connecting.map((r) => r.status)));
      for (const r of connecting.filter((x) => x.status !== 200)) {
        assert.equal(r.status, 409);
        assert.equal(r.body.error.code, 'version_conflict');
      }
      assert.equal(won[0]!.body.version, 2);

      // 2. without expectedVersion, activations with different correlations: the first
      //    applies, the others find an active session whose correlation they would change
      const active = await Promise.all(
        Array.from({ length: RACERS }, (_, i) =>
          transition(node(i), sessionId, agent, {
            to: 'active',
            provider: 'livekit',
            providerRoomId: `r-${i}`,
          }),
        ),
      );
      assert.equal(active.filter((r) => r.status === 200).length, 1);
      for (const r of active.filter((x) => x.status !== 200)) {
        assert.equal(r.body.error.code, 'provider_correlation_immutable');
      }

      // 3. identical terminal requests on both nodes: one change, the rest are replays of it
      const ended = await Promise.all(
        Array.from({ length: RACERS }, (_, i) =>
          transition(node(i), sessionId, owner, { to: round % 2 === 0 ? 'ended' : 'failed', reason: 'race' }),
        ),
      );
      assert.ok(ended.every((r) => r.status === 200));
      assert.equal(
        new Set(ended.map((r) => JSON.stringify(r.body))).size,
        1,
        'every answer is the one session',
      );
      assert.equal(ended[0]!.body.version, 4);

      const stored = await history(b, sessionId, owner);
      const terminal = round % 2 === 0 ? 'call.ended' : 'call.failed';
      assert.deepEqual(
        stored.map((e) => e.event.type),
        ['call.created', 'call.connecting', 'call.activated', terminal],
        'one event per change',
      );
      for (const { client } of watchers) {
        const frames = await untilEos(client);
        const evs = frames.filter((f) => f.op === 'ev');
        assert.deepEqual(
          evs.map((f) => [f.seq, f.event.type]),
          stored.map((e) => [e.seq, e.event.type]),
        );
        assert.deepEqual(frames.at(-1), { op: 'eos', seq: 4 });
      }
    }
  });

  it('a transition made on node B reaches a subscriber on node A, then eos', async () => {
    const [a, b] = (await gateways(2)) as [TestGateway, TestGateway];
    const owner = await a.token('carol');
    const sessionId = await a.createSession(owner);
    const { client } = await subscribe(a.wsUrl, { sessionId, token: owner, after: 0 }, 'msgpack');
    for (const body of [
      { to: 'connecting', provider: 'livekit' },
      { to: 'active', provider: 'livekit', providerRoomId: 'room-x', providerParticipantId: 'PA_1' },
      { to: 'ending', reason: 'bye' },
      { to: 'ended', reason: 'bye' },
    ]) {
      const res = await transition(b, sessionId, owner, body);
      assert.equal(res.status, 200, JSON.stringify(res.body));
    }
    const frames = await untilEos(client);
    const evs = frames.filter((f) => f.op === 'ev');
    assert.deepEqual(
      evs.map((f) => [f.seq, f.event.type, f.event.payload.version]),
      [
        [1, 'call.created', 1],
        [2, 'call.connecting', 2],
        [3, 'call.activated', 3],
        [4, 'call.ending', 4],
        [5, 'call.ended', 5],
      ],
    );
    assert.equal(evs[2]!.event.payload.providerRoomId, 'room-x');
    assert.deepEqual(frames.at(-1), { op: 'eos', seq: 5 });
    // both nodes read the same record
    const [onA, onB] = await Promise.all(
      [a, b].map((n) =>
        n.http('GET', `/v1/call/sessions/${sessionId}`, owner, undefined, { connection: 'close' }),
      ),
    );
    assert.deepEqual(onA!.body, onB!.body);
    assert.equal(onA!.body.state, 'ended');
  });
});
