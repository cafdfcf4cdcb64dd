import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { JwtVerifier } from '../../src/auth/jwt.ts';
import { Checker, type Verdict } from '../checker/checker.ts';
import { formatSummary } from '../checker/summary.ts';
import type { Scenario } from '../scenarios/scenario.ts';
import { DEFAULT_BEHAVIOUR, type Behaviour, type SwarmContext } from '../swarm/context.ts';
import { Recorder } from '../swarm/recorder.ts';
import { Rng } from '../swarm/rng.ts';
import { Swarm, type FinishReport, type SwarmShape } from '../swarm/swarm.ts';
import { GATEWAY_PROCESS_SECRET } from '../toolkit/gateway-process.ts';
import { Deployment, type DeploymentOptions } from './deployment.ts';

/**
 * One chaos run, start to verdict: bring up the deployment (or use the caller's), start
 * the swarm, run the scenario's faults for `seconds`, heal, let everyone catch up, check
 * the history, and write `history.jsonl`, `verdict.json` and `summary.txt` to `outDir`.
 */
export interface RunOptions {
  scenario: Scenario;
  seconds: number;
  seed: number;
  outDir: string;
  shape?: Partial<SwarmShape>;
  /** Overrides on top of the scenario's deployment (soak: node count). */
  deployment?: Partial<Omit<DeploymentOptions, 'rng'>>;
  /**
   * Gateways the caller runs (base HTTP URLs) instead of our own deployment. Only
   * client-side scenarios make sense then; node and Redis faults need our processes.
   */
  external?: { urls: string[]; secret: string };
  /** Write the history file (large for long soaks). Default true. */
  keepHistory?: boolean;
  log?: (line: string) => void;
}

export interface RunResult {
  /** The verdict passed and no gateway node exited on its own. */
  passed: boolean;
  verdict: Verdict;
  summary: string;
  finish: FinishReport;
  faults: Record<string, number>;
  outDir: string;
}

const DEFAULT_SHAPE: SwarmShape = {
  sessions: 4,
  subscribersPerSession: 3,
  publishersPerSession: 1,
  slowShare: 0,
};
const TENANT = 'chaos';

