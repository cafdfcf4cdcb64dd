import { envelopeText } from '../protocol/envelope-text.ts';
import type { Codec } from './codec.ts';

const decoder = new TextDecoder('utf-8', { fatal: true });

/** `lifeos.v1.json`: one JSON object per text frame. */
export const jsonCodec: Codec = {
  name: 'json',
  subprotocol: 'lifeos.v1.json',
  binary: false,
  encode(frame) {
    return Buffer.from(JSON.stringify(frame));
  },
  puback(id, seq) {
    return Buffer.from(`{"op":"puback","id":${JSON.stringify(id)},"seq":${seq}}`);
  },
  ev(seq, event) {
    return Buffer.from(`{"op":"ev","seq":${seq},"event":${envelopeText(event)}}`);
  },
  decode(data) {
    return JSON.parse(decoder.decode(data)) as unknown;
  },
};
