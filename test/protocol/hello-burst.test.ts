/**
 * PROTOCOL.md §3 under a crowd: many fresh `hello`s to one session at once (a reconnect
 * storm, a large audience joining). The redis engine creates the subscribers of one tick
 * with one script and reads the session record once per tick (issue 6, handshakes/s);
 * every one of them must still be its own subscriber, see every event exactly once and in
 * order, and resume. Also the frames a client sends right behind its hello, which wait
 * for the welcome (at most 64 of them).
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { MemoryEngine } from '../../src/engine/memory/memory-engine.ts';
import { systemClock } from '../../src/util/clock.ts';
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

const HELLO_TIMEOUT_MS = 300;

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway({ HELLO_TIMEOUT_MS: String(HELLO_TIMEOUT_MS), RESUME_WINDOW_MS: '60000' });
});
afterEach(closeAll);
after(() => gw.stop());

describe('§3 a crowd of fresh hellos to one session', () => {
  it('all are welcomed as distinct subscribers, get every later event once and in order, and resume', async () => {
    const session = await newSession(gw);
    const count = 120;
    const joined = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        hello(gw, i % 2 === 0 ? 'json' : 'msgpack', {
          sessionId: session.sessionId,
          token: session.ownerToken,
          after: 'latest',
        }),
      ),
    );
    const subscribers = new Set(joined.map((j) => j.welcome.subscriberId as string));
    assert.equal(subscribers.size, count, 'one subscriber per connection');
    for (const { welcome } of joined) {
      assert.equal(welcome.resumed, false);
      assert.equal(welcome.after, welcome.headSeq);
    }
    const head = Math.max(...joined.map((j) => j.welcome.headSeq as number));

    const pub = await publisher(gw, session);
    const published = await publishMany(pub, 5);
    const last = published.at(-1)!;
    for (const { client, welcome } of joined) {
      await waitSeq(client, last);
      assertContiguous(seqs(client), welcome.after as number);
      assert.ok((welcome.after as number) <= head);
    }

    // every subscriber exists in the engine: each one resumes, superseding its connection
    const some = joined.slice(0, 10);
    const resumed = await Promise.all(
      some.map(({ welcome }) =>
        hello(gw, 'json', {
          sessionId: session.sessionId,
          resume: { token: welcome.resumeToken, lastSeq: last },
        }),
      ),
    );
    for (const [i, { welcome }] of resumed.entries()) {
      assert.equal(welcome.resumed, true);
      assert.equal(welcome.subscriberId, some[i]!.welcome.subscriberId);
      await expectClose(some[i]!.client, 4009);
    }
  });

  it('a crowd that includes refused hellos welcomes the rest', async () => {
    const session = await newSession(gw);
    const stranger = await gw.token('someone-else', 'user', 'acme');
    const clients = await Promise.all(Array.from({ length: 40 }, () => connect(gw, 'json')));
    clients.forEach((client, i) =>
      client.send({
        op: 'hello',
        sessionId: session.sessionId,
        token: i % 4 === 3 ? stranger : session.ownerToken,
        after: 'latest',
      }),
    );
    for (const [i, client] of clients.entries()) {
      if (i % 4 === 3) assert.equal(await client.closeCode(), 4003);
      else await waitFor(client, (f) => f.op === 'welcome');
    }
  });
});

/** Reads session records slowly, so that frames sent right behind a hello reach the gateway before its welcome. */
class SlowSessionReads extends MemoryEngine {
  override async getSession(sessionId: string) {
    await sleep(150);
    return super.getSession(sessionId);
  }
}

describe('§3 frames right behind the hello', () => {
  let slow: TestGateway;
  before(async () => {
    slow = await startTestGateway(
      {},
      { engine: new SlowSessionReads(systemClock, { historyMaxEvents: 1000, historyTtlAfterEndS: 3600 }) },
    );
  });
  after(() => slow.stop());

  it('wait for the welcome and are answered after it, in order', async () => {
    const session = await newSession(slow);
    const client = await connect(slow, 'json');
    client.send({ op: 'hello', sessionId: session.sessionId, token: session.ownerToken, after: 'latest' });
    for (let n = 1; n <= 5; n++) client.send({ op: 'ping', n });
    await waitFor(client, (f) => f.op === 'pong' && f.n === 5);
    const ops = client.frames.map((f) => (f.op === 'pong' ? `pong ${String(f.n)}` : String(f.op)));
    assert.deepEqual(
      ops.filter((op) => op === 'welcome' || op.startsWith('pong')),
      ['welcome', 'pong 1', 'pong 2', 'pong 3', 'pong 4', 'pong 5'],
    );
  });

  it('more than 64 of them close the connection with 4000', async () => {
    const session = await newSession(slow);
    const client = await connect(slow, 'json');
    client.send({ op: 'hello', sessionId: session.sessionId, token: session.ownerToken, after: 'latest' });
    for (let n = 1; n <= 65; n++) client.send({ op: 'ping', n });
    await expectClose(client, 4000);
  });

  it('a welcomed connection outlives HELLO_TIMEOUT_MS', async () => {
    const session = await newSession(gw);
    const { client } = await hello(gw, 'json', {
      sessionId: session.sessionId,
      token: session.ownerToken,
      after: 'latest',
    });
    await sleep(HELLO_TIMEOUT_MS * 2);
    client.send({ op: 'ping', n: 7 });
    await waitFor(client, (f) => f.op === 'pong' && f.n === 7);
    assert.equal(client.closeInfo, undefined);
  });
});
