/**
 * JS heap per session actor, the object a node keeps for each session it serves: N idle
 * actors made through the registry (memory engine, the default limits), heap used before
 * and after, each after a full GC. It measures; it asserts nothing. With thousands of
 * sessions of one connection each (the 5,000 × 1 shape of bench:compare) the actors are
 * a node's memory as much as the connections are.
 *
 *   node --expose-gc --import tsx bench/tools/actor-heap.ts [N=10000]
 *
 * Under tsx every closure also carries a property table of about 256 bytes (tsx compiles
 * with esbuild's keepNames, which defines each function's `name`), so for the numbers the
 * Docker image would give, bundle the tool first, as the image bundles the gateway:
 *
 *   npx esbuild bench/tools/actor-heap.ts --bundle --platform=node --format=esm \
 *     --packages=external --outfile=/tmp/actor-heap.mjs && node --expose-gc /tmp/actor-heap.mjs
 *
 * Session 30, bundled, 2 runs each: 3,148-3,162 bytes per actor before the append and
 * resume queues moved out of the actor; 4,225-4,232 when each queue had a host of six
 * closures over its actor; 3,111-3,125 with one host shared by every actor and the resume
 * queue made at the first resume. Under tsx: 5,940-5,957, 10,390, 5,926-5,932. Then one
 * deps object for every actor (the registry had made a copy per actor, with an `onIdle`
 * closure) and a shared host for the subscriber writes: 2,450-2,468 bundled, 4,476 under tsx.
 */
import { loadConfig } from '../../src/config/load.ts';
import { actorLimits, createEngine } from '../../src/app.ts';
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
  limits: actorLimits(config),
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
