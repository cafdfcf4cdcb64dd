/**
 * What the receive side of a `pub` frame costs the gateway's process, per frame (issue 6):
 * the JSON decode, the frame schema and the event's schema — the path of every published
 * event, with the frame the bench clients send (`transcript.partial`, a 100-byte text).
 * Prints the median CPU per frame over the rounds after the first quarter, and how many
 * young-generation collections the run took: run it on two builds to compare them.
 *
 *   npx tsx bench/tools/validate-cost.ts [FRAMES=200000] [ROUNDS=20]
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { cpuUsage } from 'node:process';
import { jsonCodec } from '../../src/codec/json-codec.ts';
import { parseClientFrame, type PubFrame } from '../../src/protocol/frames.ts';
import { eventFromPub } from '../../src/session/client-event.ts';

const frames = Number(process.argv[2] ?? 200_000);
const rounds = Number(process.argv[3] ?? 20);
const text = 'x'.repeat(100);
const encoder = new TextEncoder();
const wire = Array.from(
  { length: 64 },
  (_, n) =>
    encoder.encode(
      `{"op":"pub","id":"e${n}","type":"transcript.partial","payload":{"segmentId":"seg-${n >>> 6}",` +
        `"revision":${n},"text":${JSON.stringify(text)}}}`,
    ).buffer,
);

let scavenges = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries())
    if ((entry as { detail?: { kind?: number } }).detail?.kind === 1) scavenges++;
}).observe({ entryTypes: ['gc'] });

let sink = 0;
const samples: number[] = [];
for (let r = 0; r < rounds; r++) {
  const before = cpuUsage();
  for (let i = 0; i < frames; i++) {
    const parsed = parseClientFrame(jsonCodec.decode(wire[i & 63]!));
    if (!parsed.ok) throw new Error(parsed.message);
    // the clock moves 1 ms per 16 frames: a busy gateway stamps many publishes per ms
    const now = 1_764_400_000_000 + (i >>> 4);
    const event = eventFromPub(parsed.frame as PubFrame, 'bench-session', 'agent', now);
    sink += event.eventId.length;
  }
  const used = cpuUsage(before);
  samples.push(((used.user + used.system) * 1000) / frames);
}
await new Promise((resolve) => setTimeout(resolve, 10)); // let the gc observer report
const sorted = samples.slice(rounds / 4).sort((a, b) => a - b);
console.log(
  `pub receive: median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(0)} ns of process CPU per frame ` +
    `(${frames} frames × ${rounds} rounds, ${scavenges} scavenges, check ${sink > 0 ? 'ok' : '?'})`,
);
