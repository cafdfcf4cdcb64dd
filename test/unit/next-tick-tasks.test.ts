import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NextTickTasks } from '../../src/util/next-tick-tasks.ts';

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('NextTickTasks', () => {
  it('runs the tasks of a turn in order, after the turn, from one setImmediate', async () => {
    const tasks = new NextTickTasks();
    const ran: string[] = [];
    const original = globalThis.setImmediate;
    let immediates = 0;
    globalThis.setImmediate = ((fn: () => void) => {
      immediates++;
      return original(fn);
    }) as typeof setImmediate;
    try {
      for (const name of ['a', 'b', 'c']) tasks.schedule(() => ran.push(name));
      assert.deepEqual(ran, [], 'nothing runs before the turn ends');
      assert.equal(immediates, 1);
    } finally {
      globalThis.setImmediate = original;
    }
    await turn();
    assert.deepEqual(ran, ['a', 'b', 'c']);
  });

  it('keeps a task scheduled while tasks run for the next turn, as setImmediate does', async () => {
    const tasks = new NextTickTasks();
    const ran: string[] = [];
    const later = (): void => void ran.push('later');
    tasks.schedule(() => {
      ran.push('first');
      tasks.schedule(later);
    });
    setImmediate(() => ran.push('plain immediate of the same turn'));
    await turn();
    assert.deepEqual(ran, ['first', 'plain immediate of the same turn']);
    await turn();
    assert.deepEqual(ran, ['first', 'plain immediate of the same turn', 'later']);
  });

  it('runs the other tasks when one throws, and reports the error as uncaught', async () => {
    const tasks = new NextTickTasks();
    const ran: string[] = [];
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown): void => void uncaught.push(err);
    const listeners = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    process.on('uncaughtException', onUncaught);
    try {
      tasks.schedule(() => {
        throw new Error('boom');
      });
      tasks.schedule(() => ran.push('after'));
      await turn();
      await turn();
    } finally {
      process.removeListener('uncaughtException', onUncaught);
      for (const listener of listeners) process.on('uncaughtException', listener);
    }
    assert.deepEqual(ran, ['after']);
    assert.equal((uncaught[0] as Error | undefined)?.message, 'boom');
  });
});
