/**
 * A load-generator process for bench:compare, forked by loadgen/fleet.ts. It holds its
 * share of subscriber connections to one arm through that arm's protocol adapter
 * (client/<kind>.ts over client/raw-ws.ts), and on the hot path does only this per
 * delivery: an order check against the subscriber's last seq, two counters and, inside a
 * measurement window, one histogram record. Everything else happens on IPC requests.
 */
import { performance } from 'node:perf_hooks';
import * as hdr from 'hdr-histogram-js';
import { nowMicros } from '../../lib/wire.ts';
import type { ArmClient, Subscriber } from '../types.ts';
import { makePayload } from '../payload.ts';
import { pings } from '../client/raw-ws.ts';
import { newHistogram } from './histogram.ts';
import {
  emptyTimeline,
  TIMELINE_BUCKET_US,
  type CatchupReply,
  type ConnectReply,
  type FromWorker,
  type Timeline,
  type ToWorker,
  type WorkerInit,
  type WorkerReport,
} from './messages.ts';

interface Sub {
  readonly topic: string;
  client: Subscriber | undefined;
  ready: boolean;
  /** Last seq received; -1 before the first (G starts at the session's head). */
  last: number;
  attempts: number;
  /** False for a warm-up client (`connect` without `hold`), which is closed once ready. */
  kept: boolean;
  /** M5: the seq this subscriber must reach, and whether it did. */
  target: number;
  reachedAt: number;
}

let init: WorkerInit;
let arm: ArmClient;
const subs: Sub[] = [];

// window
let windowOpen = false;
let windowStartUs = 0;
let windowStopUs = 0;
let offsetUs = 0;
let windowDeliveries = 0;
let windowBegan = 0;
let windowPingsFrom = 0;
let latency = newHistogram();
let timeline: Timeline = emptyTimeline(0);
let eluMark = performance.eventLoopUtilization();
let cpuMark = process.cpuUsage();
let cpuMarkAt = performance.now();

// lifetime
let delivered = 0;
let gaps = 0;
let duplicates = 0;
let reconnects = 0;
let recovered = 0;
let freshStarts = 0;
const closes: Record<string, number> = {};
/** Publishes of the echo shape the gateway refused, by nack code. */
const nacks: Record<string, number> = {};

// reconnect policy (M5): off until asked
let backoffBase = 0;
let backoffCap = 0;

// catch-up
let catchupOffset = 0;
let catchupPending = 0;
let catchupDone: (() => void) | undefined;

const send = (message: FromWorker): void => {
  process.send?.(message);
};

function onEvent(sub: Sub, seq: number, sentUs: number): void {
  if (seq === sub.last + 1 || sub.last === -1) {
    sub.last = seq;
  } else if (seq <= sub.last) {
    duplicates++;
    return;
  } else {
    gaps += seq - sub.last - 1;
    sub.last = seq;
  }
  delivered++;
  if (windowOpen) {
    windowDeliveries++;
    if (sentUs >= windowStartUs && sentUs < windowStopUs) {
      const us = nowMicros() + offsetUs - sentUs;
      latency.recordValue(us < 1 ? 1 : us > 600e6 ? 600e6 : us);
      const bucket = ((sentUs - windowStartUs) / TIMELINE_BUCKET_US) | 0;
      timeline.count[bucket]!++;
      timeline.sumUs[bucket]! += us;
      if (us > timeline.maxUs[bucket]!) timeline.maxUs[bucket] = us;
    }
  }
  if (sub.target > 0 && sub.reachedAt === 0 && seq >= sub.target) reached(sub);
}

function reached(sub: Sub): void {
  // absolute (parent clock); the wait request says where the clock starts
  sub.reachedAt = nowMicros() + catchupOffset;
  if (--catchupPending === 0) catchupDone?.();
}

function scheduleReconnect(sub: Sub): void {
  if (backoffBase <= 0) return;
  const ceiling = Math.min(backoffCap, backoffBase * 2 ** Math.min(sub.attempts, 20));
  sub.attempts++;
  setTimeout(() => {
    reconnects++;
    sub.client?.reconnect();
  }, Math.random() * ceiling);
}

