import { hostname } from 'node:os';
import { JwtVerifier, type Principal } from './auth/jwt.ts';
import { EventIdSeal } from './auth/event-id-seal.ts';
import { ResumeTokens } from './auth/resume-token.ts';
import { CallService } from './calls/call-service.ts';
import type { Config } from './config/schema.ts';
import type { Engine } from './engine/engine.ts';
import { MemoryEngine } from './engine/memory/memory-engine.ts';
import { MemoryLiveKitStore } from './engine/memory/livekit-store.ts';
import { GatewayError } from './errors/gateway-error.ts';
import { loadConsoleAssets } from './inspector/assets.ts';
import { Inspector } from './inspector/inspector.ts';
import type { SessionLifecycle } from './livekit/ports.ts';
import type { RoomProvider } from './livekit/room-service.ts';
import type { LiveKit } from './livekit/setup.ts';
import type { LiveKitStore } from './livekit/store.ts';
import type { Logger } from './observability/logger.ts';
import { LogThrottle } from './observability/log-throttle.ts';
import { Metrics } from './observability/metrics.ts';
import { CloseCodes } from './protocol/close-codes.ts';
import { ActorRegistry } from './session/actor-registry.ts';
import type { ActorLimits } from './session/session-actor.ts';
import { HeadAudit } from './session/head-audit.ts';
import { RealtimeHandler } from './session/realtime-handler.ts';
import { CacheBudget } from './session/cache-budget.ts';
import { foreignListeners, PortInUseError } from './transport/port.ts';
import { GatewayServer } from './transport/server.ts';
import { transportKind } from './transport/uws.ts';
import { systemClock, type Clock } from './util/clock.ts';

export interface GatewayOptions {
  config: Config;
  logger: Logger;
  clock?: Clock;
  /** An engine built by the caller (tests); otherwise one is made from the config. */
  engine?: Engine;
  /** LiveKit bridge parts built by the caller (tests): its store, LiveKit's RoomService. */
  livekit?: { store?: LiveKitStore; rooms?: RoomProvider };
  /**
   * Once listening, refuse to serve (shut down, reject with PortInUseError) when a listen
   * socket this process does not hold shares the port: `PORT_SHARING=refuse` for a
   * gateway that chose its port itself, not for a worker (its siblings share it).
   */
  refuseSharedPort?: boolean;
}

/** A running gateway: the server, its engine and its actors. */
export interface Gateway {
  readonly port: number;
  readonly nodeId: string;
  readonly engine: Engine;
  readonly metrics: Metrics;
  readonly registry: ActorRegistry;
  /** The anti-entropy head audit (HEAD_AUDIT_MS; not started when 0). */
  readonly headAudit: HeadAudit;
  readonly jwt: JwtVerifier;
  /** The LiveKit bridge, when LIVEKIT_API_KEY is set. */
  readonly livekit: LiveKit | undefined;
  /** Drains: stop accepting, close sockets with 1001, flush, close the engine. */
  shutdown(): Promise<void>;
}

export function nodeIdFrom(config: Config): string {
  return config.NODE_ID || `${hostname()}-${process.pid}`;
}

/** Which Redis the engine and the LiveKit store connect to: one, or a cluster. */
function redisTarget(config: Config): { url: string; clusterNodes: string[]; clusterNatMap: string } {
  return {
    url: config.REDIS_URL,
    clusterNodes: config.REDIS_CLUSTER_NODES.split(',').filter((seed) => seed.trim() !== ''),
    clusterNatMap: config.REDIS_CLUSTER_NAT_MAP,
  };
}

/** What each session actor is held to, from the configuration. */
export function actorLimits(config: Config): ActorLimits {
  return {
    maxInFlight: config.MAX_IN_FLIGHT,
    backpressureBytes: config.SOCKET_BACKPRESSURE_BYTES,
    slowConsumerMs: config.SLOW_CONSUMER_TIMEOUT_MS,
    replayBatch: config.REPLAY_BATCH,
    queueMax: config.ACTOR_QUEUE_MAX,
    cacheEvents: config.ACTOR_CACHE_EVENTS,
    resumeWindowMs: config.RESUME_WINDOW_MS,
    heartbeatMs: config.HEARTBEAT_MS,
    idleMs: config.ACTOR_IDLE_MS,
  };
}

