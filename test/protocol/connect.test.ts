/**
 * PROTOCOL.md §3 (connecting) and §6 (who may read a session), over both subprotocols.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { startTestGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway.ts';
import {
  api,
  assertContiguous,
  closeAll,
  connect,
  expectClose,
  foreignToken,
  hello,
  helloRefused,
  newSession,
  publisher,
  publishMany,
  refusedUpgradeStatus,
  roundTrip,
  seqs,
  SUBPROTOCOLS,
  unsignedToken,
  waitFor,
  waitSeq,
} from './support.ts';

const HELLO_TIMEOUT_MS = 300;

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway({ HELLO_TIMEOUT_MS: String(HELLO_TIMEOUT_MS), RESUME_WINDOW_MS: '60000' });
});
afterEach(closeAll);
after(() => gw.stop());

describe('§3 upgrade', () => {
  it('§3 upgrade: a subprotocol other than lifeos.v1.json / lifeos.v1.msgpack is refused with HTTP 400', async () => {
    assert.equal(await refusedUpgradeStatus(gw.wsUrl, ['foo']), 400);
    assert.equal(await refusedUpgradeStatus(gw.wsUrl, ['lifeos.v2.json', 'json']), 400);
  });

  it('§3 upgrade: an upgrade offering no subprotocol at all is refused with HTTP 400', async () => {
    assert.equal(await refusedUpgradeStatus(gw.wsUrl, []), 400);
  });

  it('§3 upgrade: the gateway selects the offered subprotocol it speaks', async () => {
    const json = await connect(gw, 'json');
    assert.equal(json.ws.protocol, 'lifeos.v1.json');
    const msgpack = await connect(gw, 'msgpack');
    assert.equal(msgpack.ws.protocol, 'lifeos.v1.msgpack');
  });
});

for (const sub of SUBPROTOCOLS) {
  describe(`§3 connecting [${sub}]`, () => {
    it('§3 hello: a first frame that is not hello closes with 4000', async () => {
      const client = await connect(gw, sub);
      client.send({ op: 'ping', n: 1 });
      await expectClose(client, 4000);
      assert.equal(client.frames.length, 0, 'nothing is answered before hello');
    });

    it('§3 hello: an ack as the first frame closes with 4000', async () => {
      const client = await connect(gw, sub);
      client.send({ op: 'ack', seq: 1 });
      await expectClose(client, 4000);
    });

    it('§3 hello: no hello within HELLO_TIMEOUT_MS closes with 4001', async () => {
      const client = await connect(gw, sub);
      const t0 = Date.now();
      await expectClose(client, 4001, HELLO_TIMEOUT_MS + 3000);
      assert.ok(Date.now() - t0 >= HELLO_TIMEOUT_MS - 50, 'not closed before the hello timeout');
    });

    it('§3 hello: a hello without a token (and no resume) closes with 4001', async () => {
      const s = await newSession(gw);
      assert.equal(await helloRefused(gw, sub, { sessionId: s.sessionId }), 4001);
    });

    it('§6 auth: a JWT signed with another secret closes with 4001', async () => {
      const s = await newSession(gw);
      const token = await foreignToken(
        { sub: 'user-x', tid: 'acme', role: 'agent' },
        { secret: 'another-secret-another-secret-0123456789ab' },
      );
      assert.equal(await helloRefused(gw, sub, { sessionId: s.sessionId, token }), 4001);
    });

    it('§6 auth: an unsigned JWT (alg none) closes with 4001', async () => {
      const s = await newSession(gw);
      const token = unsignedToken({ sub: 'user-x', tid: 'acme', role: 'agent' });
      assert.equal(await helloRefused(gw, sub, { sessionId: s.sessionId, token }), 4001);
    });

    it('§6 auth: a JWT with another algorithm than HS256 (HS512, right secret) closes with 4001', async () => {
      const s = await newSession(gw);
      const token = await foreignToken(
        { sub: 'user-x', tid: 'acme', role: 'agent' },
        { secret: TEST_SECRET, alg: 'HS512' },
      );
      assert.equal(await helloRefused(gw, sub, { sessionId: s.sessionId, token }), 4001);
    });

    it('§6 auth: an expired JWT closes with 4001', async () => {
      const s = await newSession(gw);
      const token = await gw.token('agent-x', 'agent', 'acme', -60);
      assert.equal(await helloRefused(gw, sub, { sessionId: s.sessionId, token }), 4001);
    });

    it('§6 auth: a garbled JWT, or one without tid or with an unknown role, closes with 4001', async () => {
      const s = await newSession(gw);
      assert.equal(await helloRefused(gw, sub, { sessionId: s.sessionId, token: 'not.a.jwt' }), 4001);
      const noTid = await foreignToken({ sub: 'agent-x', role: 'agent' }, { secret: TEST_SECRET });
      assert.equal(await helloRefused(gw, sub, { sessionId: s.sessionId, token: noTid }), 4001);
      const badRole = await foreignToken(
        { sub: 'agent-x', tid: 'acme', role: 'admin' },
        { secret: TEST_SECRET },
      );
      assert.equal(await helloRefused(gw, sub, { sessionId: s.sessionId, token: badRole }), 4001);
    });

    /** An agent of another tenant, and the owner's user id in another tenant: both 4004. */
    const assertOtherTenantsRefused = async (s: { sessionId: string; ownerToken: string }) => {
      const foreignAgent = await gw.token('agent-x', 'agent', 'globex');
      assert.equal(await helloRefused(gw, sub, { sessionId: s.sessionId, token: foreignAgent }), 4004);
      // The same user id in another tenant is another user: still not found, not forbidden.
      const owner = (await api(gw, 'GET', `/v1/call/sessions/${s.sessionId}`, s.ownerToken)).body
        .ownerId as string;
      const sameSubOtherTenant = await gw.token(owner, 'user', 'globex');
      assert.equal(await helloRefused(gw, sub, { sessionId: s.sessionId, token: sameSubOtherTenant }), 4004);
    };

    it('§6 access: a session of another tenant closes with 4004, never 4003', async () => {
      await assertOtherTenantsRefused(await newSession(gw));
    });

    it('§3 hello: an unknown session closes with 4004', async () => {
      const token = await gw.token('agent-x', 'agent', 'acme');
      assert.equal(await helloRefused(gw, sub, { sessionId: 'cs_does_not_exist', token }), 4004);
    });

    it('§6 access: a user who is not the owner closes with 4003', async () => {
      const s = await newSession(gw);
      const other = await gw.token('someone-else', 'user', 'acme');
      assert.equal(await helloRefused(gw, sub, { sessionId: s.sessionId, token: other }), 4003);
    });

    it('§6 access: the same rule for hellos to a session that already has a live client', async () => {
      // The live actor keeps the session's tenant and owner, so these are checked without
      // a read of the record: the answers must be the record's.
      const s = await newSession(gw);
      const { client: live } = await hello(gw, sub, { sessionId: s.sessionId, token: s.ownerToken });
      await assertOtherTenantsRefused(s);
      const other = await gw.token('someone-else', 'user', 'acme');
      assert.equal(await helloRefused(gw, sub, { sessionId: s.sessionId, token: other }), 4003);
      const agent = await hello(gw, sub, {
        sessionId: s.sessionId,
        token: await gw.token('agent-z', 'agent', 'acme'),
      });
      assert.equal(agent.welcome.sessionId, s.sessionId);
      const again = await hello(gw, sub, { sessionId: s.sessionId, token: s.ownerToken });
      assert.equal(again.welcome.sessionId, s.sessionId);
      live.close();
    });

    it('§6 access: the owner and any agent, operator or service of the tenant may read', async () => {
      const s = await newSession(gw);
      const tokens = [
        s.ownerToken,
        await gw.token('agent-y', 'agent', 'acme'),
        await gw.token('operator-y', 'operator', 'acme'),
        await gw.token('service-y', 'service', 'acme'),
      ];
      for (const token of tokens) {
        const { client, welcome } = await hello(gw, sub, { sessionId: s.sessionId, token, after: 0 });
        assert.equal(welcome.sessionId, s.sessionId);
        await waitSeq(client, 1);
        client.close();
      }
    });

    it('§3 welcome: carries every field of §3 with the right types', async () => {
      const s = await newSession(gw);
      const { welcome } = await hello(gw, sub, { sessionId: s.sessionId, token: s.ownerToken });
      assert.equal(welcome.op, 'welcome');
      for (const key of ['connectionId', 'subscriberId', 'resumeToken', 'epoch']) {
        assert.equal(typeof welcome[key], 'string', `${key} is a string`);
        assert.ok((welcome[key] as string).length > 0, `${key} is not empty`);
      }
      assert.equal(welcome.sessionId, s.sessionId);
      for (const key of ['resumeWindowMs', 'headSeq', 'after', 'heartbeatMs', 'maxInFlight']) {
        assert.ok(
          Number.isInteger(welcome[key]),
          `${key} is an integer, got ${JSON.stringify(welcome[key])}`,
        );
      }
      assert.equal(welcome.resumed, false);
      assert.equal(welcome.resumeWindowMs, 60_000);
      assert.equal(welcome.heartbeatMs, gw.config.HEARTBEAT_MS);
      assert.equal(welcome.maxInFlight, gw.config.MAX_IN_FLIGHT);
      assert.equal(welcome.headSeq, 1, 'a fresh session holds call.created');
      const expected = [
        'op',
        'connectionId',
        'sessionId',
        'subscriberId',
        'resumeToken',
        'resumeWindowMs',
        'epoch',
        'headSeq',
        'after',
        'resumed',
        'heartbeatMs',
        'maxInFlight',
      ];
      for (const key of expected) assert.ok(Object.hasOwn(welcome, key), `welcome has ${key}`);
    });

    it('§3 after: the default is "latest": no history, then replayed at the head, then live events', async () => {
      const s = await newSession(gw);
      const pub = await publisher(gw, s);
      await publishMany(pub, 3);
      const { client, welcome } = await hello(gw, sub, { sessionId: s.sessionId, token: s.ownerToken });
      assert.equal(welcome.headSeq, 4);
      assert.equal(welcome.after, 4);
      const replayed = await waitFor(client, (f) => f.op === 'replayed');
      assert.equal(replayed.seq, 4);
      await roundTrip(client);
      assert.deepEqual(seqs(client), [], 'no history is delivered');
      await publishMany(pub, 2);
      await waitSeq(client, 6);
      assert.deepEqual(seqs(client), [5, 6]);
    });

    it('§3 after: an explicit "latest" is the same as the default', async () => {
      const s = await newSession(gw);
      const pub = await publisher(gw, s);
      await publishMany(pub, 2);
      const { client, welcome } = await hello(gw, sub, {
        sessionId: s.sessionId,
        token: s.ownerToken,
        after: 'latest',
      });
      assert.equal(welcome.after, 3);
      const replayed = await waitFor(client, (f) => f.op === 'replayed');
      assert.equal(replayed.seq, 3);
      await publishMany(pub, 1);
      await waitSeq(client, 4);
      assert.deepEqual(seqs(client), [4]);
    });

    it('§3 after: 0 replays everything, then replayed with the last seq, then live events', async () => {
      const s = await newSession(gw);
      const pub = await publisher(gw, s);
      await publishMany(pub, 5);
      const { client, welcome } = await hello(gw, sub, {
        sessionId: s.sessionId,
        token: s.ownerToken,
        after: 0,
      });
      assert.equal(welcome.after, 0);
      assert.equal(welcome.headSeq, 6);
      const replayed = await waitFor(client, (f) => f.op === 'replayed');
      assert.equal(replayed.seq, 6);
      const order = client.frames.filter((f) => f.op === 'ev' || f.op === 'replayed').map((f) => f.op);
      assert.deepEqual(
        order,
        ['ev', 'ev', 'ev', 'ev', 'ev', 'ev', 'replayed'],
        'replayed comes after the catch-up',
      );
      assert.deepEqual(seqs(client), [1, 2, 3, 4, 5, 6]);
      const first = client.frames.find((f) => f.op === 'ev')!;
      assert.equal(first.event.type, 'call.created');
      assert.equal(first.event.sessionId, s.sessionId);
      await publishMany(pub, 2);
      await waitSeq(client, 8);
      assertContiguous(seqs(client), 0);
      assert.equal(client.frames.filter((f) => f.op === 'replayed').length, 1, 'replayed is sent once');
    });

    it('§3 after: n starts delivery at n + 1, every seq is the previous + 1', async () => {
      const s = await newSession(gw);
      const pub = await publisher(gw, s);
      await publishMany(pub, 9);
      const { client, welcome } = await hello(gw, sub, {
        sessionId: s.sessionId,
        token: s.ownerToken,
        after: 4,
      });
      assert.equal(welcome.after, 4);
      const replayed = await waitFor(client, (f) => f.op === 'replayed');
      assert.equal(replayed.seq, 10);
      await publishMany(pub, 3);
      await waitSeq(client, 13);
      const got = seqs(client);
      assert.equal(got[0], 5, 'the first delivered seq is after + 1');
      assertContiguous(got, 4);
      assert.equal(got.at(-1), 13);
    });

    it('§3 hello: a second hello on a live connection is a protocol violation (4000)', async () => {
      const s = await newSession(gw);
      const { client } = await hello(gw, sub, { sessionId: s.sessionId, token: s.ownerToken });
      client.send({ op: 'hello', sessionId: s.sessionId, token: s.ownerToken });
      await expectClose(client, 4000);
    });
  });
}
