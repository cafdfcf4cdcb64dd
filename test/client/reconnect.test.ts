/**
 * The SDK across disruptions, against a real gateway: sockets cut under it (resume), a
 * dead connection nobody closes (heartbeat), a dead resume token (4010 → fresh from the
 * last processed seq), two clients resuming one subscriber (4009), a rejected JWT (4001),
 * browser offline/online/visibility, a publish whose puback was lost, the storage adapter
 * handing a subscriber from one client to the next, and the backoff it waits between tries.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { FaultProxy } from '../../chaos/toolkit/fault-proxy.ts';
import {
  ConnectionRefusedError,
  HistoryGoneError,
  memoryStorage,
  type BrowserEventTargets,
  type CheckpointStorage,
} from '../../client/index.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { TestClient } from '../helpers/ws-client.ts';
import {
  assertExactlyOnce,
  closeClients,
  history,
  newSession,
  postEvents,
  record,
  testClient,
  until,
  waitState,
} from './support.ts';

let gw: TestGateway;
let fastBeat: TestGateway;
const proxies: FaultProxy[] = [];

async function proxyTo(target: TestGateway): Promise<{ proxy: FaultProxy; wsUrl: string }> {
  const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port: target.gateway.port } });
  proxies.push(proxy);
  return { proxy, wsUrl: `ws://127.0.0.1:${proxy.port}/v1/realtime` };
}

before(async () => {
  gw = await startTestGateway();
  fastBeat = await startTestGateway({ HEARTBEAT_MS: '1000' });
});
afterEach(async () => {
  await closeClients();
  await Promise.all(proxies.splice(0).map((p) => p.close()));
});
after(async () => {
  await gw.stop();
  await fastBeat.stop();
});

async function checkpointWithToken(storage: CheckpointStorage, key: string): Promise<void> {
  await until(async () => (await storage.get(key))?.resumeToken !== undefined, 5000, 'a stored resume token');
}

describe('client: resume', () => {
  it('resumes after the socket is cut under it, with no duplicates or gaps', async () => {
    const s = await newSession(gw);
    const { proxy, wsUrl } = await proxyTo(gw);
    const sub = testClient({ wsUrl }, { token: s.ownerToken }).subscribe(s.sessionId, { after: 0 });
    const r = record(sub);
    await waitState(sub, 'live');
    for (let round = 0; round < 3; round++) {
      const posting = postEvents(gw, s, 10);
      await until(() => r.seqs.length > round * 10 + 2, 5000, 'some events of this round');
      proxy.resetAll(); // RST both ways: the SDK sees 1006
      await posting;
      await until(
        () => r.seqs.length === (round + 1) * 10 + 1,
        10_000,
        () => `round ${round}: ${r.seqs.length}`,
      );
    }
    assertExactlyOnce(r.seqs, 1, 31);
    const stats = sub.stats;
    assert.ok(stats.reconnects >= 3, `reconnects ${stats.reconnects}`);
    assert.ok(stats.resumes >= 3, `resumes ${stats.resumes}`);
    assert.equal(stats.freshStarts, 1);
    assert.ok(r.states.includes('resuming'));
    assert.equal(sub.state, 'live');
    assert.deepEqual(r.errors, []);
  });

  it('detects a dead connection by missed heartbeats and resumes once the network heals', async () => {
    const s = await newSession(fastBeat);
    const { proxy, wsUrl } = await proxyTo(fastBeat);
    const sub = testClient(
      { wsUrl },
      { token: s.ownerToken, heartbeat: { missed: 2 }, connectTimeoutMs: 1000 },
    ).subscribe(s.sessionId, { after: 0 });
    const r = record(sub);
    await until(() => r.seqs.length === 1, 5000, 'the first event');
    proxy.blackhole('stall'); // nothing crosses, no FIN, no RST: only the heartbeat can tell
    await postEvents(fastBeat, s, 5);
    await until(() => sub.state !== 'live', 6000, 'the SDK to give the silent connection up');
    assert.deepEqual(r.seqs, [1]);
    proxy.heal();
    await until(
      () => r.seqs.length === 6,
      10_000,
      () => `events after healing (have ${r.seqs.length})`,
    );
    assertExactlyOnce(r.seqs, 1, 6);
    assert.ok(sub.stats.resumes >= 1);
    assert.deepEqual(r.errors, []);
  });

  it('4010 (dead resume token) starts fresh after the last processed seq: no duplicates, no gaps', async () => {
    const s = await newSession(gw);
    const storage = memoryStorage();
    const first = testClient(gw, { token: s.ownerToken, storage }).subscribe(s.sessionId, { after: 0 });
    const r1 = record(first);
    await postEvents(gw, s, 3);
    await until(() => r1.seqs.length === 4, 5000, 'first events');
    await first.close();
    const cp = (await storage.get(s.sessionId))!;
    assert.equal(cp.lastSeq, 4);
    await storage.set(s.sessionId, { ...cp, resumeToken: 'expired-or-unknown' });

    await postEvents(gw, s, 3);
    const second = testClient(gw, { token: s.ownerToken, storage }).subscribe(s.sessionId, { after: 0 });
    const r2 = record(second);
    await until(() => r2.seqs.length === 3, 5000, 'the events after the checkpoint');
    await postEvents(gw, s, 2);
    await until(() => r2.seqs.length === 5, 5000, 'live events');
    assertExactlyOnce(r2.seqs, 5, 9);
    assert.equal(second.stats.freshStarts, 1);
    assert.equal(second.stats.resumes, 0);
    assert.deepEqual(r2.states, ['resuming', 'connecting', 'live']);
    assert.deepEqual(r2.errors, []);
    const fresh = (await storage.get(s.sessionId))!;
    assert.notEqual(fresh.resumeToken, 'expired-or-unknown', 'the new subscriber is stored');
  });

  it('4011 (epoch changed) reports HistoryGoneError, drops the stored epoch and starts fresh after the last seq', async () => {
    const s = await newSession(gw);
    const storage = memoryStorage();
    const first = testClient(gw, { token: s.ownerToken, storage }).subscribe(s.sessionId, { after: 0 });
    const r1 = record(first);
    await postEvents(gw, s, 2);
    await until(() => r1.seqs.length === 3, 5000, 'first events');
    await first.close();
    const cp = (await storage.get(s.sessionId))!;
    await storage.set(s.sessionId, { ...cp, epoch: 'an-epoch-that-was-lost' });

    await postEvents(gw, s, 2);
    const second = testClient(gw, { token: s.ownerToken, storage }).subscribe(s.sessionId);
    const r2 = record(second);
    await until(() => r2.seqs.length === 2, 5000, 'the events after the last processed seq');
    assertExactlyOnce(r2.seqs, 4, 5);
    assert.equal(r2.errors.length, 1);
    const err = r2.errors[0];
    assert.ok(err instanceof HistoryGoneError, String(err));
    assert.equal(err.lastSeq, 3);
    assert.equal(err.epoch, 'an-epoch-that-was-lost');
    assert.equal(second.stats.freshStarts, 1);
    assert.notEqual((await storage.get(s.sessionId))!.epoch, 'an-epoch-that-was-lost');
  });

  it('4009: when another client resumes the same subscriber, this one stops (closed, error)', async () => {
    const s = await newSession(gw);
    const storage = memoryStorage();
    const a = testClient(gw, { token: s.ownerToken, storage }).subscribe(s.sessionId, { after: 0 });
    const ra = record(a);
    await until(async () => (await storage.get(s.sessionId))?.lastSeq === 1, 5000, 'the first checkpoint');
    await checkpointWithToken(storage, s.sessionId);
    const b = testClient(gw, { token: s.ownerToken, storage }).subscribe(s.sessionId, { after: 0 });
    const rb = record(b);
    await waitState(b, 'live');
    await waitState(a, 'closed');
    assert.equal(b.stats.resumes, 1);
    assert.equal(ra.errors.length, 1);
    assert.ok(ra.errors[0] instanceof ConnectionRefusedError && ra.errors[0].closeCode === 4009);
    await postEvents(gw, s, 2);
    await until(() => rb.seqs.length === 2, 5000, 'events on the survivor');
    assertExactlyOnce(rb.seqs, 2, 3);
    assertExactlyOnce(ra.seqs, 1, 1);
  });

  it('4001: a refused JWT is replaced by the token provider, then the subscription starts fresh', async () => {
    const s = await newSession(gw);
    let calls = 0;
    const sub = testClient(gw, {
      token: async () => (++calls === 1 ? 'not.a-valid.jwt' : s.ownerToken),
    }).subscribe(s.sessionId, { after: 0 });
    const r = record(sub);
    await until(() => r.seqs.length === 1, 5000, 'delivery with the second token');
    assert.equal(calls, 2);
    assert.equal(sub.state, 'live');
  });

  it('4001 three times in a row stops with an error', async () => {
    const s = await newSession(gw);
    const sub = testClient(gw, { token: async () => 'never.valid.token' }).subscribe(s.sessionId);
    const r = record(sub);
    await waitState(sub, 'closed');
    assert.ok(r.errors.some((e) => e instanceof ConnectionRefusedError && e.closeCode === 4001));
  });

  it('4004: an unknown session stops at once', async () => {
    const s = await newSession(gw);
    const sub = testClient(gw, { token: s.ownerToken }).subscribe('cs_does_not_exist');
    const r = record(sub);
    await waitState(sub, 'closed');
    assert.ok(r.errors[0] instanceof ConnectionRefusedError && r.errors[0].closeCode === 4004);
    assert.equal(sub.stats.reconnects, 0);
  });
});

describe('client: publish across reconnects', () => {
  it('retries with the same id until puback: a publish whose puback was lost is stored once', async () => {
    const s = await newSession(gw);
    const { proxy, wsUrl } = await proxyTo(gw);
    const sub = testClient({ wsUrl }, { token: s.agentToken }).subscribe(s.sessionId, { after: 0 });
    const r = record(sub);
    await waitState(sub, 'live');
    proxy.setFaults({ latencyMs: 60_000 }, 'down'); // the gateway gets the pub; its puback is held
    const result = sub.publish(
      'transcript.final',
      { segmentId: 'a', revision: 0, text: 'once' },
      { id: 'lost-ack' },
    );
    await until(
      async () => (await history(gw, s)).some((e) => e.event.eventId === 'lost-ack'),
      5000,
      'the pub to be stored',
    );
    proxy.clearFaults();
    proxy.resetAll();
    const { id, seq } = await result;
    assert.equal(id, 'lost-ack');
    const stored = (await history(gw, s)).filter((e) => e.event.eventId === 'lost-ack');
    assert.equal(stored.length, 1);
    assert.equal(stored[0]!.seq, seq);
    assert.ok(sub.stats.reconnects >= 1);
    await until(() => r.seqs.includes(seq), 5000, 'the event on the stream');
    assertExactlyOnce(r.seqs, 1, seq);
  });

  it('publishes made while disconnected wait in the outbox and go out on the next connection', async () => {
    const s = await newSession(gw);
    const { proxy, wsUrl } = await proxyTo(gw);
    const sub = testClient({ wsUrl }, { token: s.agentToken }).subscribe(s.sessionId, { after: 0 });
    await waitState(sub, 'live');
    proxy.refuse(true);
    proxy.resetAll();
    await until(() => sub.state !== 'live', 5000, 'the loss');
    const pending = [1, 2, 3].map((i) =>
      sub.publish('transcript.final', { segmentId: `s${i}`, revision: 0, text: `${i}` }),
    );
    proxy.refuse(false);
    const results = await Promise.all(pending);
    assert.deepEqual(results.map((x) => x.seq).sort(), [2, 3, 4]);
  });
});

describe('client: storage', () => {
  it('a second client with the same storage resumes where the first left off; bye ends the subscriber', async () => {
    const s = await newSession(gw);
    const storage = memoryStorage();
    const first = testClient(gw, { token: s.ownerToken, storage }).subscribe(s.sessionId, { after: 0 });
    const r1 = record(first);
    await postEvents(gw, s, 3);
    await until(() => r1.seqs.length === 4, 5000, 'first events');
    await first.close();
    await postEvents(gw, s, 2); // while nobody is connected

    // A new client (a page reload, an app restart) with the same storage.
    const second = testClient(gw, { token: async () => s.ownerToken, storage }).subscribe(s.sessionId, {
      after: 0,
    });
    const r2 = record(second);
    await until(() => r2.seqs.length === 2, 5000, 'the events since the first client left');
    assertExactlyOnce(r2.seqs, 5, 6);
    assert.equal(second.stats.resumes, 1);
    assert.equal(second.stats.freshStarts, 0);
    assert.deepEqual(r2.states, ['resuming', 'live']);

    const token = (await storage.get(s.sessionId))!.resumeToken!;
    await second.close({ bye: true });
    assert.equal(await storage.get(s.sessionId), undefined, 'bye deletes the checkpoint');
    const raw = await TestClient.connect(gw.wsUrl);
    raw.send({ op: 'hello', sessionId: s.sessionId, resume: { token } });
    assert.equal(await raw.closeCode(), 4010, 'the subscriber ended at the gateway');
  });

  it('an async storage adapter (AsyncStorage-like) works the same', async () => {
    const s = await newSession(gw);
    const inner = memoryStorage();
    const tick = () => new Promise((resolve) => setTimeout(resolve, 1));
    const storage: CheckpointStorage = {
      get: async (k) => (await tick(), inner.get(k)),
      set: async (k, cp) => (await tick(), inner.set(k, cp)),
      delete: async (k) => (await tick(), inner.delete(k)),
    };
    const first = testClient(gw, { token: s.ownerToken, storage }).subscribe(s.sessionId, { after: 0 });
    const r1 = record(first);
    await postEvents(gw, s, 2);
    await until(() => r1.seqs.length === 3, 5000, 'first events');
    await first.close();
    assert.equal((await storage.get(s.sessionId))?.lastSeq, 3);
    await postEvents(gw, s, 1);
    const second = testClient(gw, { token: s.ownerToken, storage }).subscribe(s.sessionId);
    const r2 = record(second);
    await until(() => r2.seqs.length === 1, 5000, 'the next event');
    assertExactlyOnce(r2.seqs, 4, 4);
  });
});

describe('client: browser events', () => {
  function fakeBrowser() {
    const navigator = { onLine: true };
    const window = new EventTarget();
    const document = Object.assign(new EventTarget(), { visibilityState: 'visible' });
    const targets: BrowserEventTargets = { window, document, navigator };
    return { targets, navigator, window, document };
  }

  it("'offline' drops the socket and waits; 'online' reconnects at once and resumes", async () => {
    const s = await newSession(gw);
    const { targets, navigator, window } = fakeBrowser();
    // A backoff so long that only 'online' can bring the connection back in time.
    const sub = testClient(gw, {
      token: s.ownerToken,
      browserEvents: targets,
      backoff: { baseMs: 60_000, capMs: 60_000 },
    }).subscribe(s.sessionId, { after: 0 });
    const r = record(sub);
    await until(() => r.seqs.length === 1, 5000, 'the first event');
    navigator.onLine = false;
    window.dispatchEvent(new Event('offline'));
    assert.equal(sub.state, 'offline');
    await postEvents(gw, s, 3);
    assert.equal(sub.state, 'offline', 'no reconnect while offline');
    assertExactlyOnce(r.seqs, 1, 1);
    navigator.onLine = true;
    window.dispatchEvent(new Event('online'));
    await until(() => r.seqs.length === 4, 5000, 'the events missed while offline');
    assertExactlyOnce(r.seqs, 1, 4);
    assert.equal(sub.stats.resumes, 1);
    assert.deepEqual(r.states, ['live', 'offline', 'resuming', 'live']);
  });

  it('visibilitychange → visible pings a live connection and replaces it when nothing answers', async () => {
    const s = await newSession(gw);
    const { proxy, wsUrl } = await proxyTo(gw);
    const { targets, document } = fakeBrowser();
    const sub = testClient(
      { wsUrl },
      { token: s.ownerToken, browserEvents: targets, probeTimeoutMs: 300, connectTimeoutMs: 1000 },
    ).subscribe(s.sessionId, { after: 0 });
    const r = record(sub);
    await waitState(sub, 'live');
    proxy.blackhole('stall'); // the default heartbeat (25 s) would take far longer
    await postEvents(gw, s, 2);
    document.visibilityState = 'visible';
    document.dispatchEvent(new Event('visibilitychange'));
    await until(() => sub.state !== 'live', 3000, 'the probe to give the connection up');
    proxy.heal();
    await until(() => r.seqs.length === 3, 10_000, 'events after the probe');
    assertExactlyOnce(r.seqs, 1, 3);
  });
});

describe('client: backoff in practice', () => {
  it('waits random(0, min(cap, base × 2^attempt)) between attempts, and starts over after a welcome', async () => {
    const s = await newSession(gw);
    const { proxy, wsUrl } = await proxyTo(gw);
    proxy.refuse(true); // every connection is reset at once
    const retries: Array<{ delay: number; attempt: number }> = [];
    const base = 10;
    const cap = 80;
    const sub = testClient(
      { wsUrl },
      {
        token: s.ownerToken,
        backoff: { baseMs: base, capMs: cap },
        random: () => 0.99,
        log: (msg, f) => msg === 'retry' && retries.push(f as { delay: number; attempt: number }),
      },
    ).subscribe(s.sessionId, { after: 0 });
    await until(() => retries.length >= 6, 5000, 'six retries');
    proxy.refuse(false);
    await waitState(sub, 'live');
    for (const [i, { delay, attempt }] of retries.slice(0, 6).entries()) {
      assert.equal(attempt, i + 1);
      assert.equal(delay, Math.floor(0.99 * Math.min(cap, base * 2 ** i)));
    }
    const before = retries.length;
    proxy.resetAll();
    await until(() => retries.length > before, 5000, 'a retry after the welcome');
    assert.equal(retries[before]!.attempt, 1, 'attempts restart after a welcome');
  });
});

describe('client: close({ bye: true }) between connections', () => {
  /** A live subscription through a proxy, then the proxy refuses and cuts it: resuming. */
  async function resumingSubscription() {
    const s = await newSession(gw);
    const { proxy, wsUrl } = await proxyTo(gw);
    const storage = memoryStorage();
    const sub = testClient({ wsUrl }, { token: s.ownerToken, storage, connectTimeoutMs: 1000 }).subscribe(
      s.sessionId,
      { after: 0 },
    );
    await waitState(sub, 'live');
    await checkpointWithToken(storage, s.sessionId);
    const { resumeToken, lastSeq, epoch } = (await storage.get(s.sessionId))!;
    proxy.refuse(true);
    proxy.resetAll();
    await until(() => sub.state === 'resuming', 5000, 'resuming');
    const errors: string[] = [];
    sub.on('error', (err) => errors.push(err.code));
    const tokenWorks = async (): Promise<boolean> => {
      const c = await TestClient.connect(gw.wsUrl);
      c.ws.send(
        JSON.stringify({
          op: 'hello',
          sessionId: s.sessionId,
          resume: { token: resumeToken, lastSeq, epoch },
        }),
      );
      const first = await Promise.race([
        c.next((f) => f.op === 'welcome', 3000).catch(() => undefined),
        c.closed,
      ]);
      c.ws.close();
      return (first as { op?: string } | undefined)?.op === 'welcome';
    };
    return { s, proxy, storage, sub, errors, tokenWorks };
  }

  it('sends bye over a connection of its own: the resume token stops working', async () => {
    const { s, proxy, storage, sub, errors, tokenWorks } = await resumingSubscription();
    proxy.refuse(false); // the network is back as the application logs out
    await sub.close({ bye: true });
    assert.equal(sub.state, 'closed');
    assert.equal(await storage.get(s.sessionId), undefined);
    assert.deepEqual(errors, []);
    assert.equal(await tokenWorks(), false, 'the subscriber was ended');
  });

  it('tells the application when bye could not reach the gateway', async () => {
    const { s, sub, errors, storage } = await resumingSubscription();
    await sub.close({ bye: true }); // the proxy still refuses
    assert.equal(sub.state, 'closed');
    assert.equal(await storage.get(s.sessionId), undefined);
    assert.deepEqual(errors, ['bye_failed']);
  });
});
