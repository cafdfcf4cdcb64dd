/**
 * PROTOCOL.md §3 resume: resume tokens, the resume window, epochs, `bye`, and duplicate
 * reconnects (exactly one survivor, 4009 for the others, no duplicate delivery), plus
 * §4 "acks arriving on a superseded connection are ignored". Time is a ManualClock.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { ResumeTokens } from '../../src/auth/resume-token.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { startTestGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway.ts';
import type { TestClient } from '../helpers/ws-client.ts';
import {
  assertContiguous,
  checkpointOf,
  closeAll,
  connect,
  expectClose,
  hello,
  helloRefused,
  newSession,
  publish,
  publisher,
  publishMany,
  roundTrip,
  seqs,
  sleep,
  SUBPROTOCOLS,
  transcriptPub,
  waitFor,
  waitSeq,
  type Session,
  type Sub,
} from './support.ts';

const WINDOW_MS = 10_000;
const clock = new ManualClock();

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway({ RESUME_WINDOW_MS: String(WINDOW_MS) }, { clock });
});
afterEach(closeAll);
after(() => gw.stop());

/** Closes the client and waits until the gateway has seen the close (resume window starts). */
async function disconnect(client: TestClient): Promise<void> {
  client.close();
  await client.closed;
  await sleep(5);
}

/** A subscriber (after 0) that has received seqs 1..head of a session with `published` more events. */
async function subscribed(
  sub: Sub,
  published = 5,
): Promise<{ s: Session; pub: TestClient; client: TestClient; welcome: Record<string, any> }> {
  const s = await newSession(gw);
  const pub = await publisher(gw, s);
  await publishMany(pub, published);
  const { client, welcome } = await hello(gw, sub, { sessionId: s.sessionId, token: s.ownerToken, after: 0 });
  await waitSeq(client, published + 1);
  return { s, pub, client, welcome };
}

