import type { EventIdSeal } from '../auth/event-id-seal.ts';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Clock } from '../util/clock.ts';
import { LiveKitBridge } from './bridge.ts';
import type { EventSink, SessionLifecycle } from './ports.ts';
import { RECONCILER_DEFAULTS, Reconciler } from './reconciler.ts';
import { countingRoomErrors, LiveKitRoomService, type RoomProvider } from './room-service.ts';
import type { LiveKitStore } from './store.ts';

/** RoomService calls (createRoom on the token path, the reconciler's listings) give up after this. */
const ROOM_SERVICE_TIMEOUT_S = 5;

/** The bridge and, with LIVEKIT_URL, its reconciler, started. */
export interface LiveKit {
  readonly bridge: LiveKitBridge;
  readonly reconciler: Reconciler | undefined;
  /** Stops the reconciler (waits for a tick in progress) and closes the store. */
  stop(): Promise<void>;
}

/**
 * Builds the LiveKit bridge from the configuration, or returns undefined when LiveKit is
 * not configured (no LIVEKIT_API_KEY: its routes then answer `livekit_not_configured`).
 * `rooms` replaces the RoomService client (tests point it elsewhere); either way its
 * failures are counted in `metrics`.
 */
export function startLiveKit(
  config: Config,
  deps: {
    store: LiveKitStore;
    lifecycle: SessionLifecycle;
    events: EventSink;
    clock: Clock;
    logger: Logger;
    metrics: Metrics;
    nodeId: string;
    eventIds: EventIdSeal;
    rooms?: RoomProvider;
  },
): LiveKit {
  const provider =
    deps.rooms ??
    (config.LIVEKIT_URL === ''
      ? undefined
      : new LiveKitRoomService(config.LIVEKIT_URL, config.LIVEKIT_API_KEY, config.LIVEKIT_API_SECRET, {
          requestTimeoutS: ROOM_SERVICE_TIMEOUT_S,
        }));
  const rooms = provider && countingRoomErrors(provider, deps.metrics);
  const logger = deps.logger.child({ component: 'livekit' });
  const bridge = new LiveKitBridge(
    {
      apiKey: config.LIVEKIT_API_KEY,
      apiSecret: config.LIVEKIT_API_SECRET,
      url: config.LIVEKIT_URL,
      tokenTtlS: config.LIVEKIT_TOKEN_TTL_S,
      webhookMaxAgeS: config.LIVEKIT_WEBHOOK_MAX_AGE_S,
      emptyTimeoutS: config.LIVEKIT_EMPTY_TIMEOUT_S,
      maxParticipants: config.LIVEKIT_MAX_PARTICIPANTS,
      retentionS: config.HISTORY_TTL_AFTER_END_S,
    },
    {
      store: deps.store,
      lifecycle: deps.lifecycle,
      events: deps.events,
      rooms,
      clock: deps.clock,
      logger,
      metrics: deps.metrics,
    },
  );
  const reconciler = rooms
    ? new Reconciler(
        {
          nodeId: deps.nodeId,
          intervalMs: config.LIVEKIT_RECONCILE_INTERVAL_MS,
          retentionS: config.HISTORY_TTL_AFTER_END_S,
          ...RECONCILER_DEFAULTS,
        },
        {
          store: deps.store,
          eventIds: deps.eventIds,
          rooms,
          lifecycle: deps.lifecycle,
          events: deps.events,
          clock: deps.clock,
          logger,
          metrics: deps.metrics,
        },
      )
    : undefined;
  reconciler?.start();
  logger.info(
    {
      url: config.LIVEKIT_URL || null,
      reconcileIntervalMs: reconciler ? config.LIVEKIT_RECONCILE_INTERVAL_MS : 0,
    },
    'livekit bridge on',
  );
  return {
    bridge,
    reconciler,
    async stop() {
      await reconciler?.stop();
      await deps.store.close();
    },
  };
}
