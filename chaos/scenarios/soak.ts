import { raceBursts } from './client-faults.ts';
import { active, exclusive, note, pause, type FaultControl, type Scenario } from './scenario.ts';

/**
 * The mixed soak: every few hundred milliseconds a fault drawn at random — node kills,
 * freezes, duplicate-resume bursts, client drops, stalled readers, Redis crashes and
 * stalls — on top of ack abuse. Long runs of it are what `npm run chaos:soak` is for.
 */
type Fault = (control: FaultControl) => Promise<void>;

const killNode: Fault = async (control) => {
  const slot = control.rng.pick(control.deployment.nodes);
  const downMs = control.rng.int(100, 1000);
  await exclusive(control, slot.name, async () => {
    note(control, 'node_kill', slot.name);
    await control.deployment.killNode(slot, downMs);
  });
};

const freezeNode: Fault = async (control) => {
  const slot = control.rng.pick(control.deployment.nodes);
  const ms = control.rng.int(500, 3000);
  await exclusive(control, slot.name, async () => {
    note(control, 'node_freeze', slot.name, `${ms} ms`);
    control.deployment.pauseNode(slot);
    await new Promise((r) => setTimeout(r, ms));
    control.deployment.resumeNode(slot);
  });
};

const raceBurst: Fault = async (control) => {
  const subs = control.swarm.subscribers;
  const bursts = Array.from({ length: control.rng.int(2, 6) }, async () => {
    const sub = control.rng.pick(subs);
    const count = control.rng.int(2, 8);
    if (await sub.race(count)) note(control, 'duplicate_resume_race', sub.name, `${count} resumes`);
  });
  await Promise.all(bursts);
};

const dropClients: Fault = async (control) => {
  for (let i = control.rng.int(1, 5); i > 0; i--) {
    const sub = control.rng.pick(control.swarm.subscribers);
    sub.dropConnections();
    note(control, 'client_drop', sub.name);
  }
};

const stallReaders: Fault = async (control) => {
  const sub = control.rng.pick(control.swarm.subscribers);
  const ms = control.rng.int(1000, 4000);
  sub.stall(ms);
  note(control, 'slow_consumer', sub.name, `${ms} ms`);
};

const killRedis: Fault = async (control) => {
  const downMs = control.rng.int(100, 1000);
  await exclusive(control, 'redis', async () => {
    note(control, 'redis_kill', 'redis');
    await control.deployment.redis.kill();
    await new Promise((r) => setTimeout(r, downMs));
    await control.deployment.redis.restart();
  });
};

const stallRedis: Fault = async (control) => {
  const ms = control.rng.int(500, 2500);
  await exclusive(control, 'redis', async () => {
    note(control, 'redis_freeze', 'redis', `${ms} ms`);
    control.deployment.redis.pause();
    await new Promise((r) => setTimeout(r, ms));
    control.deployment.redis.resume();
  });
};

/** Weights: node kills and races dominate, as the soak targets demand. */
const MENU: Array<[Fault, number]> = [
  [killNode, 12],
  [raceBurst, 4],
  [dropClients, 4],
  [freezeNode, 2],
  [stallReaders, 2],
  [killRedis, 1],
  [stallRedis, 1],
];

function draw(control: FaultControl): Fault {
  const total = MENU.reduce((sum, [, w]) => sum + w, 0);
  let x = control.rng.next() * total;
  for (const [fault, weight] of MENU) {
    if ((x -= weight) < 0) return fault;
  }
  return MENU[0]![0];
}

export const mixedSoak: Scenario = {
  name: 'mixed',
  summary: 'random faults of every kind drawn continuously (the soak)',
  quickSeconds: 15,
  deployment: { nodes: 2 },
  behaviour: { staleAck: 0.1, aheadAck: 0.05, lateAck: 0.1 },
  maxRssBytes: 600 * 1024 * 1024,
  async faults(control) {
    // Two lanes of random faults, so a node kill does not hold up everything else, and a
    // steady lane of duplicate-resume races on top.
    const lane = async (): Promise<void> => {
      while (active(control)) {
        await draw(control)(control);
        await pause(control, control.rng.int(100, 800));
      }
    };
    await Promise.all([lane(), lane(), raceBursts(control, 8)]);
  },
};
