/**
 * PROTOCOL.md §4 (frames after welcome), §1 (envelope and producer rights, as seen over
 * `pub`) and §2 (idempotent publishing), over both subprotocols.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { Packr } from 'msgpackr';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import type { TestClient } from '../helpers/ws-client.ts';
import {
  api,
  assertContiguous,
  checkpointOf,
  closeAll,
  connect,
  expectClose,
  hello,
  history,
  newSession,
  publish,
  publisher,
  publishMany,
  roundTrip,
  seqs,
  SUBPROTOCOLS,
  transcriptPub,
  waitFor,
  waitSeq,
  type Frame,
  type Session,
  type Sub,
} from './support.ts';

const MAX_FRAME_BYTES = 2048;
const packr = new Packr({ useRecords: false });
const TS_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway({ MAX_FRAME_BYTES: String(MAX_FRAME_BYTES) });
});
afterEach(closeAll);
after(() => gw.stop());

/** A session with a subscriber (after 0, owner) holding seqs 1..1 + published. */
async function withSubscriber(
  sub: Sub,
  published = 0,
): Promise<{ s: Session; pub: TestClient; client: TestClient; welcome: Frame }> {
  const s = await newSession(gw);
  const pub = await publisher(gw, s, sub);
  await publishMany(pub, published);
  const { client, welcome } = await hello(gw, sub, { sessionId: s.sessionId, token: s.ownerToken, after: 0 });
  await waitSeq(client, published + 1);
  return { s, pub, client, welcome };
}

/** Asserts that the session still works for everyone else: a publish reaches `bystander`. */
async function othersKeepWorking(pub: TestClient, bystander: TestClient): Promise<void> {
  const answer = await publish(pub, transcriptPub('still alive'));
  assert.equal(answer.op, 'puback', JSON.stringify(answer));
  await waitSeq(bystander, answer.seq as number);
  await roundTrip(bystander);
  assert.equal(bystander.closeInfo, undefined);
}

