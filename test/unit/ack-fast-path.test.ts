/**
 * The realtime handler reads an `ack` written exactly as `{"op":"ack","seq":<n>}` without
 * decoding it (issue 6: one per delivered event). Whatever it accepts must be what the
 * full path (JSON decode + frame schema) would make of the frame; anything else goes the
 * full path.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jsonCodec } from '../../src/codec/json-codec.ts';
import { parseClientFrame } from '../../src/protocol/frames.ts';
import { canonicalAckSeq } from '../../src/session/realtime-handler.ts';

const bytes = (text: string): ArrayBuffer => {
  const b = Buffer.from(text);
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.length);
};

function fullPath(text: string): number {
  let decoded: unknown;
  try {
    decoded = jsonCodec.decode(bytes(text));
  } catch {
    return -1;
  }
  const parsed = parseClientFrame(decoded);
  return parsed.ok && parsed.frame.op === 'ack' ? parsed.frame.seq : -1;
}

describe('canonical ack fast path', () => {
  it('accepts exactly what JSON.stringify writes for an ack, with the same seq', () => {
    for (const seq of [0, 1, 9, 10, 31, 12345, 2 ** 31, Number.MAX_SAFE_INTEGER]) {
      const text = JSON.stringify({ op: 'ack', seq });
      assert.equal(canonicalAckSeq(bytes(text)), seq, text);
      assert.equal(fullPath(text), seq, text);
    }
  });

  it('leaves every other frame to the full path', () => {
    const others = [
      '{"op":"ack","seq":}',
      '{"op":"ack","seq":-1}',
      '{"op":"ack","seq":01}',
      '{"op":"ack","seq":1.5}',
      '{"op":"ack","seq":1e3}',
      '{"op":"ack","seq":"1"}',
      '{"op":"ack","seq":9007199254740992}',
      '{"op":"ack","seq":12345678901234567}',
      '{"op":"ack", "seq":1}',
      '{"op":"ack","seq":1 }',
      '{"op":"ack","seq":1,"x":2}',
      '{"seq":1,"op":"ack"}',
      '{"op":"pub","seq":1}',
      '{"op":"ack","seq":1}\n',
      '',
    ];
    for (const text of others) {
      assert.equal(canonicalAckSeq(bytes(text)), -1, text);
    }
    // the ones the full path still takes as acks
    assert.equal(fullPath('{"op":"ack", "seq":1}'), 1);
    assert.equal(fullPath('{"seq":1,"op":"ack"}'), 1);
    assert.equal(fullPath('{"op":"ack","seq":01}'), -1);
    assert.equal(fullPath('{"op":"ack","seq":9007199254740992}'), -1);
  });
});
