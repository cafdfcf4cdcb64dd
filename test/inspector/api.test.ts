import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { until } from '../helpers/until.ts';
import { subscribe } from '../helpers/ws-client.ts';

/**
 * The inspector API (`/v1/inspector/*`) and the console's static files, on real
 * gateways of both engines; on Redis also across two nodes, where only the engine knows
 * which node holds a subscriber's connection.
 */
let redis: RedisServer;
let run = 0;
const gateways: TestGateway[] = [];

before(async () => {
  redis = await RedisServer.start();
});
after(async () => {
  await Promise.allSettled(gateways.map((g) => g.stop()));
  await redis.stop();
});

type Engine = 'memory' | 'redis';

/** Gateways sharing one engine (one key prefix on Redis), console on unless told. */
async function start(engine: Engine, nodes: string[] = ['n0'], env: Record<string, string> = {}) {
  const shared =
    engine === 'redis' ? { REDIS_URL: redis.url, REDIS_KEY_PREFIX: `insp${process.pid}-${++run}:` } : {};
  const started = await Promise.all(
    nodes.map((NODE_ID) =>
      startTestGateway({ CONSOLE_ENABLED: 'true', RESUME_WINDOW_MS: '60000', NODE_ID, ...shared, ...env }),
    ),
  );
  gateways.push(...started);
  return started;
}

function transcript(i: number) {
  return { type: 'transcript.partial', payload: { segmentId: 'seg', revision: i, text: `word ${i}` } };
}

it('is off by default: the API and the console are 404', async () => {
  const [gw] = await start('memory', ['n0'], { CONSOLE_ENABLED: '' });
  const operator = await gw!.token('ops', 'operator');
  for (const path of [
    '/v1/inspector/sessions',
    '/v1/inspector/sessions/x',
    '/console',
    '/console/console.js',
  ]) {
    const res = await gw!.http('GET', path, operator);
    assert.equal(res.status, 404, path);
    assert.equal(res.body.error.code, 'not_found', path);
  }
});

it('serves the console page and its assets with a strict content security policy', async () => {
  const [gw] = await start('memory');
  for (const [path, type] of [
    ['/console', 'text/html'],
    ['/console/', 'text/html'],
    ['/console/console.js', 'text/javascript'],
    ['/console/console.css', 'text/css'],
  ] as const) {
    const res = await fetch(gw!.url + path, { headers: { connection: 'close' } });
    assert.equal(res.status, 200, path);
    assert.match(res.headers.get('content-type') ?? '', new RegExp(`^${type}`), path);
    assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'none'.*connect-src 'self'/);
    assert.equal(res.headers.get('x-frame-options'), 'DENY');
    assert.equal(res.headers.get('cache-control'), 'no-store');
    await res.text();
  }
  const html = await (await fetch(`${gw!.url}/console`, { headers: { connection: 'close' } })).text();
  assert.match(html, /<script type="module" src="\/console\/console\.js">/);
  const missing = await gw!.http('GET', '/console/secrets.txt');
  assert.equal(missing.status, 404);
});

