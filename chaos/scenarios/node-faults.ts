import { active, note, pause, type Scenario } from './scenario.ts';

/** Gateway nodes dying and freezing under the swarm. */

export const nodeKill: Scenario = {
  name: 'node-kill',
  summary: 'kill -9 of a gateway node mid-stream, clients resume elsewhere; the node comes back on its port',
  quickSeconds: 12,
  deployment: { nodes: 2 },
  async faults(control) {
    while (active(control)) {
      await pause(control, control.rng.int(1500, 3000));
      if (!active(control)) break;
      const slot = control.rng.pick(control.deployment.nodes);
      note(control, 'node_kill', slot.name);
      await control.deployment.killNode(slot, control.rng.int(200, 1500));
    }
  },
};

export const zombieNode: Scenario = {
  name: 'zombie-node',
  summary:
    'a node frozen (SIGSTOP) past every timeout while its subscribers resume elsewhere, then SIGCONT: it must close them 4009, never deliver or checkpoint',
  quickSeconds: 14,
  deployment: { nodes: 3, gatewayEnv: { SLOW_CONSUMER_TIMEOUT_MS: '2000' } },
  // The old connections stay open on purpose: the zombie has to retire them itself.
  behaviour: { deadAfterMs: 60_000 },
  async faults(control) {
    while (active(control)) {
      await pause(control, control.rng.int(500, 1500));
      if (!active(control)) break;
      const slot = control.rng.pick(control.deployment.nodes);
      const frozenMs = control.rng.int(3000, 5000);
      note(control, 'node_freeze', slot.name, `${frozenMs} ms`);
      control.deployment.pauseNode(slot);
      // Every subscriber resumes once more while the zombie holds some of the old sockets;
      // the race settles when the zombie wakes up and retires them.
      const races = control.swarm.subscribers.map((sub) => sub.race(1, frozenMs + 8000));
      await new Promise((r) => setTimeout(r, frozenMs));
      control.deployment.resumeNode(slot);
      note(control, 'node_thaw', slot.name);
      await Promise.all(races);
    }
  },
};
