/**
 * Interleavings of concurrent operations on one session's actor, explored with
 * fast-check's scheduler: duplicate resumes, acks of every kind, late checkpoint writes,
 * publishes and other nodes' appends, all racing each other and the engine's calls,
 * whose completions the scheduler orders. scheduled-harness.ts says how, and lists the checks: every property
 * asserts all of them on every run; the properties differ in the scenarios they draw,
 * each built to stress its own part of the resume / ack / checkpoint logic.
 *
 *   node --import tsx --test test/property/resume-ack.*.property.test.ts
 *
 * This module is the harness; the tests are declared in two files
 * (resume-ack.races.property.test.ts, resume-ack.writes.property.test.ts), two and three
 * properties, so neither file comes near the per-file timeout on a loaded machine.
 *
 * Each property runs 10 000 times (FC_RUNS overrides), in a worker thread (see inWorker).
 * Two more tests run the properties against deliberately broken engines and require them
 * to fail, so a check that stopped checking would show.
 *
 * A failure prints fast-check's seed and path, the shrunk scenario, a trace of the failing
 * run (client actions, engine effects, frames, in order), the scheduler's report (the
 * order in which it completed the tasks) and the command that replays it: FC_SEED and
 * FC_PATH, with the FC_RUNS of the failing run (generation depends on it; default 10 000).
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import fc from 'fast-check';
import {
  newStats,
  runScenario,
  type AckMode,
  type ClientOp,
  type Fault,
  type LastSeqSpec,
  type Limits,
  type ResumeSpec,
  type Scenario,
  type Stats,
} from './scheduled-harness.ts';

const RUNS = Number(process.env.FC_RUNS ?? 0) || 10_000;

// ── arbitraries ──────────────────────────────────────────────────────────────────────

const limitsArb: fc.Arbitrary<Limits> = fc.record({
  maxInFlight: fc.oneof(
    { arbitrary: fc.integer({ min: 1, max: 4 }), weight: 3 },
    { arbitrary: fc.constant(64), weight: 1 },
  ),
  cacheEvents: fc.integer({ min: 0, max: 6 }),
  replayBatch: fc.integer({ min: 1, max: 4 }),
});

type Weights = Partial<Record<AckMode | 'pub' | 'retry' | 'close', number>>;

/**
 * Client actions, weighted: ack modes, new pubs, retried pubs, closes (weights are scaled
 * by 10 for fc.oneof, which wants integers, so fractions are fine here).
 */
function opArb(w: Weights): fc.Arbitrary<ClientOp> {
  const weight = (k: keyof Weights): number => Math.round((w[k] ?? 0) * 10);
  const arbs: fc.WeightedArbitrary<ClientOp>[] = [];
  for (const mode of ['held', 'behind', 'ahead', 'stale', 'repeat', 'zero'] as const) {
    if (weight(mode) > 0) {
      arbs.push({
        arbitrary: fc.integer({ min: 1, max: 3 }).map((d): ClientOp => ({ op: 'ack', mode, d })),
        weight: weight(mode),
      });
    }
  }
  if (w.pub)
    arbs.push({ arbitrary: fc.constant<ClientOp>({ op: 'pub', retry: null }), weight: weight('pub') });
  if (w.retry) {
    arbs.push({
      arbitrary: fc.nat(3).map((retry): ClientOp => ({ op: 'pub', retry })),
      weight: weight('retry'),
    });
  }
  if (w.close) arbs.push({ arbitrary: fc.constant<ClientOp>({ op: 'close' }), weight: weight('close') });
  return fc.oneof(...arbs);
}

const opsArb = (w: Weights, minLength: number, maxLength: number) =>
  fc.array(opArb(w), { minLength, maxLength });

