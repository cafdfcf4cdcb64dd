import { Packr, Unpackr } from 'msgpackr';
import type { Codec } from './codec.ts';

// Plain maps, no msgpackr records or structure sharing: clients in any language must be
// able to read every frame with a stock MessagePack library.
const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/** `lifeos.v1.msgpack`: one MessagePack map per binary frame, same keys as JSON. */
export const msgpackCodec: Codec = {
  name: 'msgpack',
  subprotocol: 'lifeos.v1.msgpack',
  binary: true,
  encode(frame) {
    return packr.pack(frame);
  },
  puback(id, seq) {
    return packr.pack({ op: 'puback', id, seq });
  },
  ev(seq, event) {
    return packr.pack({ op: 'ev', seq, event });
  },
  decode(data) {
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
    // unpack (not unpackMultiple): trailing bytes after one value are an error.
    return unpackr.unpack(bytes) as unknown;
  },
};