export async function runScenario(options: RunOptions): Promise<RunResult> {
  const { scenario, seconds, seed } = options;
  if (options.external && !scenario.clientOnly)
    throw new Error(
      `${scenario.name} kills or freezes processes: it runs only on the harness's own deployment`,
    );
  const log = options.log ?? (() => {});
  const rng = new Rng(seed);
  mkdirSync(options.outDir, { recursive: true });

  const deployment = options.external
    ? undefined
    : await Deployment.start({
        nodes: 2,
        redisAof: true,
        appendfsync: 'always',
        redisProxy: false,
        redisReplica: false,
        redisClusterMasters: 0,
        redisClusterReplicas: 0,
        clientProxies: false,
        slowLaneBytesPerSec: 0,
        build: 'source',
        ...scenario.deployment,
        ...options.deployment,
        gatewayEnv: { ...scenario.deployment?.gatewayEnv, ...options.deployment?.gatewayEnv },
        rng: rng.fork('deployment'),
      });
  try {
    const secret = options.external?.secret ?? GATEWAY_PROCESS_SECRET;
    const jwt = new JwtVerifier(secret);
    const day = 24 * 3600;
    const behaviour: Behaviour = { ...DEFAULT_BEHAVIOUR, ...scenario.behaviour };
    const checker = new Checker({
      allowEpochChange: scenario.allowEpochChange ?? false,
      expectDrained: true,
      ...(scenario.maxRssBytes !== undefined ? { maxRssBytes: scenario.maxRssBytes } : {}),
    });
    const recorder = new Recorder({
      consumers: [(op) => checker.record(op)],
      historyPath: options.keepHistory === false ? undefined : path.join(options.outDir, 'history.jsonl'),
    });
    const ctx: SwarmContext = {
      targets: { urls: options.external?.urls ?? deployment!.targets() },
      slowTargets: { urls: deployment?.slowTargets() ?? [] },
      recorder,
      behaviour,
      publisherToken: await jwt.sign({ sub: 'chaos-publisher', tid: TENANT, role: 'service' }, day),
      subscriberToken: await jwt.sign({ sub: 'chaos-subscriber', tid: TENANT, role: 'agent' }, day),
      operatorToken: await jwt.sign({ sub: 'chaos-operator', tid: TENANT, role: 'operator' }, day),
    };
    const ownerToken = await jwt.sign({ sub: 'chaos-owner', tid: TENANT, role: 'user' }, day);
    const shape = { ...DEFAULT_SHAPE, ...scenario.shape, ...options.shape };
    const swarm = await Swarm.create(ctx, ownerToken, shape, rng.fork('swarm'));
    log(
      `${scenario.name}: ${shape.sessions} sessions × (${shape.subscribersPerSession} subscribers + ${shape.publishersPerSession} publishers), ${seconds} s, seed ${seed}`,
    );

    const sampler = deployment
      ? setInterval(() => {
          for (const { node, rssBytes } of deployment.memory())
            recorder.record({ op: 'memory', node, rssBytes });
        }, 1000)
      : undefined;
    const counts: Record<string, number> = {};
    let finish: FinishReport;
    try {
      await swarm.start();
      const until = Date.now() + seconds * 1000;
      await scenario.faults({
        rng: rng.fork('faults'),
        deployment: deployment ?? noDeployment,
        swarm,
        until,
        counts,
        recorder,
      });
      if (deployment) await heal(deployment);
      log(`${scenario.name}: load phase over (${describe(counts)}); draining`);
      finish = await swarm.finish();
    } finally {
      if (sampler) clearInterval(sampler);
      swarm.stop();
    }
    await recorder.close();
    const verdict = checker.finish();
    const summary = [
      `scenario ${scenario.name} — ${scenario.summary}`,
      `seed ${seed}, ${seconds} s, ${deployment ? `${deployment.nodes.length} nodes` : `external: ${ctx.targets.urls.join(' ')}`}`,
      `faults: ${describe(counts) || 'none'}`,
      `finish: ${finish.settled}/${swarm.publishers.length} publishers settled, ${finish.drained}/${swarm.subscribers.length} subscribers drained` +
        (finish.unsettled.length ? `; unsettled: ${finish.unsettled.join(', ')}` : '') +
        (finish.behind.length ? `; behind: ${finish.behind.join(', ')}` : '') +
        (finish.fatal.length ? `; gave up: ${finish.fatal.join(', ')}` : ''),
      ...finish.stuck,
      ...(deployment?.unexpectedExits.length
        ? [
            `UNEXPECTED NODE EXITS: ${deployment.unexpectedExits.map((e) => `${e.node} (${e.code ?? e.signal ?? '?'})`).join(', ')}`,
          ]
        : []),
      formatSummary(verdict),
      `replay: npm run chaos -- --scenario ${scenario.name} --seconds ${seconds} --seed ${seed}` +
        (options.external ? ` --target ${options.external.urls.join(',')} --secret …` : ''),
    ].join('\n');
    writeFileSync(
      path.join(options.outDir, 'verdict.json'),
      JSON.stringify({ scenario: scenario.name, seed, seconds, faults: counts, finish, verdict }, null, 2),
    );
    writeFileSync(path.join(options.outDir, 'summary.txt'), summary + '\n');
    if (deployment) {
      const problems = deployment.problems().slice(-20_000);
      writeFileSync(
        path.join(options.outDir, 'gateway-warnings.jsonl'),
        problems.map((p) => JSON.stringify(p)).join('\n') + '\n',
      );
    }
    const passed = verdict.ok && (deployment?.unexpectedExits.length ?? 0) === 0;
    return { passed, verdict, summary, finish, faults: counts, outDir: options.outDir };
  } finally {
    await deployment?.stop();
  }
}

/** What client-only scenarios get against an external deployment: nothing to break. */
const noDeployment = new Proxy({} as Deployment, {
  get() {
    throw new Error('this scenario needs the harness to run the gateways itself');
  },
});

/** Leaves nothing broken for the finish phase: nodes thawed, Redis answering, proxies open. */
async function heal(deployment: Deployment): Promise<void> {
  deployment.healRedis();
  for (const slot of deployment.nodes) {
    deployment.resumeNode(slot);
    slot.proxy?.heal();
    slot.proxy?.clearFaults();
    // Slow readers catch up at full speed in the finish phase.
    slot.slowLane?.clearFaults();
  }
  await deployment.ensureRunning();
  await Promise.all(deployment.nodes.map(async (slot) => slot.process?.waitForReady(200, 30_000)));
}

function describe(counts: Record<string, number>): string {
  return Object.entries(counts)
    .map(([k, v]) => `${k} ×${v}`)
    .join(', ');
}