const lastSeqArb: fc.Arbitrary<LastSeqSpec> = fc.oneof(
  { arbitrary: fc.constant<LastSeqSpec>({ kind: 'none' }), weight: 3 },
  { arbitrary: fc.constant<LastSeqSpec>({ kind: 'held' }), weight: 3 },
  { arbitrary: fc.integer({ min: 1, max: 3 }).map((d): LastSeqSpec => ({ kind: 'behind', d })), weight: 2 },
  { arbitrary: fc.constant<LastSeqSpec>({ kind: 'zero' }), weight: 1 },
);

function resumeArb(ops: fc.Arbitrary<ClientOp[]>): fc.Arbitrary<ResumeSpec> {
  return fc.record({ lastSeq: lastSeqArb, epoch: fc.boolean(), ops });
}

interface Shape {
  resumes: fc.Arbitrary<ResumeSpec[]>;
  c0: fc.Arbitrary<ClientOp[]>;
  p: fc.Arbitrary<ClientOp[]>;
  direct: fc.Arbitrary<number>;
  /** Appends by another node; default 0 to 2. */
  remote?: fc.Arbitrary<number>;
  /** Default false. */
  cold?: fc.Arbitrary<boolean>;
  pre?: fc.Arbitrary<number>;
  split?: fc.Arbitrary<boolean>;
}

function scenarioArb(shape: Shape): fc.Arbitrary<Scenario> {
  return fc.record({
    limits: limitsArb,
    split: shape.split ?? fc.boolean(),
    pre: shape.pre ?? fc.nat(4),
    setupAck: fc.nat(4),
    c0: shape.c0,
    resumes: shape.resumes,
    p: shape.p,
    direct: shape.direct,
    remote: shape.remote ?? fc.nat(2),
    cold: shape.cold ?? fc.constant(false),
  });
}

/** Acks of every kind a client may send, including wrong ones. */
const allAcks: Weights = { held: 4, behind: 2, ahead: 1, stale: 1, repeat: 1, zero: 1 };

/** 1. Two to eight connections resume one subscriber at once, with publishes and acks. */
const duplicateResumes = scenarioArb({
  resumes: fc.array(resumeArb(opsArb({ held: 4, behind: 1, ahead: 1, pub: 1, close: 0.3 }, 0, 3)), {
    minLength: 2,
    maxLength: 8,
  }),
  c0: opsArb({ held: 3, behind: 1, pub: 1 }, 0, 3),
  p: opsArb({ pub: 3, held: 2 }, 0, 4),
  direct: fc.nat(2),
});

/** 2. Acks of every kind, on live, superseded and closed connections, against delivery and writes. */
const ackRaces = scenarioArb({
  resumes: fc.array(resumeArb(opsArb({ ...allAcks, close: 0.5 }, 1, 4)), { maxLength: 2 }),
  c0: opsArb({ ...allAcks, close: 0.5 }, 1, 6),
  p: opsArb({ pub: 2, ...allAcks }, 0, 3),
  direct: fc.nat(2),
});

/**
 * 3. Checkpoint writes of an older connection still in flight when a newer one takes the
 * subscriber over (or writes a newer checkpoint): c0 acks a lot, then resumes race in.
 */
const lateWrites = scenarioArb({
  resumes: fc.array(resumeArb(opsArb({ held: 4, behind: 1, close: 0.5 }, 0, 3)), {
    minLength: 1,
    maxLength: 3,
  }),
  c0: opsArb({ held: 4, behind: 2, close: 0.5 }, 1, 5),
  p: opsArb({ pub: 2, held: 1 }, 0, 3),
  direct: fc.nat(3),
  pre: fc.integer({ min: 2, max: 5 }),
  split: fc.oneof({ arbitrary: fc.constant(true), weight: 3 }, { arbitrary: fc.constant(false), weight: 1 }),
});

