import type { Codec } from './codec.ts';
import { jsonCodec } from './json-codec.ts';
import { msgpackCodec } from './msgpack-codec.ts';

export type { Codec } from './codec.ts';
export const codecs: readonly Codec[] = [jsonCodec, msgpackCodec];

/** Picks the first subprotocol the client offered that we speak, in the client's order. */
export function negotiate(offered: string): Codec | undefined {
  for (const raw of offered.split(',')) {
    const name = raw.trim();
    const codec = codecs.find((c) => c.subprotocol === name);
    if (codec) return codec;
  }
  return undefined;
}
export { jsonCodec, msgpackCodec };
