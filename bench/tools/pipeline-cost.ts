/**
 * What the gateway's own JavaScript costs per event in the 5,000 × 1 echo shape of
 * bench:compare (issue 6), without sockets: the session layer (RealtimeHandler, the
 * actors, the node cache) and the engine, driven in process with the bytes a client
 * sends. uWS, the kernel and the load generator are not in it, so the noise of a shared
 * two-core VM mostly is not either, and a change to the hot path can be measured in a
 * minute instead of a compare run.
 *
 * Each session has one connection, as in the compare's echo shape: it publishes one
 * `transcript.partial` per round, receives its puback and its own event, and acks the
 * event. A round is every session's publish (all in one turn, as a busy node takes them),
 * then every ack once all events are out, then the turns until the checkpoints are
 * written. The printed cost is process CPU (user + system) per event, median over the
 * rounds after a warm-up quarter, with young-generation collections per 1,000 events.
 * What a client does (making a pub frame, reading the frames it gets) is kept small: the
 * pub frames of a round are made before the round's clock starts, and the sinks only look
 * at a frame's first bytes.
 *
 *   npx tsx bench/tools/pipeline-cost.ts [SESSIONS=5000] [ROUNDS=40] [--redis [--aof]]
 *       [--slice N] [--without watch,checkpoints] [--verbose]
 *     --redis: the redis engine on a private redis-server (AOF off, or everysec with
 *       --aof), whose own CPU is not counted; the memory engine otherwise.
 *     --slice N: N publishes (and N acks) per turn, then the next turn; a node at 10,000
 *       events/s takes a few hundred per turn. Without it all arrive in one turn.
 *     --without: an ablation through a proxy engine, to see what a part costs: `watch`
 *       (no cross-node notices, so the node does not hear its own appends),
 *       `checkpoints` (acks are not written). Not a gateway that keeps its promises.
 *     --verbose: every round's value too.
 *
 * Profile it with `node --cpu-prof --import tsx bench/tools/pipeline-cost.ts …` and read
 * the profile with bench/tools/cpuprofile-top.ts.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { cpuUsage } from 'node:process';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import type { JwtVerifier, Principal } from '../../src/auth/jwt.ts';
import { ResumeTokens } from '../../src/auth/resume-token.ts';
import { jsonCodec } from '../../src/codec/json-codec.ts';
import { loadConfig } from '../../src/config/load.ts';
import { actorLimits, createEngine } from '../../src/app.ts';
import type { CheckpointWrite, Engine } from '../../src/engine/engine.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { ActorRegistry } from '../../src/session/actor-registry.ts';
import { CacheBudget } from '../../src/session/cache-budget.ts';
import { Connection } from '../../src/session/connection.ts';
import { RealtimeHandler } from '../../src/session/realtime-handler.ts';
import type { Sink } from '../../src/session/sink.ts';
import { systemClock } from '../../src/util/clock.ts';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';

const argv = process.argv.slice(2);
const flag = (name: string): boolean => {
  const at = argv.indexOf(name);
  if (at >= 0) argv.splice(at, 1);
  return at >= 0;
};
const useRedis = flag('--redis');
const sliceAt = argv.indexOf('--slice');
// Publishes (and acks) per turn: a node at 10,000 events/s takes a few hundred per turn, not all at once.
const slice = sliceAt >= 0 ? Number(argv.splice(sliceAt, 2)[1]) : Infinity;
const withoutAt = argv.indexOf('--without');
/** Parts left out, to see what each costs (see the header). */
const without = new Set(withoutAt >= 0 ? argv.splice(withoutAt, 2)[1]!.split(',') : []);
for (const part of without) {
  if (part !== 'watch' && part !== 'checkpoints') {
    console.error(`pipeline-cost: --without takes watch and/or checkpoints, not "${part}"`);
    process.exit(2);
  }
}
const verbose = flag('--verbose');
const aof = flag('--aof');
const sessions = Number(argv[0] ?? 5000);
const rounds = Number(argv[1] ?? 40);
if (!Number.isInteger(sessions) || sessions < 1 || !Number.isInteger(rounds) || rounds < 4) {
  console.error(
    'usage: pipeline-cost.ts [SESSIONS] [ROUNDS>=4] [--redis [--aof]] [--slice N] [--without PARTS]',
  );
  process.exit(2);
}

