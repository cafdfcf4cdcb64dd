import type { Deployment, DeploymentOptions } from '../harness/deployment.ts';
import type { Behaviour } from '../swarm/context.ts';
import type { Recorder } from '../swarm/recorder.ts';
import type { Rng } from '../swarm/rng.ts';
import type { Swarm, SwarmShape } from '../swarm/swarm.ts';

/**
 * A chaos scenario: the shape of the system and the swarm, and a fault schedule that runs
 * while the publishers publish. Faults must leave the system whole when `until` passes
 * (nodes running, Redis answering, proxies healed): the finish phase then checks that
 * everyone catches up.
 */
export interface Scenario {
  readonly name: string;
  readonly summary: string;
  /** Seconds of load in the quick tier (CI). */
  readonly quickSeconds: number;
  /**
   * Its faults come from the clients only, so it can run against gateways someone else
   * runs (`--target`); the others kill and freeze our own processes.
   */
  readonly clientOnly?: boolean;
  readonly deployment?: Partial<Omit<DeploymentOptions, 'rng'>>;
  readonly shape?: Partial<SwarmShape>;
  readonly behaviour?: Partial<Behaviour>;
  /** History loss is the point of the scenario: epoch changes (with 4011) are allowed. */
  readonly allowEpochChange?: boolean;
  /** Bound on every node's RSS during the run. */
  readonly maxRssBytes?: number;
  faults(control: FaultControl): Promise<void>;
}

export interface FaultControl {
  readonly rng: Rng;
  readonly deployment: Deployment;
  readonly swarm: Swarm;
  /** Wall-clock deadline (Date.now()) of the load phase. */
  readonly until: number;
  /** Faults injected so far, by kind. */
  readonly counts: Record<string, number>;
  readonly recorder: Recorder;
}

/** Whether the load phase still runs. */
export function active(control: FaultControl): boolean {
  return Date.now() < control.until;
}

/** Sleeps, but never past the end of the load phase. */
export function pause(control: FaultControl, ms: number): Promise<void> {
  const left = Math.max(0, Math.min(ms, control.until - Date.now()));
  return new Promise((resolve) => setTimeout(resolve, left));
}

/** Records a fault in the history and counts it. */
export function note(control: FaultControl, fault: string, target: string, detail?: string): void {
  control.counts[fault] = (control.counts[fault] ?? 0) + 1;
  control.recorder.record({ op: 'fault', fault, target, ...(detail ? { detail } : {}) });
}

const held = new WeakMap<FaultControl, Set<string>>();

/**
 * Runs `fault` unless another fault holds `target` (a node, Redis): concurrent fault
 * lanes must not kill a process another lane is restarting. Returns whether it ran.
 */
export async function exclusive(
  control: FaultControl,
  target: string,
  fault: () => Promise<void>,
): Promise<boolean> {
  let busy = held.get(control);
  if (!busy) held.set(control, (busy = new Set()));
  if (busy.has(target)) return false;
  busy.add(target);
  try {
    await fault();
    return true;
  } finally {
    busy.delete(target);
  }
}