/** Builds the engine the configuration asks for. */
export async function createEngine(config: Config, clock: Clock, logger: Logger): Promise<Engine> {
  const limits = {
    historyMaxEvents: config.HISTORY_MAX_EVENTS,
    historyTtlAfterEndS: config.HISTORY_TTL_AFTER_END_S,
  };
  if (config.REDIS_URL === '' && config.REDIS_CLUSTER_NODES === '') return new MemoryEngine(clock, limits);
  // Loaded only when asked for: the memory engine needs no Redis client at all.
  const { RedisEngine } = await import('./engine/redis/redis-engine.ts');
  return RedisEngine.connect({
    ...redisTarget(config),
    clock,
    limits,
    logger,
    keyPrefix: config.REDIS_KEY_PREFIX,
    commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
    waitReplicas: config.REDIS_WAIT_REPLICAS,
  });
}

/**
 * The LiveKit bridge's store: on the engine's Redis when the engine is Redis (its own
 * connection), else in memory. Only made when LiveKit is configured.
 */
async function createLiveKitStore(
  config: Config,
  engine: Engine,
  clock: Clock,
  logger: Logger,
): Promise<LiveKitStore> {
  if (config.REDIS_URL === '' && config.REDIS_CLUSTER_NODES === '') {
    if (engine.kind === 'redis')
      logger.warn('livekit: the engine is redis but no REDIS_URL is set: bridge state is node-local');
    return new MemoryLiveKitStore(clock);
  }
  const { RedisLiveKitStore } = await import('./engine/redis/livekit-store.ts');
  return RedisLiveKitStore.connect({
    ...redisTarget(config),
    keyPrefix: config.REDIS_KEY_PREFIX,
    commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
    logger,
  });
}

/**
 * The lifecycle as the LiveKit bridge sees it (src/livekit/ports.ts), on the call
 * service: a finished room ends an active (or ending) session, as the gateway itself
 * (a `service` principal of the session's tenant); a move another change made first is
 * not an error.
 */
function liveKitLifecycle(engine: Engine, calls: CallService): SessionLifecycle {
  return {
    async status(sessionId) {
      const session = await engine.getSession(sessionId);
      if (!session) return undefined;
      return { state: session.state, ended: session.state === 'ended' || session.state === 'failed' };
    },
    async endFromProvider(sessionId, reason) {
      const session = await engine.getSession(sessionId);
      if (!session) return true;
      if (session.state !== 'active' && session.state !== 'ending') {
        return session.state === 'ended' || session.state === 'failed';
      }
      const gateway: Principal = {
        userId: 'gateway:livekit',
        tenantId: session.tenantId,
        role: 'service',
        expiresAt: Number.MAX_SAFE_INTEGER,
      };
      try {
        await calls.transition(gateway, sessionId, { to: 'ended', reason });
      } catch (err) {
        // another change won: from active or ending, only to ended or failed
        const raced =
          err instanceof GatewayError && (err.code === 'invalid_transition' || err.code === 'session_ended');
        if (!raced) throw err;
      }
      return true;
    },
  };
}

