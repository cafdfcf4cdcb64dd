/**
 * The chaos checker must fail a broken gateway, readably and with the seed. A gateway is
 * started in this process on an engine wrapper that acknowledges one publish and never
 * stores it (a lost acknowledged write, the worst thing a gateway can do); the baseline
 * scenario runs against it through the real swarm and checker. The same run against the
 * unbroken engine passes, so the failure is the wrapper's doing.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { runScenario } from '../../chaos/harness/run.ts';
import { baseline } from '../../chaos/scenarios/client-faults.ts';
import type { Engine } from '../../src/engine/engine.ts';
import { MemoryEngine } from '../../src/engine/memory/memory-engine.ts';
import { systemClock } from '../../src/util/clock.ts';
import { startTestGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway.ts';

/** The `nth` published (transcript) event is acknowledged with a seq and dropped. */
function losesOneAcknowledgedEvent(inner: Engine, nth: number): Engine {
  let published = 0;
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop !== 'append') {
        const value = Reflect.get(target, prop, receiver) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      }
      const append: Engine['append'] = async (sessionId, events, seen) => {
        const victim = events.findIndex((e) => e.type.startsWith('transcript.') && ++published === nth);
        if (victim < 0) return target.append(sessionId, events, seen);
        const kept = events.filter((_, i) => i !== victim);
        const result = await target.append(sessionId, kept, seen);
        const outcomes = [...result.outcomes];
        outcomes.splice(victim, 0, { seq: result.headSeq + 1, duplicate: false });
        return { ...result, outcomes };
      };
      return append;
    },
  });
}

const memoryEngine = (): MemoryEngine =>
  new MemoryEngine(systemClock, { historyMaxEvents: 100_000, historyTtlAfterEndS: 3600 });

describe('chaos checker against a broken build', () => {
  const dirs: string[] = [];
  const gateways: TestGateway[] = [];
  after(async () => {
    await Promise.all(gateways.map((g) => g.stop()));
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  async function run(engine: Engine, seed: number) {
    const gw = await startTestGateway({}, { engine });
    gateways.push(gw);
    const outDir = mkdtempSync(path.join(tmpdir(), 'lo-chaos-'));
    dirs.push(outDir);
    return runScenario({
      scenario: baseline,
      seconds: 2,
      seed,
      outDir,
      shape: { sessions: 2, subscribersPerSession: 2, publishersPerSession: 1 },
      external: { urls: [gw.url], secret: TEST_SECRET },
    });
  }

  it('passes on the real engine', async () => {
    const result = await run(memoryEngine(), 1234);
    assert.equal(result.verdict.ok, true, result.summary);
  });

  it('fails, naming the lost event and the seed, when an acknowledged publish is never stored', async () => {
    const result = await run(losesOneAcknowledgedEvent(memoryEngine(), 7), 4321);
    assert.equal(
      result.verdict.ok,
      false,
      `the checker passed a gateway that lost an acked event:\n${result.summary}`,
    );
    const kinds = new Set(result.verdict.violations.map((v) => v.kind));
    assert.ok(kinds.has('acked_publish_lost'), `expected acked_publish_lost among ${[...kinds].join(', ')}`);
    assert.match(result.summary, /VERDICT: FAIL/);
    assert.match(result.summary, /--seed 4321/);
    const written = JSON.parse(readFileSync(path.join(result.outDir, 'verdict.json'), 'utf8')) as {
      seed: number;
      verdict: { ok: boolean };
    };
    assert.deepEqual([written.seed, written.verdict.ok], [4321, false]);
  });
});
