/**
 * The one application payload every arm carries: a JSON text of exactly `size` bytes,
 *
 *   {"t":"<topic>","seq":<n>,"pad":"@ts:<µs>@ xxxx…"}
 *
 * `seq` is the publisher's per-topic counter (1, 2, 3, …) and `@ts:<µs>@` the send time as
 * a wall clock in integer microseconds (bench/lib/wire.ts `nowMicros`). The stamp is
 * written so it survives being JSON-escaped inside another frame (the gateway puts the
 * payload in an event's `text`, Socket.IO in an array), so every adapter finds it with one
 * indexOf (`readStamp`).
 */
export const PAYLOAD_SIZES = [100, 1024] as const;

export function makePayload(topic: string, seq: number, sentUs: number, size: number): string {
  const head = `{"t":"${topic}","seq":${seq},"pad":"@ts:${sentUs}@ `;
  const tail = '"}';
  const fill = Math.max(0, size - head.length - tail.length);
  return head + 'x'.repeat(fill) + tail;
}

/**
 * Reads a non-negative decimal integer that starts at `from` in `buf`; -1 if none.
 * Used by adapters after an indexOf of their seq marker.
 */
export function readUint(buf: Uint8Array, from: number): number {
  let value = 0;
  let i = from;
  for (; i < buf.length; i++) {
    const c = buf[i]!;
    if (c < 0x30 || c > 0x39) break;
    value = value * 10 + (c - 0x30);
  }
  return i === from ? -1 : value;
}
