/**
 * A benchmark load-generator process (forked by bench/smoke.ts): opens its share of the
 * subscriber sockets on one session, acks cumulatively, checks seq order, and measures
 * publish → deliver latency of every event into a histogram it ships to the parent.
 * All commands and results go over the IPC channel (lib/messages.ts).
 */
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { jsonCodec, msgpackCodec } from '../src/codec/index.ts';
import { Histogram } from './lib/histogram.ts';
import type { ConnectResult, FromWorker, ToWorker, WindowReport, WorkerInit } from './lib/messages.ts';
import { jsonEvSeq, msgpackEvSeq, nowMicros, readStamp, stampOfText } from './lib/wire.ts';

interface Sub {
  ws: WebSocket;
  live: boolean;
  lastSeq: number;
  ackedSeq: number;
  lastEventAt: number;
}

const send = (message: FromWorker): void => {
  process.send?.(message);
};

let init: WorkerInit | undefined;
const subs: Sub[] = [];
let maxInFlight = 256;
let ackThreshold = 32;

// measurement window state
let windowOpen = false;
let markUs = Number.POSITIVE_INFINITY;
let stopUs = Number.POSITIVE_INFINITY;
let offsetUs = 0;
let windowStartMs = 0;
let windowMs = 0;
let windowDeliveries = 0;
/** How late (ms) the `mark` arrived after the window should have opened; > 0 loses samples. */
let markLateMs = 0;
let lateDeliveries = 0;
const latency = new Histogram();
let eluStart = performance.eventLoopUtilization();
let cpuStart = process.cpuUsage();
let elu = Number.NaN;
let cpuPercent = Number.NaN;

// lifetime counters
let gaps = 0;
let duplicates = 0;
let acksSent = 0;
const errorFrames: Record<string, number> = {};
const closes: Record<string, number> = {};

function bump(counter: Record<string, number>, key: string): void {
  counter[key] = (counter[key] ?? 0) + 1;
}

function encodeAck(seq: number): string | Uint8Array {
  return init!.codec === 'json' ? `{"op":"ack","seq":${seq}}` : msgpackCodec.encode({ op: 'ack', seq });
}

function ack(sub: Sub): void {
  if (sub.lastSeq <= sub.ackedSeq || sub.ws.readyState !== WebSocket.OPEN) return;
  sub.ackedSeq = sub.lastSeq;
  sub.ws.send(encodeAck(sub.lastSeq));
  acksSent++;
}

/** One delivered event: order check, window counters, latency, cumulative ack. */
function onEvent(sub: Sub, seq: number, stamp: number): void {
  if (seq === sub.lastSeq + 1 || sub.lastSeq === -1) {
    sub.lastSeq = seq;
  } else if (seq <= sub.lastSeq) {
    duplicates++;
    return;
  } else {
    gaps++;
    sub.lastSeq = seq;
  }
  const now = nowMicros();
  sub.lastEventAt = now;
  if (windowOpen) windowDeliveries++;
  if (stamp >= markUs && stamp <= stopUs) {
    latency.record(now - offsetUs - stamp);
    if (!windowOpen) lateDeliveries++;
  }
  if (sub.lastSeq - sub.ackedSeq >= ackThreshold) ack(sub);
}

function onControl(sub: Sub, frame: any): void {
  switch (frame?.op) {
    case 'welcome':
      sub.live = true;
      sub.lastSeq = frame.after;
      sub.ackedSeq = frame.after;
      maxInFlight = frame.maxInFlight;
      ackThreshold = Math.max(1, Math.min(init!.ackEvery, Math.floor(maxInFlight / 2)));
      return;
    case 'replayed':
      ack(sub);
      return;
    case 'ev': {
      const seq: number = frame.seq;
      onEvent(sub, seq, stampOfText(frame.event?.payload?.text));
      return;
    }
    case 'error':
      bump(errorFrames, String(frame.code));
      return;
    default:
      return;
  }
}

function onMessage(sub: Sub, data: Buffer): void {
  const { codec, parse } = init!;
  if (parse === 'fast') {
    const seq = codec === 'json' ? jsonEvSeq(data) : msgpackEvSeq(data);
    if (seq >= 0) return onEvent(sub, seq, readStamp(data, 16));
  }
  const frame = codec === 'json' ? jsonCodec.decode(data) : msgpackCodec.decode(data);
  onControl(sub, frame);
}

