/**
 * The SDK against a real gateway: fresh subscribe and ordered delivery (both codecs),
 * publishing (automatic ids, idempotency, rejection, bounded outbox), batched acks that
 * never run ahead of delivery and keep a small in-flight window flowing, and eos.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import {
  LifeosClientError,
  memoryStorage,
  PublishRejectedError,
  type CheckpointStorage,
} from '../../client/index.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import {
  assertExactlyOnce,
  closeClients,
  endSession,
  history,
  newSession,
  postEvents,
  record,
  recordingWebSocket,
  testClient,
  until,
  waitState,
  type Wire,
} from './support.ts';

const MAX_IN_FLIGHT = 4;

let gw: TestGateway;
let small: TestGateway;
before(async () => {
  gw = await startTestGateway();
  small = await startTestGateway({ MAX_IN_FLIGHT: String(MAX_IN_FLIGHT) });
});
afterEach(closeClients);
after(async () => {
  await gw.stop();
  await small.stop();
});

for (const codec of ['json', 'msgpack'] as const) {
  describe(`client: delivery [${codec}]`, () => {
    it('subscribes fresh from 0 and delivers every event once, in order, typed', async () => {
      const s = await newSession(gw);
      await postEvents(gw, s, 5);
      const sub = testClient(gw, { codec, token: async () => s.ownerToken }).subscribe(s.sessionId, {
        after: 0,
      });
      const r = record(sub);
      await until(() => r.seqs.length === 6, 5000, 'the stored events');
      await postEvents(gw, s, 5);
      await until(() => r.seqs.length === 11, 5000, 'the live events');
      assertExactlyOnce(r.seqs, 1, 11);
      assert.equal(r.types[0], 'call.created');
      assert.deepEqual(r.states, ['live']);
      assert.deepEqual(r.errors, []);
      const stats = sub.stats;
      assert.equal(stats.delivered, 11);
      assert.equal(stats.lastSeq, 11);
      assert.equal(stats.lag, 0);
      assert.equal(stats.freshStarts, 1);
      assert.equal(stats.duplicatesDropped, 0);
    });

    it('after "latest" starts at the head', async () => {
      const s = await newSession(gw);
      await postEvents(gw, s, 3);
      const sub = testClient(gw, { codec, token: s.ownerToken }).subscribe(s.sessionId);
      const r = record(sub);
      await waitState(sub, 'live');
      assert.equal(sub.stats.lastSeq, 4);
      await postEvents(gw, s, 2);
      await until(() => r.seqs.length === 2, 5000, 'live events');
      assertExactlyOnce(r.seqs, 5, 6);
    });

    it('publish: automatic id, puback seq, the event comes back on the stream once', async () => {
      const s = await newSession(gw);
      const sub = testClient(gw, { codec, token: async () => s.agentToken }).subscribe(s.sessionId, {
        after: 0,
      });
      const r = record(sub);
      const results = await Promise.all(
        [1, 2, 3].map((i) =>
          sub.publish('transcript.final', { segmentId: `seg${i}`, revision: 0, text: `t${i}` }),
        ),
      );
      assert.deepEqual(results.map((x) => x.seq).sort(), [2, 3, 4]);
      for (const { id } of results) assert.match(id, /^[A-Za-z0-9]{22}$/);
      await until(() => r.seqs.length === 4, 5000, 'own events');
      assertExactlyOnce(r.seqs, 1, 4);
      const stored = await history(gw, s);
      for (const { id, seq } of results) assert.equal(stored.find((e) => e.event.eventId === id)?.seq, seq);
    });
  });
}

describe('client: publish semantics', () => {
  it('a publish with an id already stored answers its original seq and stores nothing', async () => {
    const s = await newSession(gw);
    const sub = testClient(gw, { token: s.agentToken }).subscribe(s.sessionId, { after: 0 });
    const first = await sub.publish(
      'transcript.final',
      { segmentId: 'a', revision: 0, text: 'x' },
      { id: 'same-id' },
    );
    const again = await sub.publish(
      'transcript.final',
      { segmentId: 'a', revision: 0, text: 'x' },
      { id: 'same-id' },
    );
    assert.deepEqual(again, first);
    assert.equal((await history(gw, s)).filter((e) => e.event.eventId === 'same-id').length, 1);
  });

  it('a non-retryable nack rejects with PublishRejectedError', async () => {
    const s = await newSession(gw);
    // Role user may publish orchestration.action.requested only.
    const sub = testClient(gw, { token: s.ownerToken }).subscribe(s.sessionId);
    await assert.rejects(
      sub.publish('transcript.final', { segmentId: 'a', revision: 0, text: 'x' }),
      (err: unknown) => err instanceof PublishRejectedError && err.reason === 'forbidden_type',
    );
    await assert.rejects(
      sub.publish(
        'transcript.final',
        { segmentId: 'a', revision: -1, text: 'x' },
        {
          id: 'bad id!',
        },
      ),
      (err: unknown) => err instanceof PublishRejectedError,
    );
  });

  it('the outbox is bounded: beyond outbox.max publish() rejects at once with outbox_full', async () => {
    const s = await newSession(gw);
    const sub = testClient(gw, { token: s.agentToken, outbox: { max: 2 } }).subscribe(s.sessionId);
    // Not connected yet: both wait in the outbox; the third does not fit.
    const a = sub.publish('transcript.final', { segmentId: 'a', revision: 0, text: '1' });
    const b = sub.publish('transcript.final', { segmentId: 'b', revision: 0, text: '2' });
    await assert.rejects(
      sub.publish('transcript.final', { segmentId: 'c', revision: 0, text: '3' }),
      (err: unknown) => err instanceof LifeosClientError && err.code === 'outbox_full',
    );
    assert.deepEqual((await Promise.all([a, b])).map((x) => x.seq).sort(), [2, 3]);
    // Answered publishes leave the outbox.
    await sub.publish('transcript.final', { segmentId: 'd', revision: 0, text: '4' });
  });

  it('close() rejects publishes still waiting, and publishing after close rejects', async () => {
    const s = await newSession(gw);
    const sub = testClient(gw, { token: s.agentToken }).subscribe(s.sessionId);
    const pending = sub.publish('transcript.final', { segmentId: 'a', revision: 0, text: '1' });
    await sub.close();
    await assert.rejects(
      pending,
      (err: unknown) => err instanceof LifeosClientError && err.code === 'closed',
    );
    await assert.rejects(
      sub.publish('transcript.final', { segmentId: 'a', revision: 0, text: '1' }),
      (err: unknown) => err instanceof LifeosClientError && err.code === 'closed',
    );
  });
});

/** Walks each socket's frames in order; acks must rise and never pass the highest ev received. */
function assertAcksBehind(wire: Wire): number[] {
  const acks: number[] = [];
  for (const socket of wire.sockets) {
    let maxEv = 0;
    let lastAck = 0;
    for (const { dir, frame } of socket.log) {
      if (dir === 'in' && frame.op === 'welcome') maxEv = lastAck = frame.after;
      if (dir === 'in' && frame.op === 'ev') maxEv = Math.max(maxEv, frame.seq);
      if (dir === 'out' && frame.op === 'ack') {
        const seq = frame.seq as number;
        assert.ok(seq <= maxEv, `ack ${seq} ahead of the last ev received (${maxEv})`);
        assert.ok(seq > lastAck, `ack ${seq} not above the previous one (${lastAck})`);
        lastAck = frame.seq;
        acks.push(frame.seq);
      }
    }
  }
  return acks;
}

