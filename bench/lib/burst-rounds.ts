import WebSocket from 'ws';
import type { GatewayProcess } from '../../chaos/toolkit/gateway-process.ts';

/**
 * Rounds of "a first hello on node B while node A stores a burst": the race of session 22
 * end to end (bench/tools/notice-loss.ts, test/multinode/notice-during-load.test.ts).
 *
 * Each round: a fresh subscriber says hello on B from the current head; 0–maxDelayMs
 * after its socket opened, a publisher on A sends `burst` publishes back to back (stored
 * by one append, with one notice). Once A acknowledged them, the subscriber on B must
 * receive the last one; a round where it has not within `missAfterMs` is a miss (nothing
 * is published after the burst, so nothing else would tell B). Then the subscriber
 * closes, so the next hello finds B without a connection to the session and its actor
 * reads the head anew.
 */
export interface BurstRoundsOptions {
  a: GatewayProcess;
  b: GatewayProcess;
  sessionId: string;
  /** A token that may publish and subscribe (role agent). */
  token: string;
  rounds: number;
  burst: number;
  maxDelayMs: number;
  missAfterMs: number;
}

export interface BurstRoundsResult {
  misses: number;
  /** The first few misses: `round N: held X of Y`. */
  missedAt: string[];
}

type Frame = { op: string; seq?: number };

export async function burstRounds(o: BurstRoundsOptions): Promise<BurstRoundsResult> {
  const connect = (gw: GatewayProcess, after: number | 'latest', onFrame: (f: Frame) => void) => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/v1/realtime`, ['lifeos.v1.json']);
    ws.on('open', () =>
      ws.send(JSON.stringify({ op: 'hello', sessionId: o.sessionId, token: o.token, after })),
    );
    ws.on('message', (data) => onFrame(JSON.parse((data as Buffer).toString()) as Frame));
    return ws;
  };

  let head = 0;
  let pubacks = 0;
  let ready = false;
  const publisher = connect(o.a, 'latest', (f) => {
    if (f.op === 'welcome') ready = true;
    if (f.op === 'puback') {
      pubacks++;
      head = Math.max(head, f.seq ?? 0);
    }
  });
  if (!(await until(() => ready, 5000))) throw new Error('the publisher was not welcomed');

  let n = 0;
  let misses = 0;
  const missedAt: string[] = [];
  try {
    for (let round = 0; round < o.rounds; round++) {
      let held = head;
      let welcomed = false;
      const sub = connect(o.b, head, (f) => {
        if (f.op === 'welcome') welcomed = true;
        if (f.op === 'ev') held = f.seq ?? held;
      });
      await new Promise<void>((resolve) => sub.once('open', () => resolve()));
      const expected = pubacks + o.burst;
      setTimeout(() => {
        for (let i = 0; i < o.burst; i++) {
          publisher.send(pubFrame(++n));
        }
      }, Math.random() * o.maxDelayMs);
      if (!(await until(() => pubacks >= expected && welcomed, 5000)))
        throw new Error(`round ${round}: the burst was not acknowledged, or B did not welcome`);
      if (!(await until(() => held >= head, o.missAfterMs))) {
        misses++;
        if (missedAt.length < 5) missedAt.push(`round ${round}: held ${held} of ${head}`);
      }
      await new Promise<void>((resolve) => {
        sub.once('close', () => resolve());
        sub.close(1000);
      });
    }
  } finally {
    publisher.close();
  }
  return { misses, missedAt };
}

/** The JSON `pub` frame of the n-th publish of a run: eventId `e<n>`, a one-letter partial. */
export function pubFrame(n: number): string {
  return JSON.stringify({
    op: 'pub',
    id: `e${n}`,
    type: 'transcript.partial',
    payload: { segmentId: `g${n}`, revision: 0, text: 'x' },
  });
}

async function until(done: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
  return done();
}
