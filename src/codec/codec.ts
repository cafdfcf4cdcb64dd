/**
 * Wire codecs for the two subprotocols (PROTOCOL.md §3). A codec turns one frame
 * object into bytes and back. Encoded bytes are shared by every subscriber of a
 * session on the node, so `encode` must return a buffer nobody mutates afterwards.
 */
import type { Envelope } from '../protocol/envelope.ts';

export interface Codec {
  readonly name: 'json' | 'msgpack';
  readonly subprotocol: 'lifeos.v1.json' | 'lifeos.v1.msgpack';
  /** Whether frames travel as binary WebSocket frames. */
  readonly binary: boolean;
  encode(frame: object): Uint8Array;
  /**
   * `{op: 'puback', id, seq}`, the same bytes `encode` gives, on the path every publish
   * takes (no frame object for the JSON codec).
   */
  puback(id: string, seq: number): Uint8Array;
  /**
   * `{op: 'ev', seq, event}`, the same bytes `encode` gives. The JSON codec writes it
   * around the envelope's own text (protocol/envelope-text.ts), which the redis engine
   * already made to store it, so a published event is serialized once.
   */
  ev(seq: number, event: Envelope): Uint8Array;
  /** Throws on bytes that are not one well-formed frame of this codec. */
  decode(data: ArrayBuffer | Uint8Array): unknown;
}