/** 4. Publishes (new and retried eventIds) on every connection and server-side, while S resumes. */
const publishes = scenarioArb({
  resumes: fc.array(resumeArb(opsArb({ pub: 3, retry: 2, held: 2, close: 0.3 }, 0, 4)), {
    minLength: 1,
    maxLength: 3,
  }),
  c0: opsArb({ pub: 3, retry: 1, held: 2 }, 0, 4),
  p: opsArb({ pub: 3, retry: 1, held: 2 }, 0, 4),
  direct: fc.nat(3),
});

/**
 * 5. S resumes after every connection of the session left this node (so the actor reads
 * the head anew) while another node appends: each resumed connection ends up holding
 * every stored event after its start.
 */
const coldResumes = scenarioArb({
  resumes: fc.array(resumeArb(opsArb({ held: 3, behind: 1, pub: 1, close: 0.3 }, 0, 3)), {
    minLength: 1,
    maxLength: 3,
  }),
  c0: fc.constant([]),
  p: fc.constant([]),
  direct: fc.nat(1),
  remote: fc.integer({ min: 1, max: 3 }),
  cold: fc.constant(true),
});

// ── running ──────────────────────────────────────────────────────────────────────────

const properties = { duplicateResumes, ackRaces, lateWrites, publishes, coldResumes } as const;
export type PropertyName = keyof typeof properties;

/** What a worker runs, and what it answers. */
interface Job {
  property: PropertyName;
  numRuns: number;
  seed?: number;
  path?: string;
}
type Outcome = { ok: true; stats: Stats; wallMs: number; cpuMs: number } | { ok: false; message: string };

function runsOf(
  arb: fc.Arbitrary<Scenario>,
  stats: Stats,
  fault: Fault = 'none',
): fc.IAsyncPropertyWithHooks<[fc.Scheduler, Scenario]> {
  return fc.asyncProperty(fc.scheduler(), arb, (s, scenario) => runScenario(s, scenario, stats, fault));
}

async function runJob(job: Job): Promise<Outcome> {
  const stats = newStats();
  const p: fc.Parameters<[fc.Scheduler, Scenario]> = { numRuns: job.numRuns, includeErrorInReport: true };
  if (job.seed !== undefined) p.seed = job.seed;
  if (job.path !== undefined) p.path = job.path;
  const started = performance.now();
  const cpu = process.cpuUsage();
  try {
    await fc.assert(runsOf(properties[job.property], stats), p);
  } catch (err) {
    return { ok: false, message: err instanceof Error ? err.message : String(err) };
  }
  const used = process.cpuUsage(cpu);
  return {
    ok: true,
    stats,
    wallMs: Math.round(performance.now() - started),
    cpuMs: Math.round((used.user + used.system) / 1000),
  };
}

/**
 * Runs a job in a worker thread. node:test tracks every promise of its process with an
 * async hook (to tie async activity to tests), which costs ~30% of a run here, where
 * each of the 10 000 runs makes thousands; a worker thread has no such hook. The worker
 * loads this very file (through tsx's API: workers do not inherit the --import hooks),
 * which, seeing its job in workerData, runs it and posts the outcome back.
 */