for (const sub of SUBPROTOCOLS) {
  describe(`§4 ack [${sub}]`, () => {
    it('§4 ack: cumulative: one ack of n acknowledges every event up to n', async () => {
      const { s, client, welcome } = await withSubscriber(sub, 5);
      client.send({ op: 'ack', seq: 5 });
      await roundTrip(client);
      assert.equal(client.frames.filter((f) => f.op === 'error').length, 0);
      assert.equal(await checkpointOf(gw, sub, s.sessionId, welcome.resumeToken), 5);
    });

    it('§4 ack: a lower or repeated ack is ignored (the checkpoint never decreases)', async () => {
      const { s, client, welcome } = await withSubscriber(sub, 5);
      client.send({ op: 'ack', seq: 5 });
      client.send({ op: 'ack', seq: 3 });
      client.send({ op: 'ack', seq: 5 });
      client.send({ op: 'ack', seq: 0 });
      await roundTrip(client);
      assert.equal(client.frames.filter((f) => f.op === 'error').length, 0, 'lower acks are not errors');
      assert.equal(client.closeInfo, undefined);
      assert.equal(await checkpointOf(gw, sub, s.sessionId, welcome.resumeToken), 5);
    });

    it('§4 ack: an ack above the highest seq delivered gets error ack_ahead (retryable false), is ignored, the connection stays open', async () => {
      const { s, pub, client, welcome } = await withSubscriber(sub, 2); // holds 1..3
      client.send({ op: 'ack', seq: 2 });
      client.send({ op: 'ack', seq: 4 });
      const error = await waitFor(client, (f) => f.op === 'error');
      assert.equal(error.code, 'ack_ahead');
      assert.equal(error.retryable, false);
      assert.equal(typeof error.message, 'string');
      await roundTrip(client);
      assert.equal(client.closeInfo, undefined, 'an error frame is not fatal');
      // live delivery goes on
      await publishMany(pub, 1);
      await waitSeq(client, 4);
      assertContiguous(seqs(client), 0);
      assert.equal(
        await checkpointOf(gw, sub, s.sessionId, welcome.resumeToken),
        2,
        'the checkpoint did not move',
      );
    });
  });

  describe(`§4 pub [${sub}]`, () => {
    it('§4 pub: answered with puback carrying the seq once durable; the event reaches other subscribers', async () => {
      const { s, pub, client } = await withSubscriber(sub, 0);
      const frame = transcriptPub('hi there');
      const answer = await publish(pub, frame);
      assert.deepEqual(answer, { op: 'puback', id: frame.id, seq: 2 });
      const stored = await history(gw, s);
      assert.deepEqual(
        stored.map((e) => e.seq),
        [1, 2],
        'durable (readable from the engine) when puback arrives',
      );
      const ev = await waitSeq(client, 2);
      assert.equal(ev.seq, 2);
      assert.equal(ev.event.eventId, frame.id);
      assert.equal(ev.event.sessionId, s.sessionId);
      assert.equal(ev.event.type, 'transcript.final');
      assert.deepEqual(ev.event.payload, frame.payload);
      assert.equal(ev.event.schemaVersion, 1);
      assert.match(ev.event.ts, TS_RE);
      assert.deepEqual(Object.keys(ev.event).sort(), [
        'eventId',
        'payload',
        'schemaVersion',
        'sessionId',
        'ts',
        'type',
      ]);
      assert.deepEqual(stored[1]!.event, ev.event, 'delivered as stored');
    });

    it('§4 pub: the producer ts is kept', async () => {
      const { pub, client } = await withSubscriber(sub, 0);
      const frame = { ...transcriptPub('with ts'), ts: '2026-11-28T21:33:16.123Z' };
      const answer = await publish(pub, frame);
      assert.equal(answer.op, 'puback');
      const ev = await waitSeq(client, answer.seq as number);
      assert.equal(ev.event.ts, '2026-11-28T21:33:16.123Z');
    });

    it('§4 pub: an invalid event is answered with nack invalid_event and appends nothing', async () => {
      const { s, pub, client } = await withSubscriber(sub, 0);
      const bad: Frame[] = [
        { op: 'pub', id: 'bad-1', type: 'transcript.final', payload: { segmentId: 's', revision: 0 } }, // no text
        {
          op: 'pub',
          id: 'bad-2',
          type: 'transcript.final',
          payload: { segmentId: 's', revision: -1, text: 'x' },
        },
        {
          op: 'pub',
          id: 'bad-3',
          type: 'transcript.nope',
          payload: { segmentId: 's', revision: 0, text: 'x' },
        },
        { op: 'pub', id: 'bad-4', type: 'transcript.final', payload: 'text' },
        {
          op: 'pub',
          id: 'bad id with spaces',
          type: 'transcript.final',
          payload: { segmentId: 's', revision: 0, text: 'x' },
        },
        {
          op: 'pub',
          id: 'bad-6',
          type: 'transcript.final',
          payload: { segmentId: 's', revision: 0, text: 'x' },
          ts: '2026-11-28',
        },
        {
          op: 'pub',
          id: 'bad-7',
          type: 'transcript.final',
          payload: { segmentId: 's', revision: 0, text: 'x', extra: true },
        },
      ];
      for (const frame of bad) {
        const answer = await publish(pub, frame);
        assert.equal(answer.op, 'nack', `${String(frame.id)}: ${JSON.stringify(answer)}`);
        assert.equal(answer.id, frame.id);
        assert.equal(answer.code, 'invalid_event', `${String(frame.id)}: ${JSON.stringify(answer)}`);
        assert.equal(typeof answer.message, 'string');
      }
      await roundTrip(pub);
      assert.equal(pub.closeInfo, undefined, 'a nack is not fatal');
      assert.equal((await history(gw, s)).length, 1, 'nothing was appended');
      await roundTrip(client);
      assert.deepEqual(seqs(client), [1]);
    });

    it('§1 producer rights: a type the role may not publish is answered with nack forbidden_type', async () => {
      const s = await newSession(gw);
      const action = (id: string): Frame => ({
        op: 'pub',
        id,
        type: 'orchestration.action.requested',
        payload: { actionId: `a-${id}`, action: 'calendar.create_event' },
      });
      const cases: Array<[role: 'user' | 'agent' | 'operator' | 'service', frame: Frame, expected: string]> =
        [
          ['user', transcriptPub('user may not'), 'forbidden_type'],
          ['user', action('u-ok'), 'puback'],
          [
            'agent',
            { op: 'pub', id: 'a-end', type: 'call.ended', payload: { reason: 'agent says so' } },
            'forbidden_type',
          ],
          ['agent', transcriptPub('agent may'), 'puback'],
          ['agent', action('a-ok'), 'puback'],
          ['service', transcriptPub('service may'), 'puback'],
          [
            'service',
            { op: 'pub', id: 's-created', type: 'call.created', payload: { state: 'created' } },
            'forbidden_type',
          ],
          ['operator', action('o-no'), 'forbidden_type'],
          ['operator', transcriptPub('operator may not'), 'forbidden_type'],
        ];
      const clients = new Map<string, TestClient>();
      for (const role of ['user', 'agent', 'operator', 'service'] as const) {
        const token = role === 'user' ? s.ownerToken : await gw.token(`${role}-rights`, role, 'acme');
        clients.set(role, (await hello(gw, sub, { sessionId: s.sessionId, token })).client);
      }
      for (const [role, frame, expected] of cases) {
        const answer = await publish(clients.get(role)!, frame);
        if (expected === 'puback')
          assert.equal(answer.op, 'puback', `${role} ${String(frame.type)}: ${JSON.stringify(answer)}`);
        else {
          assert.equal(answer.op, 'nack', `${role} ${String(frame.type)}: ${JSON.stringify(answer)}`);
          assert.equal(answer.code, expected, `${role} ${String(frame.type)}`);
          assert.equal(answer.id, frame.id);
        }
      }
      const types = (await history(gw, s)).map((e) => e.event.type);
      assert.deepEqual(
        types.filter((t: string) => t.startsWith('call.')),
        ['call.created'],
        'no forbidden event was appended',
      );
    });

    it('§2 idempotent publish: a retried pub with the same id returns the original seq and appends once', async () => {
      const { s, pub, client } = await withSubscriber(sub, 1);
      const frame = transcriptPub('once');
      const first = await publish(pub, frame);
      assert.equal(first.op, 'puback');
      await publishMany(pub, 1);
      const retry = await publish(pub, frame);
      assert.deepEqual(retry, first, 'the retry gets the original seq');
      const stored = await history(gw, s);
      assert.equal(stored.filter((e) => e.event.eventId === frame.id).length, 1);
      assert.deepEqual(
        stored.map((e) => e.seq),
        [1, 2, 3, 4],
      );
      await waitSeq(client, 4);
      await roundTrip(client);
      assert.deepEqual(seqs(client), [1, 2, 3, 4], 'subscribers get it once');
    });

    it('§2 idempotent publish: concurrent publishes of one id (same and other connections, HTTP) get one seq, appended once', async () => {
      const { s, pub, client } = await withSubscriber(sub, 0);
      const other = await publisher(gw, s, sub);
      const frame = transcriptPub('concurrent');
      const answers = await Promise.all([
        publish(pub, frame),
        publish(pub, frame),
        publish(other, frame),
        publish(other, frame),
        api(gw, 'POST', `/v1/call/sessions/${s.sessionId}/events`, s.agentToken, {
          eventId: frame.id,
          type: frame.type,
          payload: frame.payload,
        }),
      ]);
      const wsAnswers: Frame[] = answers.slice(0, 4);
      const httpAnswer = answers[4];
      assert.ok(
        wsAnswers.every((a) => a.op === 'puback'),
        JSON.stringify(wsAnswers),
      );
      const seqSet = new Set([...wsAnswers.map((a) => a.seq), httpAnswer.body.seq]);
      assert.equal(seqSet.size, 1, `one seq for one eventId, got ${[...seqSet].join(',')}`);
      assert.ok([200, 201].includes(httpAnswer.status), JSON.stringify(httpAnswer));
      const stored = await history(gw, s);
      assert.equal(stored.filter((e) => e.event.eventId === frame.id).length, 1);
      assert.equal(stored.length, 2);
      await waitSeq(client, 2);
      await roundTrip(client);
      assert.deepEqual(seqs(client), [1, 2]);
    });
  });

  describe(`§4 ping [${sub}]`, () => {
    it('§4 ping: answered with pong echoing n (number or string), or without n', async () => {
      const { client } = await withSubscriber(sub, 0);
      client.send({ op: 'ping', n: 42 });
      const p1 = await waitFor(client, (f) => f.op === 'pong');
      assert.deepEqual(p1, { op: 'pong', n: 42 });
      const from = client.frames.length;
      client.send({ op: 'ping' });
      const p2 = await waitFor(client, (f) => f.op === 'pong', 5000, from);
      assert.deepEqual(p2, { op: 'pong' });
      const from2 = client.frames.length;
      client.send({ op: 'ping', n: 'abc' });
      const p3 = await waitFor(client, (f) => f.op === 'pong', 5000, from2);
      assert.deepEqual(p3, { op: 'pong', n: 'abc' });
    });
  });

  describe(`§4 protocol violations [${sub}]`, () => {
    const encode = (value: unknown): [string | Buffer, boolean] =>
      sub === 'json' ? [JSON.stringify(value), false] : [packr.pack(value), true];

    const violations: Array<[name: string, payload: () => [string | Buffer, boolean]]> = [
      ['an unknown op', () => encode({ op: 'dance' })],
      ['a frame without op', () => encode({ seq: 1 })],
      ['an ack without seq', () => encode({ op: 'ack' })],
      ['an ack with a negative seq', () => encode({ op: 'ack', seq: -1 })],
      ['an ack with a string seq', () => encode({ op: 'ack', seq: '3' })],
      ['an array frame', () => encode([{ op: 'ping' }])],
      ['a number frame', () => encode(42)],
      ['a string frame', () => encode('ping')],
      ['a null frame', () => encode(null)],
      ...(sub === 'json'
        ? ([
            ['malformed JSON', () => ['{"op":"ping"', false]],
            ['JSON with trailing garbage', () => ['{"op":"ping"} x', false]],
          ] as Array<[string, () => [string | Buffer, boolean]]>)
        : ([
            ['malformed msgpack (reserved byte 0xc1)', () => [Buffer.from([0xc1]), true]],
            ['truncated msgpack map', () => [Buffer.from([0x82, 0xa2, 0x6f, 0x70]), true]],
            [
              'msgpack with trailing bytes',
              () => [Buffer.concat([packr.pack({ op: 'ping' }), Buffer.from([0x01])]), true],
            ],
          ] as Array<[string, () => [string | Buffer, boolean]]>)),
    ];

    for (const [name, payload] of violations) {
      it(`§4/§5 bad frame: ${name} closes with 4000; other connections on the session keep working`, async () => {
        const { s, pub, client: bystander } = await withSubscriber(sub, 0);
        const { client: victim } = await hello(gw, sub, {
          sessionId: s.sessionId,
          token: s.ownerToken,
          after: 0,
        });
        await waitSeq(victim, 1);
        const [data, binary] = payload();
        victim.sendRaw(data, binary);
        await expectClose(victim, 4000);
        await othersKeepWorking(pub, bystander);
      });
    }

    it('§4/§5 oversize frame: a frame above MAX_FRAME_BYTES is closed with 1009 (message too big)', async () => {
      const s = await newSession(gw);
      const { client: victim } = await hello(gw, sub, { sessionId: s.sessionId, token: s.agentToken });
      victim.send(transcriptPub('x'.repeat(MAX_FRAME_BYTES * 2)));
      await expectClose(victim, 1009);
    });

    it('§4/§5 oversize frame: closing an oversized connection leaves the others on the session working', async () => {
      const { s, pub, client: bystander } = await withSubscriber(sub, 0);
      const { client: victim } = await hello(gw, sub, { sessionId: s.sessionId, token: s.agentToken });
      victim.send(transcriptPub('x'.repeat(MAX_FRAME_BYTES * 2)));
      await victim.closeCode();
      await othersKeepWorking(pub, bystander);
      assert.equal((await history(gw, s)).length, 2, 'the oversized pub was not appended');
    });

    it('§4 pipelining: frames sent right behind hello are processed after the welcome', async () => {
      const s = await newSession(gw);
      const { client } = await hello(gw, sub, { sessionId: s.sessionId, token: s.ownerToken, after: 0 });
      client.close();
      const c2 = await connect(gw, sub);
      c2.send({ op: 'hello', sessionId: s.sessionId, token: s.agentToken, after: 0 });
      c2.send({ op: 'ping', n: 'early' });
      c2.send(transcriptPub('early pub'));
      const pong = await waitFor(c2, (f) => f.op === 'pong');
      assert.equal(pong.n, 'early');
      const puback = await waitFor(c2, (f) => f.op === 'puback');
      assert.equal(puback.seq, 2);
      const ops = c2.frames.map((f) => f.op);
      assert.equal(ops[0], 'welcome');
    });
  });
}
