/**
 * A published event is serialized once (issue 6): the stored text and the JSON `ev`
 * frame share the envelope's one JSON.stringify. What goes on the wire must be exactly
 * what encoding the frame object gives, for any envelope, and the cached text must never
 * show up as a key or change what the envelope serializes to.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as nextMacrotask } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { jsonCodec, msgpackCodec } from '../../src/codec/index.ts';
import type { Envelope } from '../../src/protocol/envelope.ts';
import { envelopeText, parseEnvelopeText } from '../../src/protocol/envelope-text.ts';
import { EncodedEvent } from '../../src/session/event-cache.ts';

const envelope = (payload: Record<string, unknown>, eventId = '01JDEMO0000000000000000000'): Envelope => ({
  eventId,
  sessionId: 'sess_demo',
  ts: '2026-11-29T09:00:00.000Z',
  type: 'transcript.partial',
  payload,
  schemaVersion: 1,
});

const payloads: Record<string, unknown>[] = [
  {},
  { segmentId: 's1', revision: 3, text: 'hello' },
  { text: 'quotes " and \\ backslashes, \n newlines, \u0000 controls, \u2028 separators' },
  { text: 'ünïcödé, emoji 🎙️, and a lone surrogate \ud800' },
  { nested: { list: [1, 2.5, -0, 1e21, null, true, 'x'], deep: { a: { b: { c: [] } } } } },
  { big: 'x'.repeat(70_000) },
];

describe('envelopeText', () => {
  it('is JSON.stringify of the envelope, and leaves its keys and serialization alone', () => {
    for (const payload of payloads) {
      const event = envelope(payload);
      const expected = JSON.stringify(event);
      assert.equal(envelopeText(event), expected);
      assert.equal(envelopeText(event), expected, 'asked twice');
      assert.deepEqual(Object.keys(event), [
        'eventId',
        'sessionId',
        'ts',
        'type',
        'payload',
        'schemaVersion',
      ]);
      assert.equal(JSON.stringify(event), expected, 'the cached text is not serialized');
    }
  });

  it('keeps the stored text of an envelope read back', () => {
    for (const payload of payloads) {
      const stored = JSON.stringify(envelope(payload));
      const event = parseEnvelopeText(stored);
      assert.deepEqual(event, JSON.parse(stored));
      assert.equal(envelopeText(event), stored);
    }
  });
});

describe('EncodedEvent', () => {
  it('writes the JSON ev frame byte for byte as encoding the frame object would', () => {
    for (const [i, payload] of payloads.entries()) {
      for (const seq of [1, 42, 2 ** 40]) {
        const event = envelope(payload, `01JDEMO${String(i).padStart(19, '0')}`);
        const fresh = new EncodedEvent({ seq, event });
        const expected = jsonCodec.encode({ op: 'ev', seq, event });
        assert.deepEqual(Buffer.from(fresh.bytes(jsonCodec)), Buffer.from(expected));
        // an event read back from storage gives the same bytes
        const read = new EncodedEvent({ seq, event: parseEnvelopeText(JSON.stringify(event)) });
        assert.deepEqual(Buffer.from(read.bytes(jsonCodec)), Buffer.from(expected));
      }
    }
  });

  it('encodes each codec once and keeps msgpack frames as they were', () => {
    const event = envelope(payloads[1]!);
    const encoded = new EncodedEvent({ seq: 7, event });
    assert.equal(encoded.bytes(jsonCodec), encoded.bytes(jsonCodec), 'the same buffer for every subscriber');
    assert.equal(encoded.bytes(msgpackCodec), encoded.bytes(msgpackCodec));
    assert.deepEqual(msgpackCodec.decode(encoded.bytes(msgpackCodec)), { op: 'ev', seq: 7, event });
  });

  it('makes a MessagePack frame it was not given from its JSON frame: the event as stored', () => {
    for (const payload of payloads) {
      for (const seq of [1, 2 ** 40]) {
        const event = envelope(payload);
        // what a subscriber replaying from the engine gets: the envelope of the stored text
        const stored = msgpackCodec.ev(seq, parseEnvelopeText(JSON.stringify(event)));
        const late = new EncodedEvent({ seq, event });
        assert.deepEqual(Buffer.from(late.bytes(msgpackCodec)), Buffer.from(stored));
        const early = new EncodedEvent({ seq, event }, true);
        assert.deepEqual(Buffer.from(early.bytes(msgpackCodec)), Buffer.from(msgpackCodec.ev(seq, event)));
      }
    }
  });

  it('holds its frames, not the envelope (a cached event is a Buffer or two to the GC)', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    // made in a function of its own, so no variable here holds the envelope
    const make = (): [WeakRef<Envelope>, EncodedEvent] => {
      const event = envelope(payloads[1]!);
      return [new WeakRef(event), new EncodedEvent({ seq: 3, event })];
    };
    const [ref, encoded] = make();
    // a WeakRef's target lives at least until the job that made it ends
    await nextMacrotask();
    gc();
    assert.equal(ref.deref(), undefined, 'the envelope was collected');
    assert.deepEqual(msgpackCodec.decode(encoded.bytes(msgpackCodec)), {
      op: 'ev',
      seq: 3,
      event: envelope(payloads[1]!),
    });
  });
});

describe('codec.ev', () => {
  it('gives the bytes encoding the ev frame would, in both codecs', () => {
    for (const codec of [jsonCodec, msgpackCodec]) {
      for (const payload of payloads) {
        const event = envelope(payload);
        const expected = codec.encode({ op: 'ev', seq: 3, event });
        assert.deepEqual(Buffer.from(codec.ev(3, event)), Buffer.from(expected), codec.name);
      }
    }
  });
});

describe('codec.puback', () => {
  it('gives the bytes encoding the puback frame would, in both codecs', () => {
    const ids = ['01JDEMO0000000000000000000', 'a"b\\c', 'ünï 🎙️', 'x'.repeat(128)];
    for (const codec of [jsonCodec, msgpackCodec]) {
      for (const id of ids) {
        for (const seq of [1, 9_007_199_254_740_991]) {
          const expected = codec.encode({ op: 'puback', id, seq });
          assert.deepEqual(Buffer.from(codec.puback(id, seq)), Buffer.from(expected), `${codec.name} ${id}`);
        }
      }
    }
  });
});