for (const sub of SUBPROTOCOLS) {
  describe(`§3 resume [${sub}]`, () => {
    it('§3 resume: a valid resume token is welcomed with resumed: true, same subscriber, delivery after lastSeq', async () => {
      const { s, pub, client, welcome } = await subscribed(sub, 5);
      client.send({ op: 'ack', seq: 3 });
      await roundTrip(client);
      await disconnect(client);
      await publishMany(pub, 2); // seqs 7, 8 while away

      const r = await hello(gw, sub, {
        sessionId: s.sessionId,
        resume: { token: welcome.resumeToken, lastSeq: 5, epoch: welcome.epoch },
      });
      assert.equal(r.welcome.resumed, true);
      assert.equal(r.welcome.subscriberId, welcome.subscriberId);
      assert.equal(r.welcome.sessionId, s.sessionId);
      assert.equal(r.welcome.after, 5);
      assert.equal(r.welcome.headSeq, 8);
      assert.equal(typeof r.welcome.resumeToken, 'string');
      const replayed = await waitFor(r.client, (f) => f.op === 'replayed');
      assert.equal(replayed.seq, 8);
      assert.deepEqual(seqs(r.client), [6, 7, 8]);
      await publishMany(pub, 1);
      await waitSeq(r.client, 9);
      assertContiguous(seqs(r.client), 5);
    });

    it('§3 resume: without lastSeq, delivery starts after the acknowledged checkpoint', async () => {
      const { s, client, welcome } = await subscribed(sub, 5);
      client.send({ op: 'ack', seq: 4 });
      await roundTrip(client);
      await disconnect(client);
      const r = await hello(gw, sub, { sessionId: s.sessionId, resume: { token: welcome.resumeToken } });
      assert.equal(r.welcome.resumed, true);
      assert.equal(r.welcome.after, 4);
      await waitFor(r.client, (f) => f.op === 'replayed');
      assert.deepEqual(seqs(r.client), [5, 6]);
    });

    it('§3 resume: the token of a subscriber that never acked resumes at its `after`', async () => {
      const s = await newSession(gw);
      const pub = await publisher(gw, s);
      await publishMany(pub, 2);
      const { client, welcome } = await hello(gw, sub, {
        sessionId: s.sessionId,
        token: s.ownerToken,
        after: 1,
      });
      await waitSeq(client, 3);
      await disconnect(client);
      const r = await hello(gw, sub, { sessionId: s.sessionId, resume: { token: welcome.resumeToken } });
      assert.equal(r.welcome.after, 1);
      await waitFor(r.client, (f) => f.op === 'replayed');
      assert.deepEqual(seqs(r.client), [2, 3]);
    });

    it('§3 resume: a valid resume token reconnects even after the JWT that opened the subscriber expired', async () => {
      const s = await newSession(gw);
      const jwt = await gw.token(`short-${sub}`, 'agent', 'acme', 5);
      const first = await hello(gw, sub, { sessionId: s.sessionId, token: jwt, after: 0 });
      await waitSeq(first.client, 1);
      await disconnect(first.client);
      clock.advance(6_000); // the JWT (5 s) expired, the resume window (10 s) did not
      assert.equal(
        await helloRefused(gw, sub, { sessionId: s.sessionId, token: jwt }),
        4001,
        'the JWT is expired',
      );
      const r = await hello(gw, sub, {
        sessionId: s.sessionId,
        resume: { token: first.welcome.resumeToken, lastSeq: 1 },
      });
      assert.equal(r.welcome.resumed, true);
      // The resumed connection keeps the rights of the JWT that opened it (an agent may publish).
      const answer = await publish(r.client, transcriptPub('after expiry'));
      assert.equal(answer.op, 'puback');
      await waitSeq(r.client, answer.seq as number);
      assertContiguous(seqs(r.client), 1);
    });

    it('§3 resume: within resumeWindowMs after the close the token works; after it, 4010 resume_expired', async () => {
      const { s, client, welcome } = await subscribed(sub, 1);
      await disconnect(client);
      clock.advance(WINDOW_MS - 1000);
      const r = await hello(gw, sub, { sessionId: s.sessionId, resume: { token: welcome.resumeToken } });
      assert.equal(r.welcome.resumed, true);
      await disconnect(r.client);
      clock.advance(WINDOW_MS + 1);
      assert.equal(
        await helloRefused(gw, sub, { sessionId: s.sessionId, resume: { token: welcome.resumeToken } }),
        4010,
      );
    });

    it('§3 resume: the token stays valid as long as the subscriber has a live connection, longer than the window', async () => {
      const { s, client, welcome } = await subscribed(sub, 1);
      // stays connected longer than the window: the token stays valid while connected
      clock.advance(WINDOW_MS * 3);
      const r = await hello(gw, sub, { sessionId: s.sessionId, resume: { token: welcome.resumeToken } });
      assert.equal(r.welcome.resumed, true);
      await expectClose(client, 4009);
    });

    it('§3 resume: an unknown, garbled or tampered resume token is refused with 4010', async () => {
      const { s, welcome } = await subscribed(sub, 1);
      const tokens = new ResumeTokens(TEST_SECRET);
      const unknown = tokens.issue({
        sessionId: s.sessionId,
        subscriberId: 'sub_does_not_exist',
        userId: 'user-x',
        tenantId: 'acme',
        role: 'agent',
      });
      const [v = '', body = '', mac = ''] = (welcome.resumeToken as string).split('.');
      const tampered = `${v}.${body}.${mac.slice(0, -2)}${mac.endsWith('AA') ? 'BB' : 'AA'}`;
      for (const token of [unknown, 'garbage', 'v1.abc.def', tampered]) {
        assert.equal(
          await helloRefused(gw, sub, { sessionId: s.sessionId, resume: { token } }),
          4010,
          `resume token ${token.slice(0, 30)}`,
        );
      }
    });

    it('§3 resume: a resume token of another session is refused with 4010', async () => {
      const a = await subscribed(sub, 1);
      const b = await newSession(gw);
      assert.equal(
        await helloRefused(gw, sub, { sessionId: b.sessionId, resume: { token: a.welcome.resumeToken } }),
        4010,
      );
      // the refused attempt did not hurt the real subscriber
      assert.equal(await checkpointOf(gw, sub, a.s.sessionId, a.welcome.resumeToken as string), 0);
    });

    it('§3 resume: a resume with another epoch is refused with 4011 history_gone', async () => {
      const { s, client, welcome } = await subscribed(sub, 1);
      await disconnect(client);
      assert.equal(
        await helloRefused(gw, sub, {
          sessionId: s.sessionId,
          resume: { token: welcome.resumeToken, lastSeq: 2, epoch: `${String(welcome.epoch)}x` },
        }),
        4011,
      );
      const ok = await hello(gw, sub, {
        sessionId: s.sessionId,
        resume: { token: welcome.resumeToken, lastSeq: 2, epoch: welcome.epoch },
      });
      assert.equal(ok.welcome.resumed, true);
      assert.equal(ok.welcome.epoch, welcome.epoch);
    });

    it('§4 bye: ends the subscriber, its resume token is refused with 4010 at once', async () => {
      const { s, client, welcome } = await subscribed(sub, 1);
      client.send({ op: 'bye' });
      await client.closeCode();
      assert.equal(
        await helloRefused(gw, sub, { sessionId: s.sessionId, resume: { token: welcome.resumeToken } }),
        4010,
      );
    });

    it('§3 resume: resuming a subscriber whose connection is live closes the old connection with 4009', async () => {
      const { s, pub, client, welcome } = await subscribed(sub, 2);
      const r = await hello(gw, sub, {
        sessionId: s.sessionId,
        resume: { token: welcome.resumeToken, lastSeq: 3 },
      });
      assert.equal(r.welcome.resumed, true);
      await expectClose(client, 4009);
      await publishMany(pub, 2);
      await waitSeq(r.client, 5);
      assertContiguous(seqs(r.client), 3);
      assert.equal(r.client.closeInfo, undefined);
    });

    for (const n of [2, 3, 5]) {
      for (const oldIsLive of [false, true]) {
        it(`§3 duplicate reconnects: ${n} concurrent resumes (old connection ${oldIsLive ? 'live' : 'closed'}) leave exactly one, the others 4009, no duplicate delivery`, async () => {
          const { s, pub, client, welcome } = await subscribed(sub, 3);
          client.send({ op: 'ack', seq: 2 });
          await roundTrip(client);
          if (!oldIsLive) await disconnect(client);
          const sockets = await Promise.all(Array.from({ length: n }, () => connect(gw, sub)));
          // All resume hellos leave in the same tick, while events are being published.
          const publishing = Promise.all(
            Array.from({ length: 10 }, () => publish(pub, transcriptPub('during'))),
          );
          for (const c of sockets)
            c.send({ op: 'hello', sessionId: s.sessionId, resume: { token: welcome.resumeToken } });
          const answers = await publishing;
          assert.ok(answers.every((a) => a.op === 'puback'));

          // Wait until all but one are closed.
          const deadline = Date.now() + 5000;
          while (sockets.filter((c) => c.closeInfo).length < n - 1 && Date.now() < deadline) await sleep(10);
          const open = sockets.filter((c) => !c.closeInfo);
          assert.equal(
            open.length,
            1,
            `exactly one connection survives (codes ${sockets.map((c) => c.closeInfo?.code ?? 'open').join(',')})`,
          );
          const survivor = open[0]!;
          if (oldIsLive) await expectClose(client, 4009);
          for (const c of sockets) {
            if (c === survivor) continue;
            assert.equal(c.closeInfo!.code, 4009, 'every other connection is closed with 4009 superseded');
          }
          const sw = await waitFor(survivor, (f) => f.op === 'welcome');
          assert.equal(sw.resumed, true);
          assert.equal(sw.subscriberId, welcome.subscriberId);
          assert.equal(survivor.frames[0]!.op, 'welcome', 'nothing precedes the welcome');

          await publishMany(pub, 5);
          await waitSeq(survivor, 19);
          await roundTrip(survivor);
          assert.equal(survivor.closeInfo, undefined, 'the survivor stays open');
          assert.equal(sockets.filter((c) => !c.closeInfo).length, 1);
          assert.equal(sw.after, 2, 'delivery starts at the checkpoint');
          assertContiguous(seqs(survivor), 2, 'survivor');
          assert.equal(seqs(survivor).at(-1), 19);
          assert.equal(survivor.frames.filter((f) => f.op === 'replayed').length, 1);
        });
      }
    }

    it('§4 ack: acks arriving on a superseded connection are ignored (the checkpoint does not move)', async () => {
      const { s, client: a, welcome } = await subscribed(sub, 9); // a holds 1..10
      a.send({ op: 'ack', seq: 6 });
      await roundTrip(a);
      // a stops reading: it does not learn that it was superseded and keeps sending acks.
      (a.ws as unknown as { _socket: { pause(): void } })._socket.pause();
      const b = await hello(gw, sub, {
        sessionId: s.sessionId,
        resume: { token: welcome.resumeToken, lastSeq: 2 },
      });
      assert.equal(b.welcome.after, 2);
      a.send({ op: 'ack', seq: 10 });
      a.send({ op: 'ack', seq: 9 });
      await waitSeq(b.client, 10);
      // b acks below the checkpoint a left (6): the checkpoint must not go down either.
      b.client.send({ op: 'ack', seq: 4 });
      await sleep(20);
      await roundTrip(b.client);
      (a.ws as unknown as { _socket: { resume(): void } })._socket.resume();
      await expectClose(a, 4009);
      assert.equal(await checkpointOf(gw, sub, s.sessionId, welcome.resumeToken as string), 6);
    });
  });
}
