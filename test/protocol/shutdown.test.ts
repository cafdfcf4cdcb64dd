/**
 * PROTOCOL.md §5: 1001 going_away is how a draining gateway closes its sockets (the
 * client resumes, on any node).
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { MemoryEngine } from '../../src/engine/memory/memory-engine.ts';
import { systemClock } from '../../src/util/clock.ts';
import { startTestGateway } from '../helpers/gateway.ts';
import {
  closeAll,
  connect,
  expectClose,
  hello,
  newSession,
  publisher,
  publishMany,
  roundTrip,
  seqs,
  SUBPROTOCOLS,
  waitFor,
  waitSeq,
} from './support.ts';

afterEach(closeAll);

describe('§5 graceful shutdown', () => {
  it('§5 going_away: stopping the gateway closes every live socket with 1001, and sockets still before hello too', async () => {
    const gw = await startTestGateway();
    try {
      const s = await newSession(gw);
      const pub = await publisher(gw, s);
      const live = [];
      for (const sub of SUBPROTOCOLS) {
        const { client } = await hello(gw, sub, { sessionId: s.sessionId, token: s.ownerToken, after: 0 });
        live.push(client);
      }
      await publishMany(pub, 2);
      for (const c of live) await waitSeq(c, 3);
      const idle = await connect(gw, 'json'); // connected, no hello yet
      await gw.stop();
      for (const c of [...live, pub, idle]) await expectClose(c, 1001);
    } finally {
      await gw.stop();
    }
  });

  it('§5 going_away: the drain keeps acknowledged checkpoints and releases subscribers (their resume window starts)', async () => {
    // An engine of our own that outlives the gateway, so we can read it after the drain:
    // every socket gets 1001 and stop() resolves after pending checkpoint writes.
    const gw = await startTestGateway(
      {},
      { engine: new MemoryEngine(systemClock, { historyMaxEvents: 100_000, historyTtlAfterEndS: 3600 }) },
    );
    try {
      const s = await newSession(gw);
      const pub = await publisher(gw, s);
      await publishMany(pub, 3);
      const { client, welcome } = await hello(gw, 'msgpack', {
        sessionId: s.sessionId,
        token: s.ownerToken,
        after: 0,
      });
      await waitSeq(client, 4);
      client.send({ op: 'ack', seq: 4 });
      await new Promise((r) => setTimeout(r, 20));
      await gw.stop();
      await expectClose(client, 1001);
      const record = await gw.gateway.engine.getSubscriber(s.sessionId, welcome.subscriberId);
      assert.equal(record?.checkpoint, 4);
      assert.equal(record?.connected, false, 'released: its resume window runs');
    } finally {
      await gw.stop();
    }
  });

  it('§4/§5 restart: after 1001 the subscriber resumes on a new gateway over the same engine, from its checkpoint', async () => {
    const engine = new MemoryEngine(systemClock, { historyMaxEvents: 100_000, historyTtlAfterEndS: 3600 });
    const gw1 = await startTestGateway({}, { engine });
    let gw2: Awaited<ReturnType<typeof startTestGateway>> | undefined;
    try {
      const s = await newSession(gw1);
      const pub = await publisher(gw1, s);
      await publishMany(pub, 5);
      const { client, welcome } = await hello(gw1, 'json', {
        sessionId: s.sessionId,
        token: s.ownerToken,
        after: 0,
      });
      await waitSeq(client, 6);
      client.send({ op: 'ack', seq: 4 });
      await roundTrip(client);
      await gw1.stop();
      await expectClose(client, 1001);

      gw2 = await startTestGateway({}, { engine });
      const r = await hello(gw2, 'msgpack', {
        sessionId: s.sessionId,
        resume: { token: welcome.resumeToken, epoch: welcome.epoch },
      });
      assert.equal(r.welcome.resumed, true);
      assert.equal(r.welcome.after, 4, 'the checkpoint survived the restart');
      await waitFor(r.client, (f) => f.op === 'replayed');
      assert.deepEqual(seqs(r.client), [5, 6]);
    } finally {
      await gw1.stop();
      await gw2?.stop();
    }
  });
});