function open(index: number, handshake: Histogram): Promise<string | undefined> {
  const { wsUrl, codec, token, sessionId } = init!;
  const subprotocol = codec === 'json' ? 'lifeos.v1.json' : 'lifeos.v1.msgpack';
  return new Promise((resolve) => {
    const started = nowMicros();
    const ws = new WebSocket(wsUrl, subprotocol, {
      perMessageDeflate: false,
      skipUTF8Validation: true,
      handshakeTimeout: 15_000,
    });
    const sub: Sub = { ws, live: false, lastSeq: -1, ackedSeq: 0, lastEventAt: 0 };
    let settled = false;
    const settle = (error?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(error);
    };
    const timer = setTimeout(() => settle(`subscriber ${index}: no welcome in 20 s`), 20_000);
    ws.on('open', () => {
      const hello = { op: 'hello', sessionId, token, after: 'latest' };
      ws.send(codec === 'json' ? JSON.stringify(hello) : msgpackCodec.encode(hello));
    });
    ws.on('message', (data: Buffer) => {
      onMessage(sub, data);
      if (!settled && sub.live) {
        handshake.record(nowMicros() - started);
        subs.push(sub);
        settle();
      }
    });
    ws.on('close', (code) => {
      if (sub.live) bump(closes, String(code));
      sub.live = false;
      settle(`subscriber ${index}: closed ${code} before welcome`);
    });
    ws.on('error', (err) => settle(`subscriber ${index}: ${err.message}`));
  });
}

async function connectAll(): Promise<ConnectResult> {
  const { subscribers, connectConcurrency } = init!;
  const handshake = new Histogram();
  const errors: string[] = [];
  const started = performance.now();
  let next = 0;
  let failed = 0;
  const lane = async (): Promise<void> => {
    while (next < subscribers) {
      const error = await open(next++, handshake);
      if (error) {
        failed++;
        if (errors.length < 5) errors.push(error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, connectConcurrency) }, lane));
  return {
    t: 'connected',
    ok: subs.length,
    failed,
    errors,
    maxInFlight,
    durationMs: performance.now() - started,
    handshake: handshake.snapshot(),
  };
}

// Acks for quiet sockets (the tail of a burst), so flow control never stalls them.
const idleAcks = setInterval(() => {
  const quietSince = nowMicros() - 100_000;
  for (const sub of subs) if (sub.lastSeq > sub.ackedSeq && sub.lastEventAt < quietSince) ack(sub);
}, 250);
idleAcks.unref();

function drain(seq: number, timeoutMs: number): void {
  const deadline = performance.now() + timeoutMs;
  const check = (): void => {
    let behind = 0;
    let minSeq = Number.POSITIVE_INFINITY;
    for (const sub of subs) {
      if (sub.lastSeq < seq) behind++;
      if (sub.lastSeq < minSeq) minSeq = sub.lastSeq;
    }
    if (behind === 0 || performance.now() >= deadline) {
      send({ t: 'drained', behind, minSeq: subs.length ? minSeq : -1 });
      return;
    }
    setTimeout(check, 10);
  };
  check();
}

function report(): WindowReport {
  return {
    t: 'report',
    workerId: init!.workerId,
    windowDeliveries,
    windowMs,
    markLateMs,
    lateDeliveries,
    latency: latency.snapshot(),
    gaps,
    duplicates,
    acksSent,
    errorFrames,
    closes,
    elu,
    cpuPercent,
    rss: process.memoryUsage.rss(),
  };
}

process.on('message', (message: ToWorker) => {
  switch (message.t) {
    case 'init':
      init = message;
      return send({ t: 'ready' });
    case 'clock':
      return send({ t: 'clock', id: message.id, workerUs: nowMicros() });
    case 'connect':
      void connectAll().then(send, (err: unknown) => send({ t: 'fatal', message: String(err) }));
      return;
    case 'mark': {
      // Latency is kept for every event stamped at or after markUs from now on; the
      // delivery count and CPU/ELU window open at markUs (in this worker's clock).
      markUs = message.markUs;
      stopUs = Number.POSITIVE_INFINITY;
      offsetUs = message.offsetUs;
      latency.reset();
      const open = (): void => {
        windowDeliveries = 0;
        lateDeliveries = 0;
        windowStartMs = performance.now();
        eluStart = performance.eventLoopUtilization();
        cpuStart = process.cpuUsage();
        windowOpen = true;
      };
      const waitMs = (markUs + offsetUs - nowMicros()) / 1000;
      markLateMs = Math.max(0, -waitMs);
      if (waitMs > 0) setTimeout(open, waitMs);
      else open();
      return send({ t: 'marked' });
    }
    case 'stop': {
      windowOpen = false;
      stopUs = message.stopUs;
      windowMs = performance.now() - windowStartMs;
      elu = performance.eventLoopUtilization(eluStart).utilization;
      const cpu = process.cpuUsage(cpuStart);
      cpuPercent = ((cpu.user + cpu.system) / 1000 / windowMs) * 100;
      return send({ t: 'stopped' });
    }
    case 'drain':
      return drain(message.seq, message.timeoutMs);
    case 'report':
      return send(report());
    case 'close':
      for (const sub of subs) sub.ws.close(1000, 'bench done');
      send({ t: 'closed' });
      setTimeout(() => process.exit(0), 200).unref();
      return;
  }
});

// The parent went away (ctrl-c, crash): do not linger with a thousand sockets open.
process.on('disconnect', () => process.exit(0));