/** Wires the gateway together and starts listening. */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const { config, logger } = options;
  const clock = options.clock ?? systemClock;
  const nodeId = nodeIdFrom(config);
  const metrics = new Metrics(nodeId);
  metrics.transport.set({ transport: transportKind }, 1);
  // Before the engine: a console that cannot be served fails the start with nothing to close.
  const consoleAssets =
    config.CONSOLE_ENABLED === 'true'
      ? await loadConsoleAssets((err) => logger.error({ err }, 'console: client SDK bundle unavailable'))
      : undefined;
  const engine = options.engine ?? (await createEngine(config, clock, logger));
  const jwt = new JwtVerifier(config.AUTH_JWT_SECRET, () => clock.now());
  const resumeTokens = new ResumeTokens(config.AUTH_JWT_SECRET);
  const eventIds = new EventIdSeal(config.AUTH_JWT_SECRET);

  const cacheBudget = new CacheBudget(config.NODE_CACHE_BYTES);
  metrics.cacheBudget = cacheBudget;
  const warnings = new LogThrottle(logger);
  const registry = new ActorRegistry({
    engine,
    clock,
    metrics,
    logger,
    issueResumeToken: (claims) => resumeTokens.issue(claims),
    nodeId,
    warnings,
    cacheBudget,
    limits: actorLimits(config),
  });
  const headAudit = new HeadAudit({
    registry,
    engine,
    clock,
    metrics,
    warnings,
    quietMs: config.HEAD_AUDIT_MS,
  });
  const calls = new CallService({ engine, clock, eventIds, metrics, logger });
  const inspector = consoleAssets
    ? {
        jwt,
        assets: consoleAssets,
        inspector: new Inspector({
          engine,
          calls,
          registry,
          clock,
          nodeId,
          resumeWindowMs: config.RESUME_WINDOW_MS,
        }),
      }
    : undefined;
  const livekit =
    config.LIVEKIT_API_KEY === ''
      ? undefined
      : // Loaded only when configured: the SDK and its protobuf tables took 120 ms of a 650 ms start.
        (await import('./livekit/setup.ts')).startLiveKit(config, {
          store: options.livekit?.store ?? (await createLiveKitStore(config, engine, clock, logger)),
          lifecycle: liveKitLifecycle(engine, calls),
          events: { publish: (sessionId, event) => registry.get(sessionId).publish(event) },
          clock,
          logger,
          metrics,
          nodeId,
          eventIds,
          ...(options.livekit?.rooms ? { rooms: options.livekit.rooms } : {}),
        });
  const realtime = new RealtimeHandler({
    registry,
    engine,
    jwt,
    resumeTokens,
    clock,
    metrics,
    logger,
    helloTimeoutMs: config.HELLO_TIMEOUT_MS,
    maxInFlight: config.MAX_IN_FLIGHT,
  });
  const server = new GatewayServer(
    {
      host: config.HOST,
      port: config.PORT,
      listenSockets: config.LISTEN_SOCKETS,
      nodeId,
      maxFrameBytes: config.MAX_FRAME_BYTES,
      maxBodyBytes: config.MAX_HTTP_BODY_BYTES,
      backpressureBytes: config.SOCKET_BACKPRESSURE_BYTES,
      heartbeatMs: config.HEARTBEAT_MS,
    },
    {
      realtime,
      engine,
      metrics,
      logger,
      routes: { jwt, calls, engine, registry, clock, historyPageMax: 1000 },
      livekit: { jwt, calls, bridge: livekit?.bridge },
      ...(inspector ? { inspector } : {}),
    },
  );
  const port = await server.listen();
  if (transportKind !== 'native') {
    logger.warn(
      { transport: transportKind },
      'uWebSockets.js native build not loaded: running on the slow JS fallback',
    );
  }
  let stopping: Promise<void> | undefined;
  const shutdown = (): Promise<void> =>
    (stopping ??= (async () => {
      logger.info({ connections: server.connectionCount }, 'draining');
      server.stopAccepting();
      server.closeUnattached(CloseCodes.going_away, 'going_away');
      await livekit?.reconciler?.stop();
      await headAudit.stop();
      await registry.stopAll(CloseCodes.going_away, 'going_away');
      await engine.close();
      await livekit?.stop();
      logger.info('stopped');
    })());

  const foreign = options.refuseSharedPort ? foreignListeners(port, [process.pid]) : undefined;
  if (foreign !== undefined && foreign.length > 0) {
    // Someone bound the port between main's probe and our listen: neither should serve.
    logger.error({ port, foreignSockets: foreign.length }, 'port shared with another process');
    await shutdown();
    throw new PortInUseError(config.HOST, port, 'another listen socket appeared beside ours');
  }
  headAudit.start();
  logger.info(
    {
      port,
      host: config.HOST,
      listenSockets: server.listenSocketCount,
      engine: engine.kind,
      transport: transportKind,
    },
    'listening',
  );

  return { port, nodeId, engine, metrics, registry, headAudit, jwt, livekit, shutdown };
}