function open(sub: Sub, index: number, onFirst: (ok: boolean) => void): void {
  let first = true;
  const addresses = init.localAddresses;
  sub.client = arm.subscribe({
    url: init.url,
    topic: sub.topic,
    ...(addresses.length > 0 ? { localAddress: addresses[index % addresses.length]! } : {}),
    ...(init.token !== undefined ? { token: init.token } : {}),
    ackEvery: init.ackEvery,
    handlers: {
      onReady(wasRecovered) {
        sub.ready = true;
        sub.attempts = 0;
        if (!first) {
          if (wasRecovered) recovered++;
          else freshStarts++;
        }
        if (first) {
          first = false;
          onFirst(true);
        }
      },
      onEvent(seq, sentUs) {
        onEvent(sub, seq, sentUs);
      },
      onClose(code) {
        sub.ready = false;
        if (!sub.kept && !first) return; // a warm-up client, closed by us once ready
        const key = String(code);
        closes[key] = (closes[key] ?? 0) + 1;
        if (first) {
          first = false;
          onFirst(false);
          return;
        }
        scheduleReconnect(sub);
      },
      onNack(code) {
        nacks[code] = (nacks[code] ?? 0) + 1;
      },
    },
  });
}

/** Per subscriber, how many events it published itself (the echo shape). */
const published = new Map<Sub, number>();

async function echo(m: Extract<ToWorker, { op: 'echo' }>): Promise<Extract<FromWorker, { op: 'echoed' }>> {
  const n = subs.length;
  const total = m.ratePerSub * n;
  const count = Math.round(total * m.seconds);
  const intervalUs = 1e6 / total;
  const startUs = nowMicros() + offsetUs; // parent clock
  let sent = 0;
  let inWindow = 0;
  let maxLagMs = 0;
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = nowMicros() + offsetUs;
      const owed = Math.min(count, Math.floor((now - startUs) / intervalUs) + 1);
      while (sent < owed) {
        const dueUs = startUs + sent * intervalUs;
        maxLagMs = Math.max(maxLagMs, (now - dueUs) / 1000);
        if (dueUs >= m.fromUs && dueUs < m.toUs) inWindow++;
        const sub = subs[sent % n]!;
        const seq = (published.get(sub) ?? 0) + 1;
        published.set(sub, seq);
        sub.client?.publish(makePayload(sub.topic, seq, Math.round(dueUs), m.payloadBytes));
        sent++;
      }
      if (sent >= count) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  const behindCount = (): number => subs.filter((s) => s.last < (published.get(s) ?? 0) + m.seqOffset).length;
  const until = performance.now() + m.drainMs;
  let behind = behindCount();
  while (behind > 0 && performance.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    behind = behindCount();
  }
  return { op: 'echoed', id: m.id, sent, inWindow, behind, maxLagMs };
}

async function connect(
  topics: { topic: string; count: number }[],
  concurrency: number,
  timeoutMs: number,
  hold: boolean,
): Promise<ConnectReply> {
  const fresh: Sub[] = [];
  for (const { topic, count } of topics) {
    for (let i = 0; i < count; i++)
      fresh.push({
        topic,
        client: undefined,
        ready: false,
        kept: hold,
        last: -1,
        attempts: 0,
        target: 0,
        reachedAt: 0,
      });
  }
  const handshake = newHistogram();
  const began = performance.now();
  let next = 0;
  let ready = 0;
  let failed = 0;
  const deadline = began + timeoutMs;
  await new Promise<void>((resolve) => {
    let inFlight = 0;
    const pump = (): void => {
      while (inFlight < concurrency && next < fresh.length && performance.now() < deadline) {
        const sub = fresh[next]!;
        const index = subs.length + next;
        next++;
        inFlight++;
        const t0 = performance.now();
        open(sub, index, (ok) => {
          inFlight--;
          if (ok) {
            ready++;
            handshake.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
            if (!hold) sub.client?.close();
          } else failed++;
          if (ready + failed === fresh.length || (next >= fresh.length && inFlight === 0)) resolve();
          else pump();
        });
      }
      if (performance.now() >= deadline && inFlight === 0) resolve();
    };
    pump();
    setTimeout(resolve, timeoutMs + 1000).unref();
  });
  if (hold) subs.push(...fresh.slice(0, next));
  return {
    ready,
    failed: failed + (fresh.length - next),
    ms: performance.now() - began,
    handshake: hdr.encodeIntoCompressedBase64(handshake),
  };
}

