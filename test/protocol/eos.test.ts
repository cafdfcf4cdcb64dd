/**
 * PROTOCOL.md §4 `eos`: once a session ended, every subscriber gets every event, then
 * `{ op: "eos", seq: <last> }`, then a normal close (1000); the stream is terminal, so
 * publishing after the end is refused with `session_ended`.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import type { TestClient } from '../helpers/ws-client.ts';
import {
  api,
  assertContiguous,
  autoAck,
  closeAll,
  expectClose,
  hello,
  history,
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
} from './support.ts';

const MAX_IN_FLIGHT = 4;
const IDLE_MS = 1000;

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway({ MAX_IN_FLIGHT: String(MAX_IN_FLIGHT), ACTOR_IDLE_MS: String(IDLE_MS) });
});
afterEach(closeAll);
after(() => gw.stop());

/**
 * Ends the call through its lifecycle (connecting → active → ended: three events) and
 * returns the seq of `call.ended`, the stream's last event.
 */
async function end(s: Session): Promise<number> {
  for (const body of [
    { to: 'connecting', provider: 'livekit' },
    { to: 'active', provider: 'livekit', providerRoomId: `room-${s.sessionId}` },
    { to: 'ended', reason: 'done' },
  ]) {
    const res = await api(gw, 'POST', `/v1/call/sessions/${s.sessionId}/transitions`, s.ownerToken, body);
    assert.equal(res.status, 200, JSON.stringify(res.body));
  }
  const stored = await history(gw, s);
  assert.equal(stored.at(-1)!.event.type, 'call.ended');
  return stored.at(-1)!.seq;
}

/** Asserts the client got `after`+1..last in order, the last being call.ended, then eos, then close 1000. */
async function assertEnded(client: TestClient, afterSeq: number, last: number): Promise<void> {
  const eos = await waitFor(client, (f) => f.op === 'eos');
  assert.deepEqual(eos, { op: 'eos', seq: last });
  await expectClose(client, 1000);
  assertContiguous(seqs(client), afterSeq);
  assert.equal(seqs(client).at(-1), last, 'every event before eos');
  const evs = client.frames.filter((f) => f.op === 'ev');
  assert.equal(evs.at(-1)!.event.type, 'call.ended');
  const ops = client.frames.map((f) => f.op);
  assert.equal(ops.lastIndexOf('eos'), ops.length - 1, 'eos is the last frame');
  assert.equal(ops.filter((o) => o === 'eos').length, 1);
}

