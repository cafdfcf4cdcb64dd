import { active, note, pause, type FaultControl, type Scenario } from './scenario.ts';

/**
 * Scenarios where the clients are the trouble: duplicate resumes, ack abuse, checkpoint
 * games, broken networks between clients and gateways, and consumers that stop reading.
 */

export const baseline: Scenario = {
  name: 'baseline',
  clientOnly: true,
  summary: 'no faults: the swarm and the checker agree on a healthy system',
  quickSeconds: 6,
  async faults(control) {
    await pause(control, control.until - Date.now());
  },
};

/** Keeps `perSecond` bursts of 2–8 duplicate resumes going, spread over the subscribers. */
export async function raceBursts(control: FaultControl, perSecond: number): Promise<void> {
  const running = new Set<Promise<unknown>>();
  while (active(control)) {
    const sub = control.rng.pick(control.swarm.subscribers);
    const count = control.rng.int(2, 8);
    const race = sub.race(count).then((started) => {
      if (started) note(control, 'duplicate_resume_race', sub.name, `${count} resumes`);
    });
    running.add(race);
    void race.finally(() => running.delete(race));
    await pause(control, control.rng.int(0, Math.round(2000 / perSecond)));
  }
  await Promise.all(running);
}

/** Duplicate-resume races, and a dropped connection every `minMs`–`maxMs`. */
async function dropsAndRaces(control: FaultControl, minMs: number, maxMs: number): Promise<void> {
  const races = raceBursts(control, 2);
  while (active(control)) {
    const sub = control.rng.pick(control.swarm.subscribers);
    sub.dropConnections();
    note(control, 'client_drop', sub.name);
    await pause(control, control.rng.int(minMs, maxMs));
  }
  await races;
}

export const duplicateResumes: Scenario = {
  name: 'duplicate-resumes',
  clientOnly: true,
  summary:
    'bursts of 2–8 concurrent resumes of one subscriber on different nodes: exactly one survivor, nothing twice',
  quickSeconds: 8,
  shape: { subscribersPerSession: 4 },
  faults: (control) => raceBursts(control, 6),
};

export const ackRaces: Scenario = {
  name: 'ack-races',
  clientOnly: true,
  summary:
    'stale, repeated, late, out-of-order and ahead acks, acks on superseded connections, resumes that read the checkpoint',
  quickSeconds: 8,
  behaviour: {
    ackEveryMax: 4,
    staleAck: 0.3,
    repeatAck: 0.3,
    aheadAck: 0.1,
    lateAck: 0.3,
    resumeWithLastSeq: 0.2,
  },
  // Resumes without lastSeq read the stored checkpoint back; races leave acks in flight
  // on superseded connections.
  faults: (control) => dropsAndRaces(control, 100, 600),
};

export const checkpoints: Scenario = {
  name: 'checkpoints',
  clientOnly: true,
  summary: 'late, stale and future checkpoints, resumes with a wrong epoch (must be 4011)',
  quickSeconds: 8,
  behaviour: {
    ackEveryMax: 8,
    staleAck: 0.2,
    aheadAck: 0.3,
    lateAck: 0.5,
    resumeWithLastSeq: 0.5,
    bogusEpochResume: 0.15,
  },
  faults: (control) => dropsAndRaces(control, 200, 800),
};

export const clientNetwork: Scenario = {
  name: 'client-network',
  summary:
    'between clients and gateways: half-open connections, resets, slow closes, sliced and delayed bytes',
  quickSeconds: 10,
  deployment: { clientProxies: true },
  behaviour: { deadAfterMs: 2500 },
  async faults(control) {
    const proxies = control.deployment.nodes.map((n) => n.proxy!);
    while (active(control)) {
      const proxy = control.rng.pick(proxies);
      const kind = control.rng.pick(['blackhole', 'reset', 'slow_close', 'slice', 'latency'] as const);
      note(control, `client_${kind}`, proxy.name);
      switch (kind) {
        case 'blackhole':
          // Half-open: no FIN, no RST. Clients find out by their heartbeat.
          proxy.blackhole('stall');
          await pause(control, control.rng.int(3000, 4000));
          proxy.heal();
          break;
        case 'reset':
          proxy.resetAll();
          break;
        case 'slow_close':
          void proxy.closeAll({ slowMs: control.rng.int(200, 1500) });
          break;
        case 'slice':
          proxy.setFaults({ sliceBytes: control.rng.int(1, 64) });
          await pause(control, control.rng.int(500, 2000));
          proxy.clearFaults();
          break;
        case 'latency':
          proxy.setFaults({ latencyMs: control.rng.int(20, 300), jitterMs: 50 });
          await pause(control, control.rng.int(500, 2000));
          proxy.clearFaults();
          break;
      }
      await pause(control, control.rng.int(200, 1000));
    }
    for (const proxy of proxies) {
      proxy.heal();
      proxy.clearFaults();
    }
  },
};

export const slowConsumers: Scenario = {
  name: 'slow-consumers',
  summary:
    '10 % of subscribers read at 32 KB/s while events arrive faster: 4101 and resume, gateway memory bounded',
  quickSeconds: 12,
  shape: { subscribersPerSession: 5, slowShare: 0.1 },
  behaviour: { payloadBytes: 16_000, publishRate: 60, publishWindow: 64 },
  deployment: {
    slowLaneBytesPerSec: 32 * 1024,
    gatewayEnv: {
      MAX_IN_FLIGHT: '100000',
      SOCKET_BACKPRESSURE_BYTES: '65536',
      SLOW_CONSUMER_TIMEOUT_MS: '1000',
    },
  },
  // Baseline (~120 MB) plus four actor caches of 1,024 events of 16 KB in two encodings.
  maxRssBytes: 512 * 1024 * 1024,
  async faults(control) {
    // The slow lane is the fault; the checker holds delivery and memory to account.
    await pause(control, control.until - Date.now());
  },
};
