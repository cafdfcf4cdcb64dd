/**
 * What one cached event costs the heap (for NODE_CACHE_BYTES, docs/operations.md):
 * N events built as the publish path builds them (a `pub` frame decoded, checked into an
 * envelope, its JSON text made for the engine, its `ev` frame encoded for the fan-out),
 * held in EventCaches of 5,000 sessions, then the heap and external bytes measured after
 * full GCs, against the same process before.
 *
 *   node --expose-gc --import tsx bench/tools/cached-event-heap.ts [EVENTS=100000] [PAYLOAD_BYTES=100]
 */
import { jsonCodec } from '../../src/codec/json-codec.ts';
import { parseClientFrame } from '../../src/protocol/frames.ts';
import { envelopeText } from '../../src/protocol/envelope-text.ts';
import { eventFromPub } from '../../src/session/client-event.ts';
import { EncodedEvent, EventCache } from '../../src/session/event-cache.ts';

const events = Number(process.argv[2] ?? 100_000);
const payloadBytes = Number(process.argv[3] ?? 100);
const SESSIONS = 5000;
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

const measure = (): number => {
  gc();
  gc();
  const { heapUsed, external } = process.memoryUsage();
  return heapUsed + external;
};

const caches = Array.from({ length: SESSIONS }, () => new EventCache(1024));
const seqs = new Array<number>(SESSIONS).fill(0);
const text = 'x'.repeat(payloadBytes);
const before = measure();
for (let i = 0; i < events; i++) {
  const s = i % SESSIONS;
  const frame = JSON.parse(
    JSON.stringify({
      op: 'pub',
      id: `evt-${i}-${s}`,
      type: 'transcript.final',
      payload: { segmentId: `seg-${i}`, revision: 0, text },
    }),
  );
  const parsed = parseClientFrame(frame);
  if (!parsed.ok || parsed.frame.op !== 'pub') throw new Error(parsed.ok ? 'not a pub' : parsed.message);
  const event = eventFromPub(parsed.frame, `ses_${s}`, 'agent', Date.now());
  envelopeText(event);
  const seq = ++seqs[s]!;
  const cached = new EncodedEvent({ seq, event });
  cached.bytes(jsonCodec);
  caches[s]!.push(cached);
}
const after = measure();
const held = caches.reduce((n, c) => n + c.size, 0);
let estimated = 0;
caches.forEach((cache, s) => {
  for (let seq = 1; seq <= seqs[s]!; seq++) estimated += cache.get(seq)?.heapBytes ?? 0;
});
console.log(
  `${held} cached events (${SESSIONS} sessions, ${payloadBytes} B payload text): ` +
    `${((after - before) / held).toFixed(0)} bytes each (heap + external, after GC); ` +
    `EncodedEvent#heapBytes estimates ${(estimated / held).toFixed(0)}`,
);
