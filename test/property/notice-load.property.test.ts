/**
 * A node's first hello to a session against other nodes' appends, in every order
 * fast-check's scheduler can find: the actor starts watching, reads the head (its effect
 * and its reply two scheduled steps, as the store and the wire are), and meanwhile
 * appends made by another node (straight to the engine) store events and send their
 * notices (scheduled immediates). Whatever the order, once nothing is left to run the
 * welcomed connection holds every stored event after its start: a notice that overtook
 * the head read's reply must not be lost (test/unit/notice-during-load.test.ts has the
 * one order that lost it before session 22). A publish through this node's actor may
 * come first: its first append reads the head as well, a second load beside the
 * hello's, and neither may set the head back below what the other (or the append's
 * reply) already moved it to. Small caches or none (0 or 64 events).
 *
 *   FC_RUNS=5000 node --import tsx --test test/property/notice-load.property.test.ts
 */
import assert from 'node:assert/strict';
import { setImmediate as realSetImmediate } from 'node:timers';
import { it } from 'node:test';
import fc from 'fast-check';
import { makeEvent } from '../engine/contract.ts';
import { SESSION, freshHello, realtimeHarness } from '../helpers/realtime-harness.ts';
import { ScheduledEngine } from './scheduled-harness.ts';

const LIMITS = { historyMaxEvents: 1000, historyTtlAfterEndS: 60 };
const RUNS = Number(process.env['FC_RUNS'] ?? 400);

it('a first hello holds every event other nodes stored meanwhile, in any order', async () => {
  let n = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.scheduler(),
      fc.nat(3),
      fc.integer({ min: 1, max: 3 }),
      fc.constantFrom<'latest' | 'pre' | 0>('latest', 'pre', 0),
      fc.nat(1),
      fc.constantFrom(0, 64),
      async (s, pre, remotes, start, locals, cacheEvents) => {
        const { engine, registry, open, send } = await realtimeHarness(
          (clock) => new ScheduledEngine(clock, LIMITS),
          { cacheEvents },
        );
        engine.reset('none', true);
        const raw = engine.raw(SESSION);
        for (let i = 0; i < pre; i++) await raw.append([makeEvent(SESSION, `pre${i}`)]);
        const after = start === 'pre' ? pre : start;

        const saved = globalThis.setImmediate;
        engine.scheduler = s;
        globalThis.setImmediate = ((cb: () => void) => {
          void s.schedule(Promise.resolve(), 'immediate').then(cb);
          return { ref() {}, unref() {}, hasRef: () => false } as unknown as NodeJS.Immediate;
        }) as unknown as typeof setImmediate;
        const { conn, sink } = open();
        try {
          const running: Promise<unknown>[] = [
            s.schedule(Promise.resolve(), 'hello').then(() => send(conn, freshHello({ after }))),
          ];
          // A publish through this node's actor: its first append reads the head too.
          for (let i = 0; i < locals; i++) {
            running.push(
              s
                .schedule(Promise.resolve(), `local publish #${i + 1}`)
                .then(() => registry.get(SESSION).publish(makeEvent(SESSION, `local${++n}`))),
            );
          }
          for (let i = 0; i < remotes; i++) {
            running.push(
              s
                .schedule(Promise.resolve(), `remote append #${i + 1}`)
                .then(() => engine.append(SESSION, [makeEvent(SESSION, `remote${++n}`)])),
            );
          }
          for (;;) {
            await new Promise<void>((r) => realSetImmediate(r));
            if (s.count() === 0) break;
            await s.waitOne();
          }
          await Promise.all(running);
        } finally {
          globalThis.setImmediate = saved;
          engine.scheduler = undefined;
        }

        const head = (await raw.read(0)).headSeq;
        assert.equal(head, pre + remotes + locals);
        const welcome = sink.frames.find((f) => f['op'] === 'welcome');
        assert.ok(welcome, `welcomed (frames: ${JSON.stringify(sink.frames)})`);
        const from = Number(welcome['after']);
        const delivered = sink.frames.filter((f) => f['op'] === 'ev').map((f) => Number(f['seq']));
        assert.deepEqual(
          delivered,
          Array.from({ length: head - from }, (_, i) => from + 1 + i),
          `after ${from}, head ${head}: the connection holds every event after its start`,
        );
      },
    ),
    { numRuns: RUNS, ...(process.env['FC_SEED'] ? { seed: Number(process.env['FC_SEED']) } : {}) },
  );
});
