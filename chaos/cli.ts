/**
 * The chaos harness's command line.
 *
 *   npm run chaos:quick                                  every scenario, small (CI)
 *   npm run chaos -- --scenario node-kill --seconds 60   one scenario by name
 *   npm run chaos:soak -- --seconds 600                  the mixed soak (2 nodes, 50 sessions)
 *   npm run chaos -- --list
 *   npm run chaos -- --recheck .chaos/<run>/history.jsonl   check a saved history again
 *
 * Options: --seed N (replay a run's plan), --sessions N, --subscribers N (per session),
 * --publishers N (per session), --nodes N, --out DIR (default .chaos/<time>-<scenario>),
 * --no-history (skip history.jsonl), --dist (run the nodes from `npm run build`'s dist/:
 * restarts take a fraction of the time, and edits to src/ during a long run do not
 * leak into restarted nodes), --target URL,URL --secret S (run the client-side
 * scenarios against gateways you run yourself; the secret signs the tokens).
 *
 * Exit code 0 when every run's verdict is PASS, 1 otherwise (the summary names the
 * violations and the seed to replay).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { checkHistory, formatSummary, readHistory, type CheckerOptions } from './checker/checker.ts';
import { parseArgs } from 'node:util';
import { runScenario, type RunOptions } from './harness/run.ts';
import { SCENARIOS, scenarioByName } from './scenarios/index.ts';
import type { Scenario } from './scenarios/scenario.ts';
import { randomSeed } from './swarm/rng.ts';

const { values } = parseArgs({
  options: {
    scenario: { type: 'string' },
    seconds: { type: 'string' },
    seed: { type: 'string' },
    sessions: { type: 'string' },
    subscribers: { type: 'string' },
    publishers: { type: 'string' },
    nodes: { type: 'string' },
    out: { type: 'string' },
    target: { type: 'string' },
    secret: { type: 'string' },
    quick: { type: 'boolean', default: false },
    soak: { type: 'boolean', default: false },
    list: { type: 'boolean', default: false },
    recheck: { type: 'string' },
    'no-history': { type: 'boolean', default: false },
    dist: { type: 'boolean', default: false },
  },
});

function int(name: keyof typeof values, fallback?: number): number | undefined {
  const raw = values[name];
  if (raw === undefined || typeof raw !== 'string') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0)
    throw new Error(`--${name} must be a non-negative integer, got "${raw}"`);
  return n;
}

async function main(): Promise<number> {
  if (values.recheck) {
    // The run's own checker options sit beside its history, in verdict.json.
    const verdictFile = path.join(path.dirname(values.recheck), 'verdict.json');
    const options = existsSync(verdictFile)
      ? (JSON.parse(readFileSync(verdictFile, 'utf8')) as { verdict: { options: CheckerOptions } }).verdict
          .options
      : {};
    const verdict = checkHistory(readHistory(values.recheck), options);
    console.log(formatSummary(verdict));
    return verdict.ok ? 0 : 1;
  }
  if (values.list) {
    for (const s of SCENARIOS) console.log(`${s.name.padEnd(20)} ${s.summary}`);
    return 0;
  }
  const runs: Array<{ scenario: Scenario; seconds: number }> = [];
  if (values.quick) {
    for (const scenario of SCENARIOS)
      runs.push({ scenario, seconds: int('seconds', scenario.quickSeconds)! });
  } else if (values.soak) {
    runs.push({ scenario: scenarioByName('mixed'), seconds: int('seconds', 600)! });
  } else {
    if (!values.scenario) throw new Error('name a --scenario (or --quick, --soak, --list)');
    const scenario = scenarioByName(values.scenario);
    runs.push({ scenario, seconds: int('seconds', scenario.quickSeconds)! });
  }

  const shape: RunOptions['shape'] = {};
  const sessions = int('sessions', values.soak ? 50 : undefined);
  if (sessions !== undefined) shape.sessions = sessions;
  const subscribers = int('subscribers');
  if (subscribers !== undefined) shape.subscribersPerSession = subscribers;
  const publishers = int('publishers');
  if (publishers !== undefined) shape.publishersPerSession = publishers;
  const nodes = int('nodes', values.soak ? 2 : undefined);
  const external = values.target
    ? { urls: values.target.split(','), secret: values.secret ?? process.env['AUTH_JWT_SECRET'] ?? '' }
    : undefined;
  if (external && !external.secret)
    throw new Error('--target needs --secret (or AUTH_JWT_SECRET) to sign tokens');

  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  let failed = 0;
  for (const { scenario, seconds } of runs) {
    const seed = int('seed') ?? randomSeed();
    const outDir = path.resolve(values.out ?? '.chaos', `${stamp}-${scenario.name}`);
    const started = Date.now();
    const result = await runScenario({
      scenario,
      seconds,
      seed,
      outDir,
      shape,
      deployment: {
        ...(nodes !== undefined ? { nodes } : {}),
        ...(values.dist ? { build: 'dist' as const } : {}),
      },
      ...(external ? { external } : {}),
      keepHistory: !values['no-history'],
      log: (line) => console.log(line),
    });
    console.log(result.summary);
    console.log(
      `(${((Date.now() - started) / 1000).toFixed(1)} s; history and verdict in ${path.relative(process.cwd(), outDir)})\n`,
    );
    if (!result.passed) failed++;
  }
  if (runs.length > 1)
    console.log(
      failed === 0 ? `all ${runs.length} scenarios PASS` : `${failed} of ${runs.length} scenarios FAILED`,
    );
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exit(2);
  },
);
