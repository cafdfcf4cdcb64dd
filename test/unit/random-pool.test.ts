/** Ids draw their bytes from a pooled CSPRNG buffer (src/util/random-pool.ts). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { randomBase64url, randomHex } from '../../src/util/random-pool.ts';
import { randomId } from '../../src/util/ids.ts';

describe('random pool', () => {
  it('gives the asked length, and no value twice across many pool refills', () => {
    const seen = new Set<string>();
    // 10,000 × 12 bytes is about 30 refills of the 4 KiB pool, so draws straddle them
    for (let i = 0; i < 10_000; i++) {
      const id = randomBase64url(12);
      assert.match(id, /^[A-Za-z0-9_-]{16}$/);
      seen.add(id);
    }
    assert.equal(seen.size, 10_000);
    for (let i = 0; i < 1000; i++) assert.match(randomHex(8), /^[0-9a-f]{16}$/);
  });

  it('draws that do not fit the rest of the pool come whole from a refill', () => {
    // odd sizes walk the offset across the pool's end at every alignment
    for (let i = 0; i < 2000; i++) assert.equal(Buffer.from(randomHex(37), 'hex').length, 37);
  });

  it('looks uniform: every byte value turns up, none far off its share', () => {
    const counts = new Array<number>(256).fill(0);
    for (let i = 0; i < 2000; i++) for (const b of Buffer.from(randomHex(64), 'hex')) counts[b]!++;
    // 128,000 bytes: 500 expected per value; ±40 % is more than 8 standard deviations
    for (const c of counts) assert.ok(c > 300 && c < 700, String(c));
  });

  it('refuses a draw larger than the pool', () => {
    assert.throws(() => randomHex(4097), RangeError);
  });

  it('makes connection ids with the prefix and 16 url-safe characters', () => {
    assert.match(randomId('conn'), /^conn_[A-Za-z0-9_-]{16}$/);
    assert.notEqual(randomId('conn'), randomId('conn'));
  });
});
