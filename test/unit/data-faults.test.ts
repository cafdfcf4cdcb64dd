/**
 * DataFaults: which sessions' engine calls go alone after Redis refused one for their
 * data, for how long, and how many are remembered.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DATA_FAULT_QUARANTINE_MS, DataFaults } from '../../src/engine/redis/data-faults.ts';
import { ManualClock } from '../../src/util/clock.ts';

describe('DataFaults', () => {
  it('quarantines a session for a while after its last fault, then forgets it', () => {
    const clock = new ManualClock();
    const faults = new DataFaults(clock);
    assert.equal(faults.has('s'), false);
    assert.equal(faults.add('s'), true, 'newly quarantined');
    assert.equal(faults.has('s'), true);
    assert.equal(faults.has('other'), false);
    clock.advance(DATA_FAULT_QUARANTINE_MS - 1);
    assert.equal(faults.add('s'), false, 'already quarantined: a fault again extends it');
    clock.advance(DATA_FAULT_QUARANTINE_MS - 1);
    assert.equal(faults.has('s'), true);
    clock.advance(1);
    assert.equal(faults.has('s'), false, 'a minute after its last fault');
    assert.equal(faults.size, 0);
    assert.equal(faults.add('s'), true, 'a later fault quarantines it anew');
  });

  it('remembers at most 1,024 sessions, forgetting the one whose last fault is oldest', () => {
    const faults = new DataFaults(new ManualClock());
    for (let i = 0; i < 1_024; i++) faults.add(`s${i}`);
    faults.add('s0'); // s0's fault is now the newest
    faults.add('new');
    assert.equal(faults.size, 1_024);
    assert.equal(faults.has('s1'), false, 'the oldest fault went');
    assert.equal(faults.has('s0'), true);
    assert.equal(faults.has('new'), true);
  });
});
