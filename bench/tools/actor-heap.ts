/**
 * JS heap per session actor, the object a node keeps for each session it serves: N idle
 * actors made through the registry (memory engine, the default limits), heap used before
 * and after, each after a full GC. It measures; it asserts nothing. With thousands of
 * sessions of one connection each (the 5,000 × 1 shape of bench:compare) the actors are
 * a node's memory as much as the connections are.
 *
 *   node --expose-gc --import tsx bench/tools/actor-heap.ts [N=10000]
 *
 * A closure costs about 300 bytes of heap here, so per-actor closures add up: in session
 * 30 this tool read 10,390 bytes per actor when the append and resume queues each had a
 * host of six closures over their actor, 5,926-5,932 with one host shared by every actor
 * (and the resume queue made at the first resume), and 5,940-5,957 before the queues.
 */
import { loadConfig } from '../../src/config/load.ts';
import { createEngine } from '../../src/app.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { ActorRegistry } from '../../src/session/actor-registry.ts';
import { systemClock } from '../../src/util/clock.ts';

const N = Number(process.argv[2] ?? 10_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

const { config } = loadConfig({ AUTH_JWT_SECRET: 'actor-heap-secret-actor-heap-secret' });
const logger = silentLogger();
const registry = new ActorRegistry({
  engine: await createEngine(config, systemClock, logger),
  clock: systemClock,
  metrics: new Metrics(),
  logger,
  issueResumeToken: () => 'token',
  limits: {
    maxInFlight: config.MAX_IN_FLIGHT,
    backpressureBytes: config.SOCKET_BACKPRESSURE_BYTES,
    slowConsumerMs: config.SLOW_CONSUMER_TIMEOUT_MS,
    replayBatch: config.REPLAY_BATCH,
    queueMax: config.ACTOR_QUEUE_MAX,
    cacheEvents: config.ACTOR_CACHE_EVENTS,
    resumeWindowMs: config.RESUME_WINDOW_MS,
    heartbeatMs: config.HEARTBEAT_MS,
    idleMs: config.ACTOR_IDLE_MS,
  },
});

const ids = Array.from({ length: N }, (_, i) => `session-${i}`);
gc();
gc();
const before = process.memoryUsage().heapUsed;
for (const id of ids) registry.get(id);
gc();
gc();
const after = process.memoryUsage().heapUsed;
console.log(
  `actor-heap: ${registry.size} idle actors, ${((after - before) / N).toFixed(0)} bytes of heap each`,
);
process.exit(0);