const TENANT = 'ten_bench';
const TOKEN = 'bench-agent';
// The one token this stand-in accepts: hellos are set-up, not what is measured.
const jwt = {
  verify: (token: string): Promise<Principal> =>
    token === TOKEN
      ? Promise.resolve({ userId: 'agt', tenantId: TENANT, role: 'agent', expiresAt: 4_102_444_800 })
      : Promise.reject(new Error('bad token')),
} as unknown as JwtVerifier;

const EV_PREFIX = Buffer.from('{"op":"ev","seq":');
const PUBACK_PREFIX = Buffer.from('{"op":"puback"');

/** Events and pubacks sent to every client so far (a round waits for these, not a scan). */
const sent = { events: 0, pubacks: 0 };

/** A client's socket: counts the events and pubacks it is sent, and which seq came last. */
class CountingSink implements Sink {
  lastSeq = 0;
  other = 0;
  closed: number | undefined;

  send(bytes: Uint8Array): boolean {
    if (startsWith(bytes, EV_PREFIX)) {
      sent.events++;
      this.lastSeq = readInt(bytes, EV_PREFIX.length);
    } else if (startsWith(bytes, PUBACK_PREFIX)) sent.pubacks++;
    else this.other++;
    return true;
  }
  bufferedAmount(): number {
    return 0;
  }
  cork(fn: () => void): void {
    fn();
  }
  close(code: number): void {
    this.closed ??= code;
  }
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

function readInt(bytes: Uint8Array, at: number): number {
  let n = 0;
  for (let i = at; i < bytes.length; i++) {
    const digit = bytes[i]! - 0x30;
    if (digit < 0 || digit > 9) break;
    n = n * 10 + digit;
  }
  return n;
}

const toBuffer = (text: string): ArrayBuffer => {
  const bytes = Buffer.from(text);
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
};

let scavenges = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries())
    if ((entry as { detail?: { kind?: number } }).detail?.kind === 1) scavenges++;
}).observe({ entryTypes: ['gc'] });

const redis = useRedis
  ? await RedisServer.start(aof ? { aof: true, appendfsync: 'everysec' } : { aof: false })
  : undefined;
const { config } = loadConfig({
  AUTH_JWT_SECRET: 'pipeline-cost-secret-pipeline-cost-secret',
  ...(redis ? { REDIS_URL: redis.url, REDIS_KEY_PREFIX: 'pipe:' } : {}),
});
const logger = silentLogger();
const engine: Engine = ablated(await createEngine(config, systemClock, logger));

/**
 * The engine with the parts named by --without taken out: `watch` (no cross-node notices,
 * so a redis engine's node does not hear its own appends) and `checkpoints` (acks are
 * not written; the calls answer at once with the seq they were given).
 */
