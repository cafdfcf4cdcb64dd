/**
 * PROTOCOL.md §3 under a reconnect storm: many resumes to one session at once. The actor
 * takes over the subscribers of the resumes waiting in its mailbox together (one engine
 * round trip for all of them instead of one each, issue 6, M5), in arrival order; each
 * resume must still get exactly the answer it would get on its own, and "the resume
 * processed last wins" must hold for a subscriber resumed twice in the crowd.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import {
  assertContiguous,
  closeAll,
  connect,
  expectClose,
  hello,
  newSession,
  publisher,
  publishMany,
  seqs,
  sleep,
  waitFor,
  waitSeq,
} from './support.ts';

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway({ RESUME_WINDOW_MS: '60000' });
});
afterEach(closeAll);
after(() => gw.stop());

describe('§3 a crowd of resumes to one session', () => {
  it('each is answered as it would be alone: welcomed, 4011 for another epoch, one survivor per subscriber', async () => {
    const session = await newSession(gw);
    const count = 40;
    const joined = await Promise.all(
      Array.from({ length: count }, () =>
        hello(gw, 'json', { sessionId: session.sessionId, token: session.ownerToken, after: 'latest' }),
      ),
    );
    const pub = await publisher(gw, session);
    const published = await publishMany(pub, 3);
    const last = published.at(-1)!;
    for (const { client } of joined) await waitSeq(client, last);
    // half of them lost their connection; the other half's is still live (superseded by the resume)
    for (const { client } of joined.slice(0, count / 2)) client.close();
    await sleep(100);

    const resumeOf = (i: number, extra: Record<string, unknown> = {}) => ({
      op: 'hello',
      sessionId: session.sessionId,
      resume: { token: joined[i]!.welcome.resumeToken, lastSeq: last, ...extra },
    });
    // every socket first, then every hello in one go: they reach the gateway together
    const sockets = await Promise.all(Array.from({ length: count + 2 }, () => connect(gw, 'json')));
    const frames = [
      ...Array.from({ length: count }, (_, i) =>
        i === 5
          ? resumeOf(i, { epoch: 'not-the-epoch' })
          : i === 6
            ? resumeOf(i, { lastSeq: last + 50 })
            : resumeOf(i),
      ),
      resumeOf(0), // subscriber 0 a second time
      resumeOf(30), // and subscriber 30 (whose old connection is live)
    ];
    frames.forEach((frame, i) => sockets[i]!.send(frame));

    assert.equal(await sockets[5]!.closeCode(), 4011, 'another epoch: history_gone');
    assert.equal(await sockets[6]!.closeCode(), 4011, 'lastSeq beyond the head: history_gone');
    for (const i of [0, 30]) {
      // two resumes of one subscriber: exactly one connection survives, the other gets 4009
      const pair = [sockets[i]!, sockets[i === 0 ? count : count + 1]!];
      const deadline = Date.now() + 5000;
      while (pair.filter((c) => c.closeInfo).length < 1 && Date.now() < deadline) await sleep(10);
      const open = pair.filter((c) => !c.closeInfo);
      assert.equal(open.length, 1, `subscriber ${i}: exactly one connection survives`);
      assert.equal(pair.find((c) => c.closeInfo)!.closeInfo!.code, 4009);
    }
    const survivors = sockets.filter((c, i) => i !== 5 && i !== 6 && !c.closeInfo);
    assert.equal(survivors.length, count - 2);
    for (const c of survivors) {
      const welcome = await waitFor(c, (f) => f.op === 'welcome');
      assert.equal(welcome.resumed, true);
      assert.equal(welcome.after, last);
    }
    // the live connections of the second half were superseded
    for (const { client } of joined.slice(count / 2)) await expectClose(client, 4009);

    const more = await publishMany(pub, 3);
    for (const c of survivors) {
      await waitSeq(c, more.at(-1)!);
      assertContiguous(seqs(c), last, 'a resumed connection');
    }
    // subscriber 6 was refused without being touched: it still resumes from where it was
    const again = await hello(gw, 'json', resumeOf(6));
    assert.equal(again.welcome.resumed, true);
  });

  it("stores a resume's lastSeq with its takeover: the next resume without lastSeq starts there", async () => {
    const session = await newSession(gw);
    const { client, welcome } = await hello(gw, 'json', {
      sessionId: session.sessionId,
      token: session.ownerToken,
      after: 0,
    });
    const pub = await publisher(gw, session);
    const published = await publishMany(pub, 3);
    await waitSeq(client, published.at(-1)!); // delivered, never acked: the checkpoint stays 0
    const held = published[1]!;
    const [first, second] = await Promise.all([connect(gw, 'json'), connect(gw, 'json')]);
    const token = welcome.resumeToken;
    first.send({ op: 'hello', sessionId: session.sessionId, resume: { token, lastSeq: held } });
    // Welcomed, and superseded before it acks anything: only the takeover kept its position.
    await waitFor(first, (f) => f.op === 'welcome');
    second.send({ op: 'hello', sessionId: session.sessionId, resume: { token } });
    assert.equal((await waitFor(second, (f) => f.op === 'welcome')).after, held);
    assert.equal(await first.closeCode(), 4009);
    await expectClose(client, 4009);
    await waitSeq(second, published.at(-1)!);
    assert.deepEqual(seqs(second), published.slice(2));
  });
});
