import { parseEnvelopeText } from '../../protocol/envelope-text.ts';
import type { StoredEvent, StreamHead, SubscriberRecord } from '../engine.ts';
import { withNode } from '../subscriber-record.ts';

/**
 * Parsing of script replies. Scripts return only strings, integers and (nested) arrays:
 * Lua `nil`/`false` would truncate arrays or arrive as RESP3 booleans, so "absent" is ''.
 */

export function toInt(value: unknown, what: string): number {
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isSafeInteger(n)) throw new Error(`redis engine: ${what} is not an integer: ${String(value)}`);
  return n;
}

function toText(value: unknown, what: string): string {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  throw new Error(`redis engine: ${what} is not a string`);
}

export function asArray(value: unknown, what: string): unknown[] {
  if (!Array.isArray(value)) throw new Error(`redis engine: ${what} is not an array`);
  return value as unknown[];
}

/** `{ epoch, head, endedAt|'' }`, the common prefix of the stream scripts' replies. */
export function parseHead(reply: unknown[]): StreamHead {
  const epoch = toText(reply[0], 'epoch');
  const headSeq = toInt(reply[1], 'head');
  const ended = reply[2];
  return ended === '' || ended === null || ended === undefined
    ? { headSeq, epoch }
    : { headSeq, epoch, endedAt: toInt(ended, 'endedAt') };
}

/** `0-<seq>` → seq. */
export function seqOfEntryId(id: string): number {
  const match = /^0-(\d+)$/.exec(id);
  if (!match) throw new Error(`redis engine: unexpected stream entry id ${id}`);
  return toInt(match[1], 'entry seq');
}

/** An XRANGE entry `[id, [field, value, …]]` → StoredEvent (field `e` holds the JSON). */
export function parseEntry(entry: unknown): StoredEvent {
  const [id, fields] = asArray(entry, 'stream entry');
  const list = asArray(fields, 'stream entry fields');
  const at = list.findIndex((f, i) => i % 2 === 0 && toText(f, 'field') === 'e');
  if (at < 0) throw new Error('redis engine: stream entry without an event');
  const event = parseEnvelopeText(toText(list[at + 1], 'event json'));
  return { seq: seqOfEntryId(toText(id, 'entry id')), event };
}

/** A subscriber hash, as a flat field/value list (script reply) or an object (HGETALL). */
export function subscriberFields(raw: unknown): Map<string, string> {
  const fields = new Map<string, string>();
  if (Array.isArray(raw)) {
    for (let i = 0; i + 1 < raw.length; i += 2)
      fields.set(toText(raw[i], 'field'), toText(raw[i + 1], 'value'));
  } else if (raw !== null && typeof raw === 'object') {
    for (const [k, v] of Object.entries(raw)) fields.set(k, toText(v, 'value'));
  }
  return fields;
}

/** The record, or undefined when the hash is empty (no such subscriber). */
export function parseSubscriber(id: string, fields: Map<string, string>): SubscriberRecord | undefined {
  if (!fields.has('gen')) return undefined;
  const num = (name: string): number => toInt(fields.get(name) ?? '0', name);
  const record: SubscriberRecord = {
    id,
    userId: fields.get('user') ?? '',
    tenantId: fields.get('tenant') ?? '',
    after: num('after'),
    generation: num('gen'),
    checkpoint: num('cp'),
    connected: fields.get('conn') === '1',
    disconnectedAt: num('disc'),
    ended: fields.get('ended') === '1',
  };
  const node = fields.get('node');
  if (node !== undefined) withNode(record, node, num('at'));
  return record;
}