function ablated(inner: Engine): Engine {
  if (without.size === 0) return inner;
  return new Proxy(inner, {
    get(target, key) {
      if (key === 'watch' && without.has('watch')) return () => ({ ready: Promise.resolve(), stop() {} });
      if (key === 'saveCheckpoints' && without.has('checkpoints'))
        return (_: string, writes: readonly CheckpointWrite[]) => Promise.resolve(writes.map((w) => w.seq));
      if (key === 'saveCheckpoint' && without.has('checkpoints'))
        return (_: string, __: string, ___: number, seq: number) => Promise.resolve(seq);
      const value = Reflect.get(target, key, target) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}
const metrics = new Metrics();
const resumeTokens = new ResumeTokens(config.AUTH_JWT_SECRET);
const registry = new ActorRegistry({
  engine,
  clock: systemClock,
  metrics,
  logger,
  issueResumeToken: (claims) => resumeTokens.issue(claims),
  nodeId: 'bench',
  cacheBudget: new CacheBudget(config.NODE_CACHE_BYTES),
  limits: actorLimits(config),
});
const handler = new RealtimeHandler({
  registry,
  engine,
  jwt,
  resumeTokens,
  clock: systemClock,
  metrics,
  logger,
  helloTimeoutMs: config.HELLO_TIMEOUT_MS,
  maxInFlight: config.MAX_IN_FLIGHT,
});

async function waitFor(what: string, done: () => boolean): Promise<void> {
  const deadline = performance.now() + 30_000;
  while (!done()) {
    if (performance.now() > deadline) throw new Error(`pipeline-cost: timed out waiting for ${what}`);
    // a timer, not setImmediate: spinning through turns while Redis answers would be
    // counted as the gateway's CPU
    await sleep(1);
  }
}

const checkpointed = (conn: Connection): boolean =>
  conn.savedSeq === conn.ackedSeq && !conn.checkpointWriting;

interface Client {
  conn: Connection;
  sink: CountingSink;
}

const clients: Client[] = [];
try {
  for (let i = 0; i < sessions; i++) {
    const id = `ses_pipe${String(i).padStart(6, '0')}`;
    await engine.createSession({ id, tenantId: TENANT, ownerId: 'usr', createdAt: new Date().toISOString() });
    const sink = new CountingSink();
    const conn = new Connection(i + 1, jsonCodec, sink);
    handler.opened(conn);
    handler.message(
      conn,
      toBuffer(JSON.stringify({ op: 'hello', sessionId: id, token: TOKEN, after: 'latest' })),
    );
    clients.push({ conn, sink });
    if (i % 500 === 499) await waitFor('welcomes', () => clients.every((c) => c.conn.live));
  }
  await waitFor('welcomes', () => clients.every((c) => c.conn.live));

  const text = 'x'.repeat(100);
  const samples: number[] = [];
  const userSamples: number[] = [];
  let events = 0;
  for (let r = 1; r <= rounds; r++) {
    const pubs = clients.map((_, i) =>
      toBuffer(
        `{"op":"pub","id":"evt_${r}_${i}","type":"transcript.partial",` +
          `"payload":{"segmentId":"seg_${i}","revision":${r},"text":"${text}"}}`,
      ),
    );
    const before = cpuUsage();
    for (let i = 0; i < clients.length; i++) {
      handler.message(clients[i]!.conn, pubs[i]!);
      if ((i + 1) % slice === 0) await nextTurn();
    }
    const target = r * clients.length;
    await waitFor('events', () => sent.events >= target && sent.pubacks >= target);
    // every client is at the same seq: one ack frame serves them all
    const ack = toBuffer(`{"op":"ack","seq":${clients[0]!.sink.lastSeq}}`);
    for (let i = 0; i < clients.length; i++) {
      handler.message(clients[i]!.conn, ack);
      if ((i + 1) % slice === 0) await nextTurn();
    }
    // a scan that resumes where it stopped: O(clients) per round, not per turn
    let written = 0;
    await waitFor('checkpoints', () => {
      while (written < clients.length && checkpointed(clients[written]!.conn)) written++;
      return written === clients.length;
    });
    const used = cpuUsage(before);
    samples.push((used.user + used.system) / clients.length);
    userSamples.push(used.user / clients.length);
    events += clients.length;
  }
  const bad = clients.filter((c) => c.sink.closed !== undefined || c.sink.other > 2);
  if (bad.length > 0)
    throw new Error(`pipeline-cost: ${bad.length} clients closed or sent unexpected frames`);
  const warm = Math.floor(rounds / 4);
  const sorted = samples.slice(warm).sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  const users = userSamples.slice(warm).sort((a, b) => a - b);
  console.log(
    `pipeline-cost: ${useRedis ? `redis engine${aof ? ' (aof everysec)' : ''}` : 'memory engine'}, ` +
      `${sessions} sessions × 1 connection, ${rounds} rounds` +
      `${Number.isFinite(slice) ? `, ${slice} publishes per turn` : ''}` +
      `${without.size > 0 ? `, without ${[...without].join(' and ')}` : ''}`,
  );
  if (verbose) console.log(`  per round: ${samples.map((us) => us.toFixed(0)).join(' ')} µs per event`);
  console.log(
    `  median ${median.toFixed(2)} µs of process CPU per event ` +
      `(quartiles ${sorted[Math.floor(sorted.length / 4)]!.toFixed(2)}–${sorted[Math.floor((sorted.length * 3) / 4)]!.toFixed(2)}), ` +
      `user ${users[Math.floor(users.length / 2)]!.toFixed(2)}, ` +
      `${((scavenges * 1000) / events).toFixed(2)} scavenges per 1,000 events`,
  );
} finally {
  for (const { conn } of clients) conn.close(1001, 'bench over');
  await engine.close();
  await redis?.stop();
}