describe('client: acks and flow control', () => {
  it('acks in batches of acks.every, each after the checkpoint was saved, then the rest after intervalMs', async () => {
    const s = await newSession(gw);
    await postEvents(gw, s, 49); // seqs 1..50
    const wire: Wire = { sockets: [] };
    let saved = 0;
    const inner = memoryStorage();
    const storage: CheckpointStorage = {
      get: (k) => inner.get(k),
      set: async (k, cp) => {
        await new Promise((resolve) => setImmediate(resolve)); // an async store
        await inner.set(k, cp);
        saved = Math.max(saved, cp.lastSeq);
      },
      delete: (k) => inner.delete(k),
    };
    wire.onSend = (frame) => {
      if (frame.op === 'ack')
        assert.ok(frame.seq <= saved, `ack ${Number(frame.seq)} before its checkpoint (${saved})`);
    };
    const sub = testClient(gw, {
      token: s.ownerToken,
      storage,
      WebSocket: recordingWebSocket(wire),
      acks: { every: 10, intervalMs: 200 },
    }).subscribe(s.sessionId, { after: 0 });
    const r = record(sub);
    await until(
      () => r.seqs.length === 50 && assertAcksBehind(wire).includes(50),
      5000,
      'events and their acks',
    );
    await postEvents(gw, s, 1); // seq 51
    await until(() => assertAcksBehind(wire).at(-1) === 51, 5000, 'the interval ack of the last event');
    const acks = assertAcksBehind(wire);
    assert.ok(acks.length <= 8, `batched: ${acks.join(',')}`);
    assert.ok(
      acks.slice(0, -1).every((a) => a % 10 === 0 || a === 50),
      `batches of 10: ${acks.join(',')}`,
    );
    assertExactlyOnce(r.seqs, 1, 51);
    assert.deepEqual(r.errors, []);
  });

  it(`a gateway with maxInFlight ${MAX_IN_FLIGHT} never stalls a client that batches by 32`, async () => {
    const s = await newSession(small);
    const wire: Wire = { sockets: [] };
    const sub = testClient(small, {
      token: s.ownerToken,
      WebSocket: recordingWebSocket(wire),
      // The interval would take a minute: only acks at half the window keep the stream moving.
      acks: { every: 32, intervalMs: 60_000 },
    }).subscribe(s.sessionId, { after: 0 });
    const r = record(sub);
    sub.on('event', () => new Promise<void>((resolve) => setImmediate(resolve))); // a slow-ish handler
    await waitState(sub, 'live');
    await postEvents(small, s, 40);
    await until(
      () => r.seqs.length === 41,
      10_000,
      () => `all events (have ${r.seqs.length})`,
    );
    assertExactlyOnce(r.seqs, 1, 41);
    const acks = assertAcksBehind(wire);
    assert.ok(acks.length >= 40 / MAX_IN_FLIGHT, `acked often enough: ${acks.length}`);
    // In flight on the wire (delivered - acked) never exceeded the gateway's window.
    for (const socket of wire.sockets) {
      let maxEv = 0;
      let lastAck = 0;
      for (const { dir, frame } of socket.log) {
        if (dir === 'in' && frame.op === 'welcome') {
          assert.equal(frame.maxInFlight, MAX_IN_FLIGHT);
          maxEv = lastAck = frame.after;
        }
        if (dir === 'in' && frame.op === 'ev') maxEv = frame.seq;
        if (dir === 'out' && frame.op === 'ack') lastAck = frame.seq;
        assert.ok(maxEv - lastAck <= MAX_IN_FLIGHT);
      }
    }
    assert.deepEqual(r.errors, []);
  });
});