function report(): WorkerReport {
  const now = performance.now();
  const elu = performance.eventLoopUtilization(eluMark).utilization;
  const cpu = process.cpuUsage(cpuMark);
  const lastSeq: WorkerReport['lastSeq'] = {};
  let ready = 0;
  for (const sub of subs) {
    if (sub.ready) ready++;
    const entry = (lastSeq[sub.topic] ??= { min: Number.POSITIVE_INFINITY, max: -1 });
    if (sub.last < entry.min) entry.min = sub.last;
    if (sub.last > entry.max) entry.max = sub.last;
  }
  return {
    subscribers: subs.length,
    ready,
    windowDeliveries,
    windowMs: now - windowBegan,
    windowPings: pings.received - windowPingsFrom,
    latency: hdr.encodeIntoCompressedBase64(latency),
    timeline,
    delivered,
    gaps,
    duplicates,
    closes: { ...closes },
    nacks: { ...nacks },
    reconnects,
    lastSeq,
    elu,
    cpuPercent: ((cpu.user + cpu.system) / 1000 / (now - cpuMarkAt)) * 100,
  };
}

async function handle(message: ToWorker): Promise<FromWorker> {
  switch (message.op) {
    case 'init': {
      init = message.init;
      const module = (await import(`../client/${init.kind}.ts`)) as { default: ArmClient };
      arm = module.default;
      return { op: 'ok', id: message.id };
    }
    case 'clock':
      return { op: 'clock', id: message.id, us: nowMicros() };
    case 'connect':
      return {
        op: 'connected',
        id: message.id,
        reply: await connect(message.topics, message.concurrency, message.timeoutMs, message.hold),
      };
    case 'window':
      windowOpen = true;
      windowStartUs = message.startUs;
      windowStopUs = message.stopUs;
      offsetUs = message.offsetUs;
      windowDeliveries = 0;
      windowBegan = performance.now();
      windowPingsFrom = pings.received;
      latency = newHistogram();
      timeline = emptyTimeline(Math.ceil((windowStopUs - windowStartUs) / TIMELINE_BUCKET_US));
      eluMark = performance.eventLoopUtilization();
      cpuMark = process.cpuUsage();
      cpuMarkAt = performance.now();
      return { op: 'ok', id: message.id };
    case 'report':
      return { op: 'report', id: message.id, report: report() };
    case 'policy':
      backoffBase = message.baseMs;
      backoffCap = message.capMs;
      return { op: 'ok', id: message.id };
    case 'catchup': {
      catchupOffset = message.offsetUs;
      catchupPending = 0;
      recovered = 0;
      freshStarts = 0;
      for (const sub of subs) {
        sub.target = message.target[sub.topic] ?? 0;
        sub.reachedAt = 0;
        if (sub.target > 0) catchupPending++;
      }
      return { op: 'ok', id: message.id };
    }
    case 'catchup-wait': {
      if (catchupPending > 0) {
        await new Promise<void>((resolve) => {
          catchupDone = resolve;
          setTimeout(resolve, message.timeoutMs).unref();
        });
      }
      catchupDone = undefined;
      const times = newHistogram();
      let maxUs = 0;
      let total = 0;
      let caughtUp = 0;
      for (const sub of subs) {
        if (sub.target <= 0) continue;
        total++;
        if (sub.reachedAt === 0) continue;
        caughtUp++;
        const us = Math.min(600e6, Math.max(1, sub.reachedAt - message.t0Us));
        times.recordValue(us);
        if (us > maxUs) maxUs = us;
      }
      const reply: CatchupReply = {
        total,
        caughtUp,
        times: hdr.encodeIntoCompressedBase64(times),
        maxUs,
        recovered,
        freshStarts,
      };
      for (const sub of subs) sub.target = 0;
      return { op: 'catchup', id: message.id, reply };
    }
    case 'echo':
      return echo(message);
    case 'bytes': {
      let read = 0;
      let written = 0;
      for (const sub of subs) {
        const b = sub.client?.bytes();
        if (b) {
          read += b.read;
          written += b.written;
        }
      }
      return { op: 'bytes', id: message.id, read, written };
    }
    case 'close':
      backoffBase = 0;
      for (const sub of subs) sub.client?.close();
      setTimeout(() => process.exit(0), 200).unref();
      return { op: 'ok', id: message.id };
  }
}

process.on('message', (message: ToWorker) => {
  handle(message).then(send, (err: unknown) =>
    send({ op: 'error', id: message.id, message: err instanceof Error ? err.message : String(err) }),
  );
});
process.on('disconnect', () => process.exit(0));