for (const sub of SUBPROTOCOLS) {
  describe(`§4 eos [${sub}]`, () => {
    it('§4 eos: after the session ends, subscribers receive every event, then eos with the last seq, then close 1000', async () => {
      const s = await newSession(gw);
      const pub = await publisher(gw, s, sub);
      const { client: a } = await hello(gw, sub, { sessionId: s.sessionId, token: s.ownerToken, after: 0 });
      autoAck(a);
      await publishMany(pub, 6);
      const { client: b } = await hello(gw, sub, { sessionId: s.sessionId, token: s.agentToken });
      autoAck(b);
      await publishMany(pub, 2);
      const last = await end(s);
      assert.equal(last, 1 + 8 + 3);
      await assertEnded(a, 0, last);
      await assertEnded(b, 7, last);
    });

    it('§4 eos: a subscriber paused by flow control gets eos only after acking its way to the end', async () => {
      const s = await newSession(gw);
      const pub = await publisher(gw, s, sub);
      await publishMany(pub, 5); // head 6
      const { client } = await hello(gw, sub, { sessionId: s.sessionId, token: s.ownerToken, after: 0 });
      const last = await end(s); // 7
      await waitSeq(client, MAX_IN_FLIGHT);
      await roundTrip(client);
      assert.equal(
        client.frames.find((f) => f.op === 'eos'),
        undefined,
        'no eos while events are undelivered',
      );
      assert.equal(client.closeInfo, undefined);
      autoAck(client);
      await assertEnded(client, 0, last);
    });

    it('§4 eos: a new hello on an ended session with after: 0 gets the full stream, then eos, then close 1000', async () => {
      const s = await newSession(gw);
      const pub = await publisher(gw, s, sub);
      await publishMany(pub, 3);
      const last = await end(s);
      const { client, welcome } = await hello(gw, sub, {
        sessionId: s.sessionId,
        token: s.ownerToken,
        after: 0,
      });
      assert.equal(welcome.headSeq, last);
      autoAck(client);
      await assertEnded(client, 0, last);
    });

    it('§4 eos: a new hello on an ended session with after "latest" gets eos at once, then close 1000', async () => {
      const s = await newSession(gw);
      const last = await end(s);
      const { client } = await hello(gw, sub, { sessionId: s.sessionId, token: s.ownerToken });
      const eos = await waitFor(client, (f) => f.op === 'eos');
      assert.deepEqual(eos, { op: 'eos', seq: last });
      await expectClose(client, 1000);
      assert.deepEqual(seqs(client), []);
    });

    it('§4 eos: a subscriber that resumes after the end gets the rest, then eos, then close 1000', async () => {
      const s = await newSession(gw);
      const pub = await publisher(gw, s, sub);
      const { client, welcome } = await hello(gw, sub, {
        sessionId: s.sessionId,
        token: s.ownerToken,
        after: 0,
      });
      await publishMany(pub, 2);
      await waitSeq(client, 3);
      client.send({ op: 'ack', seq: 2 });
      await roundTrip(client);
      client.close();
      await client.closed;
      await publishMany(pub, 2);
      const last = await end(s);
      const r = await hello(gw, sub, { sessionId: s.sessionId, resume: { token: welcome.resumeToken } });
      assert.equal(r.welcome.after, 2);
      autoAck(r.client);
      await assertEnded(r.client, 2, last);
    });

    it('§4 eos: publishing after the end is refused (pub → nack session_ended, HTTP → 409) and appends nothing', async () => {
      const s = await newSession(gw);
      // An agent that never acks stays connected past the end: it has not received everything.
      const { client: agent } = await hello(gw, sub, {
        sessionId: s.sessionId,
        token: s.agentToken,
        after: 0,
      });
      await publishMany(agent, MAX_IN_FLIGHT + 1);
      const last = await end(s);
      await waitSeq(agent, MAX_IN_FLIGHT);
      assert.equal(agent.closeInfo, undefined);
      const answer = await publish(agent, transcriptPub('too late'));
      assert.equal(answer.op, 'nack', JSON.stringify(answer));
      assert.equal(answer.code, 'session_ended');
      const res = await api(gw, 'POST', `/v1/call/sessions/${s.sessionId}/events`, s.agentToken, {
        type: 'transcript.final',
        payload: { segmentId: 'late', revision: 0, text: 'too late' },
      });
      assert.equal(res.status, 409, JSON.stringify(res.body));
      assert.equal(res.body.error.code, 'session_ended');
      const stored = await history(gw, s);
      assert.equal(stored.length, last);
      assert.equal(stored.at(-1)!.event.type, 'call.ended');
    });
  });
}

describe('§4 eos: the end is durable', () => {
  it('§4 eos: publishing after the end is refused even once the session actor was evicted (idle)', async () => {
    const s = await newSession(gw);
    const last = await end(s);
    await sleep(IDLE_MS * 2 + 200); // no connections: the actor is dropped after ACTOR_IDLE_MS
    const res = await api(gw, 'POST', `/v1/call/sessions/${s.sessionId}/events`, s.agentToken, {
      eventId: 'after-eviction',
      type: 'transcript.final',
      payload: { segmentId: 'late', revision: 0, text: 'too late' },
    });
    assert.equal(
      res.status,
      409,
      `expected 409 session_ended, got ${res.status} ${JSON.stringify(res.body)}`,
    );
    const stored = await history(gw, s);
    assert.equal(stored.length, last, 'nothing is appended after call.ended');
    const { client } = await hello(gw, 'json', { sessionId: s.sessionId, token: s.ownerToken, after: 0 });
    autoAck(client);
    await assertEnded(client, 0, last);
  });
});
