/**
 * The session's event cache and the node-wide budget that bounds all of them together:
 * what each holds after pushes, evictions and restarts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CacheBudget, MIN_ENTRY_BYTES } from '../../src/session/cache-budget.ts';
import { EncodedEvent, EventCache, RecentReads } from '../../src/session/event-cache.ts';
import type { Envelope } from '../../src/protocol/envelope.ts';

/** A small event; every one costs the budget the same (COST: the least an entry counts as). */
const ev = (seq: number): EncodedEvent =>
  new EncodedEvent({ seq, event: { eventId: `e${String(seq).padStart(8, '0')}` } as unknown as Envelope });
const COST = MIN_ENTRY_BYTES;
assert.ok(ev(1).heapBytes <= COST && ev(99_999).heapBytes <= COST);

/** The seqs a cache answers for, from `from` to `to`. */
const held = (cache: EventCache, from: number, to: number): number[] => {
  const seqs: number[] = [];
  for (let seq = from; seq <= to; seq++) if (cache.get(seq)?.seq === seq) seqs.push(seq);
  return seqs;
};

const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('EventCache', () => {
  it('keeps the last `capacity` events, growing its ring past the initial size on the way', () => {
    const cache = new EventCache(100);
    for (let seq = 1; seq <= 250; seq++) cache.push(ev(seq));
    assert.equal(cache.size, 100);
    assert.equal(cache.lastSeq, 250);
    assert.deepEqual(held(cache, 1, 260), range(151, 250));
  });

  it('keeps what it held across a growth, whatever seq it started at', () => {
    const cache = new EventCache(64);
    for (let seq = 1001; seq <= 1040; seq++) cache.push(ev(seq));
    assert.deepEqual(held(cache, 990, 1050), range(1001, 1040));
  });

  it('ignores a seq it holds, and restarts on a seq that does not follow', () => {
    const cache = new EventCache(8);
    for (let seq = 1; seq <= 5; seq++) cache.push(ev(seq));
    cache.push(ev(3));
    assert.equal(cache.size, 5);
    cache.push(ev(9));
    assert.deepEqual(held(cache, 1, 10), [9]);
  });

  it('evicts only its oldest event, and only while it still holds it', () => {
    const cache = new EventCache(8);
    for (let seq = 1; seq <= 4; seq++) cache.push(ev(seq));
    cache.evictCached(3); // not the oldest: kept
    cache.evictCached(1);
    assert.deepEqual(held(cache, 1, 5), [2, 3, 4]);
    cache.push(ev(5));
    assert.deepEqual(held(cache, 1, 6), [2, 3, 4, 5]);
  });
});

/** A budget with room for `events` test events. */
const budgetOf = (events: number): CacheBudget => new CacheBudget(events * COST);

describe('CacheBudget', () => {
  it('bounds the events of every cache together, evicting the least recently cached first', () => {
    const budget = budgetOf(10);
    const a = new EventCache(1024, budget);
    const b = new EventCache(1024, budget);
    for (let seq = 1; seq <= 6; seq++) a.push(ev(seq));
    for (let seq = 1; seq <= 6; seq++) b.push(ev(seq));
    // 12 cached, room for 10: a's two oldest went
    assert.deepEqual(held(a, 1, 6), range(3, 6));
    assert.deepEqual(held(b, 1, 6), range(1, 6));
    for (let seq = 7; seq <= 10; seq++) a.push(ev(seq));
    assert.equal(a.size + b.size, 10);
    assert.deepEqual(held(a, 1, 10), range(7, 10));
    assert.deepEqual(held(b, 1, 6), range(1, 6));
  });

  it('counts what each event costs: a large one evicts as many small ones as it needs', () => {
    const budget = new CacheBudget(10_000);
    const owner = { evicted: [] as number[], evictCached: (seq: number) => void owner.evicted.push(seq) };
    for (let seq = 1; seq <= 10; seq++) budget.cached(owner, seq, 1000);
    assert.deepEqual(owner.evicted, []);
    budget.cached(owner, 11, 3500);
    assert.deepEqual(owner.evicted, [1, 2, 3, 4]);
    assert.equal(budget.bytes, 9500);
    budget.cached(owner, 12, 10); // counted as the least an entry costs, and 9500 + 512 does not fit
    assert.deepEqual(owner.evicted, [1, 2, 3, 4, 5]);
    assert.equal(budget.bytes, 8500 + MIN_ENTRY_BYTES);
    budget.cached(owner, 13, 50_000); // larger than the budget: held alone
    assert.equal(budget.entries, 1);
    assert.equal(budget.bytes, 50_000);
  });

  it('never holds more than its bytes while caches also drop events on their own', () => {
    const budget = budgetOf(50);
    const caches = Array.from({ length: 7 }, (_, i) => new EventCache(3 + i * 5, budget));
    const next = caches.map(() => 1);
    for (let round = 0; round < 2000; round++) {
      const i = (round * 7919) % caches.length;
      // now and then a session restarts (a new epoch): its cache starts over
      if (round % 97 === 0) next[i] = 1;
      caches[i]!.push(ev(next[i]!++));
      const total = caches.reduce((sum, c) => sum + c.size, 0);
      assert.ok(total <= 50, `round ${round}: ${total} cached`);
      assert.ok(budget.bytes <= 50 * COST);
      caches.forEach((c) => {
        const last = c.lastSeq;
        if (last !== undefined) assert.equal(held(c, last - c.size + 1, last).length, c.size, 'contiguous');
      });
    }
  });

  it('evicts from RecentReads too', () => {
    const budget = budgetOf(3);
    const reads = new RecentReads(100, budget);
    for (const seq of [10, 11, 12, 13]) reads.share(ev(seq));
    assert.equal(reads.get(10), undefined);
    assert.equal(reads.get(13)?.seq, 13);
  });

  it('refuses a budget smaller than one entry', () => {
    assert.throws(() => new CacheBudget(MIN_ENTRY_BYTES - 1), RangeError);
  });
});
