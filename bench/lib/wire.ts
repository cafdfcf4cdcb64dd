/**
 * What the benchmark puts on the wire and how a subscriber reads it back cheaply.
 *
 * Timestamps: a wall clock in integer microseconds, `performance.timeOrigin +
 * performance.now()`, comparable across processes on one machine; the parent also
 * measures each worker's offset over IPC (see smoke.ts) and the worker subtracts it.
 * The publisher writes its send time into the event's `text` as `@ts:<µs>@`.
 *
 * Fast path: an `ev` frame is recognised by its fixed prefix (`{"op":"ev","seq":` in
 * JSON, the MessagePack map header + "op":"ev","seq" in msgpack, as the gateway's codecs
 * write them), its seq is read in place and the stamp found with one indexOf — no full
 * decode per delivery, so the client is not the bottleneck. `--parse full` decodes every
 * frame with the gateway's own codecs instead.
 */
import { performance } from 'node:perf_hooks';

export function nowMicros(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

const MARK = Buffer.from('@ts:');
const AT = 0x40; // '@'

/** A ~`size`-byte transcript text that starts with the send time. */
export function stampedText(sentUs: number, size: number): string {
  const head = `@ts:${sentUs}@ `;
  const filler = 'the quick brown fox jumps over the lazy dog while the agent listens and transcribes ';
  let text = head;
  while (text.length < size) text += filler;
  return text.slice(0, Math.max(size, head.length));
}

/** Reads the `@ts:<µs>@` stamp anywhere in `buf` (from `from`); -1 when there is none. */
export function readStamp(buf: Uint8Array, from = 0): number {
  const b = buf as Buffer;
  const at = b.indexOf(MARK, from);
  if (at < 0) return -1;
  let value = 0;
  for (let i = at + MARK.length; i < b.length; i++) {
    const c = b[i]!;
    if (c === AT) return value;
    if (c < 0x30 || c > 0x39) return -1;
    value = value * 10 + (c - 0x30);
  }
  return -1;
}

/** Parses a string timestamp like the one in stampedText (for full-decode mode). */
export function stampOfText(text: unknown): number {
  if (typeof text !== 'string' || !text.startsWith('@ts:')) return -1;
  const end = text.indexOf('@', 4);
  return end < 0 ? -1 : Number(text.slice(4, end));
}

const JSON_EV = Buffer.from('{"op":"ev","seq":');
// fixmap(3) "op" "ev" "seq"
const MSGPACK_EV = Buffer.from([0x83, 0xa2, 0x6f, 0x70, 0xa2, 0x65, 0x76, 0xa3, 0x73, 0x65, 0x71]);

function startsWith(buf: Buffer, prefix: Buffer): boolean {
  if (buf.length < prefix.length) return false;
  return buf.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;
}

/** The seq of a JSON `ev` frame, or -1 if `buf` is not one (a control frame). */
export function jsonEvSeq(buf: Buffer): number {
  if (!startsWith(buf, JSON_EV)) return -1;
  let seq = 0;
  for (let i = JSON_EV.length; i < buf.length; i++) {
    const c = buf[i]!;
    if (c < 0x30 || c > 0x39) return i === JSON_EV.length ? -1 : seq;
    seq = seq * 10 + (c - 0x30);
  }
  return -1;
}

/** The seq of a MessagePack `ev` frame, or -1 if `buf` is not one. */
export function msgpackEvSeq(buf: Buffer): number {
  if (!startsWith(buf, MSGPACK_EV)) return -1;
  const i = MSGPACK_EV.length;
  if (buf.length <= i) return -1;
  const t = buf[i]!;
  if (t < 0x80) return t; // positive fixint
  switch (t) {
    case 0xcc:
      return buf.length > i + 1 ? buf.readUInt8(i + 1) : -1;
    case 0xcd:
      return buf.length > i + 2 ? buf.readUInt16BE(i + 1) : -1;
    case 0xce:
      return buf.length > i + 4 ? buf.readUInt32BE(i + 1) : -1;
    case 0xcf:
      return buf.length > i + 8 ? Number(buf.readBigUInt64BE(i + 1)) : -1;
    case 0xcb:
      return buf.length > i + 8 ? buf.readDoubleBE(i + 1) : -1;
    default:
      return -1;
  }
}