async function inWorker(t: TestContext, job: Job): Promise<Outcome> {
  const boot = [
    `import { register } from ${JSON.stringify(import.meta.resolve('tsx/esm/api'))};`,
    'register();',
    `await import(${JSON.stringify(import.meta.url)});`,
  ].join('\n');
  const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(boot)}`), {
    workerData: { schedulerPropertyJob: job },
  });
  const stop = () => void worker.terminate();
  t.signal.addEventListener('abort', stop, { once: true });
  try {
    return await new Promise<Outcome>((resolve, reject) => {
      worker.once('message', (outcome: Outcome) => resolve(outcome));
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`the property worker exited with code ${code}`)));
    });
  } finally {
    t.signal.removeEventListener('abort', stop);
    await worker.terminate();
  }
}

async function property(t: TestContext, name: PropertyName): Promise<void> {
  const job: Job = { property: name, numRuns: RUNS };
  if (process.env.FC_SEED !== undefined) job.seed = Number(process.env.FC_SEED);
  if (process.env.FC_PATH !== undefined) job.path = process.env.FC_PATH;
  const outcome = await inWorker(t, job);
  if (!outcome.ok) {
    const seed = /seed: (-?\d+)/.exec(outcome.message)?.[1];
    const path = /path: "([\d:]+)"/.exec(outcome.message)?.[1];
    const replay =
      seed === undefined || path === undefined
        ? ''
        : `replay: FC_SEED=${seed} FC_PATH=${path}${process.env.FC_RUNS ? ` FC_RUNS=${RUNS}` : ''} npm test -- test/property --test-name-pattern='${t.name.slice(0, 40).replace(/[^\w ]/g, '.')}'\n`;
    assert.fail(`${replay}${outcome.message}`);
  }
  const { stats, wallMs, cpuMs } = outcome;
  const per = (n: number) => (n / Math.max(1, stats.runs)).toFixed(2);
  t.diagnostic(
    `${stats.runs} runs in ${wallMs} ms wall, ${cpuMs} ms CPU (${per(wallMs)} / ${per(cpuMs)} ms per run)`,
  );
  t.diagnostic(JSON.stringify(stats));
}

// ── the properties catch broken engines ──────────────────────────────────────────────

/** A property run against a broken engine must fail, for the reason `pattern` names. */
async function mustFail(t: TestContext, fault: Fault, arb: fc.Arbitrary<Scenario>, pattern: RegExp) {
  const out = await fc.check(runsOf(arb, newStats(), fault), {
    numRuns: 2_000,
    seed: 20_261_128,
    endOnFailure: true,
  });
  assert.equal(out.failed, true, `the properties did not notice an engine with fault "${fault}"`);
  const message = out.errorInstance instanceof Error ? out.errorInstance.message : String(out.errorInstance);
  const first = message.split('\n')[0]!;
  assert.match(first, pattern);
  t.diagnostic(`"${fault}" caught after ${out.numRuns} runs: ${first}`);
}

// ── the tests (declared by the two test files) or the job (in a worker) ──────────────

const job = (workerData as { schedulerPropertyJob?: Job } | null)?.schedulerPropertyJob;
if (!isMainThread && job !== undefined) {
  parentPort!.postMessage(await runJob(job));
}

const TITLES: Record<PropertyName, string> = {
  duplicateResumes:
    'scheduler: duplicate resumes race (2–8 connections): the last processed survives, the others get 4009, no ev twice, evs from lastSeq/checkpoint + 1',
  ackRaces:
    'scheduler: ack races (in order, out of order, repeated, stale, ahead, on superseded/closed connections): checkpoint monotone, ≤ delivered, fenced by generation, ack_ahead only above delivered',
  lateWrites:
    'scheduler: late checkpoint writes of an older generation never win; the checkpoint ends at the max legitimately acked seq of the generations that were current',
  publishes:
    'scheduler: publishes interleaved with resumes: every puback at its seq exactly once, every connected subscriber sees every seq contiguously',
  coldResumes:
    "scheduler: resumes to a node left without connections, against another node's appends: the resumed connection holds every stored event after its start",
};

/** Declares the node:test tests of `properties`, and the broken-engine check of `fault`. */
export async function declareSchedulerTests(
  properties: PropertyName[],
  fault: 'ignore-fence' | 'drop-write',
): Promise<void> {
  const { test } = await import('node:test');
  for (const name of properties) {
    test(TITLES[name], async (t) => {
      await property(t, name);
    });
  }
  if (fault === 'ignore-fence') {
    test('scheduler: the properties catch an engine that ignores generation fencing', async (t) => {
      await mustFail(t, 'ignore-fence', lateWrites, /generation fencing/);
    });
  } else {
    test('scheduler: the properties catch an engine that loses checkpoint writes', async (t) => {
      await mustFail(t, 'drop-write', ackRaces, /final checkpoint|an ack was lost/);
    });
  }
}
