import {
  ackRaces,
  baseline,
  checkpoints,
  clientNetwork,
  duplicateResumes,
  slowConsumers,
} from './client-faults.ts';
import { nodeKill, zombieNode } from './node-faults.ts';
import {
  redisCluster,
  redisClusterFailover,
  redisClusterKill,
  redisFailover,
  redisHistoryLoss,
  redisKill,
  redisStall,
} from './redis-faults.ts';
import type { Scenario } from './scenario.ts';
import { mixedSoak } from './soak.ts';

/** Every scenario, in the order the quick tier runs them. */
export const SCENARIOS: readonly Scenario[] = [
  baseline,
  duplicateResumes,
  ackRaces,
  checkpoints,
  nodeKill,
  zombieNode,
  redisKill,
  redisHistoryLoss,
  redisStall,
  redisFailover,
  redisCluster,
  redisClusterFailover,
  redisClusterKill,
  clientNetwork,
  slowConsumers,
  mixedSoak,
];

export function scenarioByName(name: string): Scenario {
  const found = SCENARIOS.find((s) => s.name === name);
  if (!found) throw new Error(`no scenario "${name}"; known: ${SCENARIOS.map((s) => s.name).join(', ')}`);
  return found;
}