describe('client: eos', () => {
  it('delivers every event up to call.ended, emits eos, then the subscription is closed', async () => {
    const s = await newSession(gw);
    const storage = memoryStorage();
    const sub = testClient(gw, { token: s.ownerToken, storage }).subscribe(s.sessionId, { after: 0 });
    const r = record(sub);
    const eos: number[] = [];
    sub.on('eos', ({ seq }) => eos.push(seq));
    await waitState(sub, 'live');
    await postEvents(gw, s, 3);
    const last = await endSession(gw, s);
    await waitState(sub, 'closed');
    assertExactlyOnce(r.seqs, 1, last);
    assert.equal(r.types.at(-1), 'call.ended');
    assert.deepEqual(eos, [last]);
    assert.deepEqual(r.states, ['live', 'closed']);
    assert.deepEqual(r.errors, []);
    assert.equal((await storage.get(s.sessionId))?.lastSeq, last, 'the checkpoint is kept');
    await assert.rejects(sub.publish('orchestration.action.requested', {} as never), LifeosClientError);
  });
});

describe('client: replayed and close from a listener', () => {
  it('replayed reaches the application after the catch-up events it covers, slow listener or not', async () => {
    const s = await newSession(gw);
    const last = (await postEvents(gw, s, 5)).at(-1)!;
    const sub = testClient(gw, { token: s.ownerToken }).subscribe(s.sessionId, { after: 0 });
    const order: string[] = [];
    sub.on('event', async (ev) => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      order.push(`ev${ev.seq}`);
    });
    sub.on('replayed', ({ seq }) => order.push(`replayed${seq}`));
    await until(() => order.includes(`replayed${last}`), 5000, 'replayed');
    assert.deepEqual(order, [...Array.from({ length: last }, (_, i) => `ev${i + 1}`), `replayed${last}`]);
  });

  for (const bye of [false, true]) {
    it(`close(${bye ? '{ bye: true }' : ''}) awaited inside an event listener resolves; the checkpoint is ${bye ? 'deleted and stays so' : 'of the event being handled'}`, async () => {
      const s = await newSession(gw);
      await postEvents(gw, s, 3);
      const storage = memoryStorage();
      const sub = testClient(gw, { token: s.ownerToken, storage }).subscribe(s.sessionId, { after: 0 });
      let closed = false;
      sub.on('event', async (ev) => {
        if (ev.seq !== 2) return;
        await sub.close({ bye });
        closed = true;
      });
      await until(() => closed, 5000, 'close() from the listener resolved');
      assert.equal(sub.state, 'closed');
      if (bye) {
        await new Promise((resolve) => setTimeout(resolve, 50)); // the pump is done with seq 2 by then
        assert.equal(await storage.get(s.sessionId), undefined);
      } else {
        await until(
          async () => (await storage.get(s.sessionId))?.lastSeq === 2,
          5000,
          'the event being handled is checkpointed',
        );
      }
    });
  }
});
