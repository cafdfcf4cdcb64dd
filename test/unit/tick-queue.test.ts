/**
 * TickQueue on its own, with a `send` the test answers by hand: what goes out in a round,
 * in which chunks, and what waits for the next round.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TickQueue, type QueuedCall, type TickQueueOptions } from '../../src/engine/redis/tick-queue.ts';

interface Item extends QueuedCall {
  n: number;
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Waits (polling, at most 5 s) until `done` holds. */
async function until(done: () => boolean): Promise<void> {
  for (const deadline = Date.now() + 5_000; !done();) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A queue whose sent chunks wait in `pending` until the test answers them. */
function harness(options: Partial<TickQueueOptions<Item>> = {}) {
  const sent: number[][] = [];
  const pending: (() => void)[] = [];
  /** Every chunk's resolver, by the order it was sent in. */
  const resolvers: (() => void)[] = [];
  const queue = new TickQueue<Item>({
    send: (chunk) => {
      sent.push(chunk.map((item) => item.n));
      return new Promise<void>((resolve) => {
        pending.push(resolve);
        resolvers.push(resolve);
      });
    },
    maxItems: 4,
    maxWeight: 4,
    perSession: false,
    ...options,
  });
  let n = 0;
  const push = (sessionId = 's', weight = 1) => queue.push({ sessionId, weight, n: n++ });
  /** Answers every chunk sent so far, then lets the queue start its next round. */
  const answerAll = async () => {
    for (const resolve of pending.splice(0)) resolve();
    await turn();
    await turn();
  };
  /** Answers the chunk sent `index`-th (0: the first ever sent), then lets a turn pass. */
  const answer = async (index: number) => {
    resolvers[index]!();
    await turn();
    await turn();
  };
  return { queue, sent, pending, push, answerAll, answer };
}

describe('TickQueue', () => {
  it('sends a turn of calls after the turn, in chunks of maxItems, all in one round', async () => {
    const h = harness();
    for (let i = 0; i < 10; i++) h.push();
    assert.deepEqual(h.sent, [], 'nothing before the turn ends');
    await turn();
    assert.deepEqual(h.sent, [
      [0, 1, 2, 3],
      [4, 5, 6, 7],
      [8, 9],
    ]);
  });

  it('holds what is pushed during a round until the whole round is answered (group commit)', async () => {
    const h = harness();
    h.push();
    await turn();
    h.push();
    h.push();
    await turn();
    assert.deepEqual(h.sent, [[0]]);
    await h.answerAll();
    assert.deepEqual(h.sent, [[0], [1, 2]]);
  });

  it('closes a chunk before the item that would take it over maxWeight, unless it is alone', async () => {
    const h = harness();
    h.push('s', 3);
    h.push('s', 2);
    h.push('s', 9);
    h.push('s', 1);
    await turn();
    assert.deepEqual(h.sent, [[0], [1], [2], [3]]);
  });

  it('paces rounds to maxRoundItems: the rest, and anything pushed meanwhile, waits in order', async () => {
    const h = harness({ maxRoundItems: 4 });
    for (let i = 0; i < 10; i++) h.push();
    await turn();
    assert.deepEqual(h.sent, [[0, 1, 2, 3]], 'one chunk per round');
    h.push(); // 10: after the 6 still queued
    await h.answerAll();
    assert.deepEqual(h.sent.at(-1), [4, 5, 6, 7]);
    await h.answerAll();
    assert.deepEqual(h.sent.at(-1), [8, 9, 10]);
    await h.answerAll();
    assert.equal(h.sent.length, 3);
  });

  it('flush sends everything queued at once, past the pace and a round in flight', async () => {
    const h = harness({ maxRoundItems: 4 });
    for (let i = 0; i < 10; i++) h.push();
    await turn();
    h.queue.flush();
    assert.deepEqual(h.sent, [
      [0, 1, 2, 3],
      [4, 5, 6, 7],
      [8, 9],
    ]);
  });

  it('on a cluster, each session is a lane: a chunk holds one session, and a session waits only for its own round', async () => {
    const h = harness({ perSession: true });
    for (const sid of ['a', 'b', 'a', 'c', 'b', 'a']) h.push(sid);
    await turn();
    // one round per session, in order of first appearance: a a a | b b | c
    assert.deepEqual(h.sent, [[0, 2, 5], [1, 4], [3]]);
    h.push('a'); // 6
    h.push('b'); // 7
    h.push('d'); // 8
    await turn();
    assert.deepEqual(h.sent.slice(3), [[8]], "a and b wait for their rounds, d for nobody's");
    // b's round comes back while a's is still out (a master that stalls): b goes on alone
    await h.answer(1);
    assert.deepEqual(h.sent.slice(4), [[7]]);
    await h.answer(0);
    assert.deepEqual(h.sent.slice(5), [[6]]);
  });

  it('on a cluster, a paced queue keeps at most maxRoundItems in flight over all its sessions', async () => {
    const h = harness({ perSession: true, maxRoundItems: 4 });
    for (let i = 0; i < 3; i++) h.push('a'); // 0-2
    for (let i = 0; i < 3; i++) h.push('b'); // 3-5
    h.push('c'); // 6
    await turn();
    assert.deepEqual(h.sent, [[0, 1, 2], [3]], 'the budget ends inside b');
    h.push('a'); // 7
    await h.answer(1); // b's chunk back: room for 1, and c has waited longest
    assert.deepEqual(h.sent.slice(2), [[6]]);
    await h.answer(0); // a's back: room for 3, b's rest first, then a's new one
    assert.deepEqual(h.sent.slice(3), [[4, 5], [7]]);
    await h.answerAll();
    assert.equal(h.sent.length, 5);
  });
  it('on a cluster, a chunk out for stallMs stops holding the budget, and counts nothing when it comes back', async () => {
    const h = harness({ perSession: true, maxRoundItems: 2, stallMs: 40 });
    h.push('stalled');
    h.push('stalled'); // 0-1: its master will not answer for a while
    h.push('b'); // 2
    await turn();
    assert.deepEqual(h.sent, [[0, 1]], 'the budget is full');
    const start = performance.now();
    await until(() => h.sent.length === 2);
    assert.ok(performance.now() - start >= 30, 'b waited for the stall, not less');
    assert.deepEqual(h.sent[1], [2], 'b went out while the stalled chunk was still out');
    h.push('c'); // 3
    h.push('d'); // 4
    await turn();
    assert.deepEqual(h.sent.slice(2), [[3]], 'b and c fill the budget: d waits');
    await h.answer(0); // the stalled chunk comes back: it no longer counted, so it frees nothing
    assert.equal(h.sent.length, 3, 'd still waits');
    await h.answer(1); // b's back: room for d
    assert.deepEqual(h.sent.slice(3), [[4]]);
    await h.answerAll();
  });

  it('without stallMs, a chunk out holds its share of the budget until it is answered', async () => {
    const h = harness({ perSession: true, maxRoundItems: 1 });
    h.push('stalled'); // 0
    h.push('b'); // 1
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.deepEqual(h.sent, [[0]]);
    await h.answer(0);
    assert.deepEqual(h.sent.slice(1), [[1]]);
    await h.answerAll();
  });

  it('sends the calls of a session in `alone` as chunks of their own, in order, and the rest together', async () => {
    const alone = new Set(['bad']);
    const h = harness({ alone });
    h.push('a');
    h.push('bad');
    h.push('b');
    h.push('bad');
    h.push('c');
    await turn();
    assert.deepEqual(h.sent, [[1], [3], [0, 2, 4]]);
    await h.answerAll();
    alone.clear();
    h.push('a');
    h.push('bad');
    await turn();
    assert.deepEqual(h.sent.slice(3), [[5, 6]], 'batched again once it is out of `alone`');
  });
});
