import { Packr, Unpackr } from 'msgpackr';
import { Subprotocols, type ClientFrame, type CodecName } from './protocol.ts';

/** One subprotocol: how frames become WebSocket messages and back. */
export interface Codec {
  readonly name: CodecName;
  readonly protocol: string;
  encode(frame: ClientFrame): string | Uint8Array;
  /** Throws on bytes it cannot decode. */
  decode(data: unknown): unknown;
}

const textDecoder = new TextDecoder();

function bytesOf(data: unknown): Uint8Array | undefined {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return undefined;
}

const json: Codec = {
  name: 'json',
  protocol: Subprotocols.json,
  encode: (frame) => JSON.stringify(frame),
  decode(data) {
    if (typeof data === 'string') return JSON.parse(data) as unknown;
    const bytes = bytesOf(data);
    if (bytes) return JSON.parse(textDecoder.decode(bytes)) as unknown;
    throw new TypeError('json: unexpected message data');
  },
};

function msgpack(): Codec {
  // Plain maps, no msgpackr records: the gateway speaks standard MessagePack.
  const packr = new Packr({ useRecords: false });
  const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });
  return {
    name: 'msgpack',
    protocol: Subprotocols.msgpack,
    // msgpackr may reuse its buffer on the next pack(): hand the socket a copy.
    encode: (frame) => Uint8Array.from(packr.pack(frame)),
    decode(data) {
      const bytes = bytesOf(data);
      if (!bytes) throw new TypeError('msgpack: expected a binary message');
      return unpackr.unpack(bytes) as unknown;
    },
  };
}

export function codecFor(name: CodecName): Codec {
  switch (name) {
    case 'json':
      return json;
    case 'msgpack':
      return msgpack();
  }
}