for (const engine of ['memory', 'redis'] as const) {
  describe(`inspector API [${engine}]`, () => {
    it('is for operators of the session’s tenant only', async () => {
      const [gw] = await start(engine);
      const owner = await gw!.token('alice');
      const sessionId = await gw!.createSession(owner);
      const path = `/v1/inspector/sessions/${sessionId}`;

      assert.equal((await gw!.http('GET', path)).status, 401);
      assert.equal((await gw!.http('GET', '/v1/inspector/sessions')).status, 401);
      for (const role of ['user', 'agent', 'service'] as const) {
        const token = await gw!.token(role === 'user' ? 'alice' : `${role}-1`, role);
        const res = await gw!.http('GET', path, token);
        assert.equal(res.status, 403, role);
        assert.equal(res.body.error.code, 'forbidden');
        assert.equal((await gw!.http('GET', '/v1/inspector/sessions', token)).status, 403, role);
      }
      const stranger = await gw!.token('ops', 'operator', 'other-tenant');
      const hidden = await gw!.http('GET', path, stranger);
      assert.equal(hidden.status, 404);
      assert.equal(hidden.body.error.code, 'session_not_found');
      const strangerList = await gw!.http('GET', '/v1/inspector/sessions', stranger);
      assert.deepEqual(strangerList.body, { sessions: [] });

      const operator = await gw!.token('ops', 'operator');
      assert.equal((await gw!.http('GET', path, operator)).status, 200);
      const unknown = await gw!.http('GET', '/v1/inspector/sessions/cs_nope', operator);
      assert.equal(unknown.status, 404);
      assert.equal((await gw!.http('GET', '/v1/inspector/sessions?limit=0', operator)).status, 400);
    });

    it('lists the tenant’s sessions, newest first, with their heads', async () => {
      const [gw] = await start(engine);
      const owner = await gw!.token(`alice-${engine}`, 'user', `acme-list-${engine}`);
      const agent = await gw!.token('bot', 'agent', `acme-list-${engine}`);
      const first = await gw!.createSession(owner);
      const second = await gw!.createSession(owner);
      for (let i = 0; i < 3; i++) {
        assert.equal(
          (await gw!.http('POST', `/v1/call/sessions/${second}/events`, agent, transcript(i))).status,
          201,
        );
      }
      const operator = await gw!.token('ops', 'operator', `acme-list-${engine}`);
      const page = await gw!.http('GET', '/v1/inspector/sessions?limit=1', operator);
      assert.equal(page.status, 200);
      assert.equal(page.body.sessions.length, 1);
      assert.deepEqual(
        { ...page.body.sessions[0], createdAt: undefined },
        { id: second, state: 'created', ownerId: `alice-${engine}`, headSeq: 4, createdAt: undefined },
      );
      const next = await gw!.http(
        'GET',
        `/v1/inspector/sessions?limit=1&cursor=${encodeURIComponent(page.body.nextCursor)}`,
        operator,
      );
      assert.equal(next.body.sessions[0].id, first);
      assert.equal(next.body.sessions[0].headSeq, 1);
    });

    it('shows a subscriber connected here, its acks and lag, then disconnected, then resumed', async () => {
      const [gw] = await start(engine);
      const owner = await gw!.token('alice');
      const agent = await gw!.token('bot', 'agent');
      const operator = await gw!.token('ops', 'operator');
      const sessionId = await gw!.createSession(owner);
      for (let i = 0; i < 3; i++)
        await gw!.http('POST', `/v1/call/sessions/${sessionId}/events`, agent, transcript(i));
      const before = Date.now();
      const { client, welcome } = await subscribe(gw!.wsUrl, { sessionId, token: owner, after: 0 });
      const events = await client.events(4);
      assert.deepEqual(
        events.map((f) => f.seq),
        [1, 2, 3, 4],
      );
      client.send({ op: 'ack', seq: 2 });

      const inspect = async () => {
        const res = await gw!.http('GET', `/v1/inspector/sessions/${sessionId}`, operator);
        assert.equal(res.status, 200);
        return res.body;
      };
      let view = await inspect();
      await until(
        async () => (view = await inspect()).subscribers[0]?.ackedSeq === 2,
        5000,
        () => `ackedSeq 2, have ${JSON.stringify(view.subscribers)}`,
      );
      assert.equal(view.session.id, sessionId);
      assert.equal(view.headSeq, 4);
      assert.equal(view.epoch, welcome.epoch);
      assert.equal(view.endedAt, null);
      assert.equal(view.node, 'n0');
      assert.equal(view.truncated, false);
      assert.equal(view.subscribers.length, 1);
      const live = view.subscribers[0];
      assert.equal(live.subscriberId, welcome.subscriberId);
      assert.equal(live.userId, 'alice');
      assert.equal(live.state, 'connected');
      assert.equal(live.node, 'n0');
      assert.equal(live.local, true);
      assert.equal(live.generation, 1);
      assert.equal(live.deliveredSeq, 4);
      assert.equal(live.inFlight, 2);
      assert.equal(live.connectionId, welcome.connectionId);
      assert.equal(view.nodeHeadSeq, 4, "the head as this node's actor knows it");
      assert.equal(live.ackLag, 2);
      assert.equal(live.resumableUntil, null);
      assert.ok(live.since >= before && live.since <= view.at, 'connected since the hello');

      // The ack reaches the engine's checkpoint; then the socket goes.
      await until(
        async () =>
          (await gw!.gateway.engine.getSubscriber(sessionId, welcome.subscriberId))?.checkpoint === 2,
        5000,
        'the checkpoint',
      );
      client.close();
      await until(
        async () => (view = await inspect()).subscribers[0]?.state === 'disconnected',
        5000,
        'disconnected',
      );
      const gone = view.subscribers[0];
      assert.equal(gone.local, false);
      assert.equal(gone.deliveredSeq, null);
      assert.equal(gone.inFlight, null);
      assert.equal(gone.connectionId, null);
      assert.equal(gone.ackedSeq, 2);
      assert.equal(gone.ackLag, 2);
      assert.equal(gone.node, 'n0', 'the node that held the last connection');
      assert.ok(gone.since >= live.since);
      assert.equal(gone.resumableUntil, gone.since + 60_000);

      const resumed = await subscribe(gw!.wsUrl, {
        sessionId,
        resume: { token: welcome.resumeToken, lastSeq: 2 },
      });
      await resumed.client.events(2);
      view = await inspect();
      const back = view.subscribers[0];
      assert.equal(back.state, 'connected');
      assert.equal(back.generation, 2);
      assert.equal(back.local, true);
      assert.equal(back.deliveredSeq, 4);
      resumed.client.close();
    });

    if (engine === 'redis') {
      it('names the node holding each connection, from any node', async () => {
        const [n0, n1] = await start(engine, ['n0', 'n1']);
        const owner = await n0!.token('alice');
        const operator = await n0!.token('ops', 'operator');
        const sessionId = await n0!.createSession(owner);
        const { client, welcome } = await subscribe(n1!.wsUrl, { sessionId, token: owner, after: 0 });
        await client.events(1);
        client.send({ op: 'ack', seq: 1 });

        const inspect = async (node: TestGateway) =>
          (await node.http('GET', `/v1/inspector/sessions/${sessionId}`, operator)).body;
        let fromN0 = await inspect(n0!);
        await until(
          async () => (fromN0 = await inspect(n0!)).subscribers[0]?.ackedSeq === 1,
          5000,
          'the checkpoint, seen from n0',
        );
        const remote = fromN0.subscribers[0];
        assert.equal(fromN0.node, 'n0');
        assert.equal(remote.node, 'n1');
        assert.equal(remote.local, false);
        assert.equal(remote.state, 'connected');
        assert.equal(remote.deliveredSeq, null, 'only n1 knows what it delivered');
        assert.equal(remote.connectionId, null);
        assert.equal(remote.ackLag, 0);
        assert.equal(fromN0.nodeHeadSeq, null, 'n0 holds no actor for the session');
        const fromN1 = await inspect(n1!);
        assert.equal(fromN1.subscribers[0].local, true);
        assert.equal(fromN1.subscribers[0].deliveredSeq, 1);
        assert.equal(fromN1.subscribers[0].connectionId, welcome.connectionId);
        assert.equal(fromN1.nodeHeadSeq, 1);

        // A resume on n0 takes the subscriber over: now n0 holds it.
        const moved = await subscribe(n0!.wsUrl, { sessionId, resume: { token: welcome.resumeToken } });
        assert.equal(await client.closeCode(), 4009);
        const after = (await inspect(n0!)).subscribers[0];
        assert.equal(after.node, 'n0');
        assert.equal(after.local, true);
        assert.equal(after.generation, 2);
        moved.client.close();
      });
    }
  });
}
