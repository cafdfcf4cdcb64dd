import { Type, type Static } from '@sinclair/typebox';

/**
 * Every environment variable the gateway reads, with its default. The schema is closed:
 * an unknown `LIFEOS_`-style variable is not an error (the environment is shared), but
 * every listed one is validated and every error is reported at once. The README's
 * configuration table is checked against this object by a test.
 */
const Int = (opts: { minimum: number; maximum?: number; default: number; description: string }) =>
  Type.Integer(opts);

/**
 * Upper bounds that keep a setting inside what its consumer takes, so a value past them
 * is a clear startup error instead of a broken gateway: Node's timers fire at once for a
 * delay over 2^31-1 ms (a drain of SHUTDOWN_TIMEOUT_MS gave up after 1 ms); uWS aborts on
 * an idle timeout over 960 s (twice HEARTBEAT_MS) and keeps frame and buffer limits in
 * 32 bits (4 × MAX_FRAME_BYTES, 2 × SOCKET_BACKPRESSURE_BYTES + MAX_FRAME_BYTES).
 */
const MAX_TIMER_MS = 2_147_483_647;

export const ConfigSchema = Type.Object(
  {
    HOST: Type.String({ default: '0.0.0.0', description: 'Interface to bind.' }),
    PORT: Int({
      minimum: 0,
      maximum: 65535,
      default: 8080,
      description: 'TCP port; 0 picks a free one (logged).',
    }),
    PORT_SHARING: Type.Union([Type.Literal('refuse'), Type.Literal('allow')], {
      default: 'refuse',
      description:
        '`refuse`: exit 1 when another process listens on `PORT` (SO_REUSEPORT would otherwise let two gateways share it silently). `allow`: share it, for a deliberate handover between two gateways with the same secret and Redis.',
    }),
    LISTEN_SOCKETS: Int({
      minimum: 1,
      maximum: 64,
      default: 8,
      description:
        'Listen sockets this process opens on `PORT` (SO_REUSEPORT): each queues up to 512 handshakes the event loop has not accepted yet, so a burst of reconnects is not dropped.',
    }),
    NODE_ENV: Type.String({
      default: 'development',
      description: '`production` refuses a generated JWT secret.',
    }),
    NODE_ID: Type.String({
      default: '',
      description: 'Name of this node in logs and metrics; default: hostname-pid.',
    }),
    LOG_LEVEL: Type.Union(
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
      { default: 'info', description: 'pino log level.' },
    ),
    REDIS_URL: Type.String({
      default: '',
      description: 'redis:// URL; unset: the embedded in-memory engine.',
    }),
    REDIS_CLUSTER_NODES: Type.String({
      default: '',
      description:
        'Redis Cluster seed nodes, comma-separated `host:port` (or `redis://[user:pass@]host:port`, `rediss://…`): the redis engine on a cluster. Set this or `REDIS_URL`, not both.',
    }),
    REDIS_CLUSTER_NAT_MAP: Type.String({
      default: '',
      description:
        'With `REDIS_CLUSTER_NODES`, for nodes that announce addresses the gateway cannot reach as they are (Docker or Kubernetes port mapping, NAT): comma-separated `announced=reachable` pairs, each `host:port`, e.g. `10.0.0.5:6379=127.0.0.1:7001`. Addresses not listed are used as announced.',
    }),
    REDIS_KEY_PREFIX: Type.String({ default: 'lo:', description: 'Prefix of every Redis key.' }),
    REDIS_WAIT_REPLICAS: Int({
      minimum: 0,
      maximum: 16,
      default: 0,
      description:
        'Replicas that must confirm a write of events (Redis `WAIT`) before the gateway acknowledges it (puback, 201): then a failover to one of them loses no acknowledged event. Reads wait for them too, and other nodes hear of new events only once confirmed, so no subscriber is given an event a failover could lose. Subscribers (a `hello`, fresh or resumed) and checkpoints wait too, so none is lost or fenced by a failover. It waits at most half of `REDIS_COMMAND_TIMEOUT_MS`, then fails as `unavailable` (retryable). 0: acknowledged once the master has it. On a cluster, replicas of the master the write went to.',
    }),
    REDIS_COMMAND_TIMEOUT_MS: Int({
      minimum: 50,
      maximum: 600_000,
      default: 2000,
      description: 'A Redis command slower than this fails as `unavailable`.',
    }),
    AUTH_JWT_SECRET: Type.String({
      default: '',
      description:
        'HS256 secret for bearer JWTs (≥ 32 bytes). Unset: a development secret is generated, with a warning.',
    }),
    RESUME_WINDOW_MS: Int({
      minimum: 1000,
      maximum: MAX_TIMER_MS,
      default: 120_000,
      description: 'How long a subscriber may resume after its connection closed.',
    }),
    HELLO_TIMEOUT_MS: Int({
      minimum: 100,
      maximum: MAX_TIMER_MS,
      default: 10_000,
      description: 'A socket that sends no `hello` in this time is closed with 4001.',
    }),
    HEARTBEAT_MS: Int({
      minimum: 1000,
      maximum: 480_000,
      default: 25_000,
      description: 'Interval clients should ping at; idle sockets close after 2×.',
    }),
    MAX_FRAME_BYTES: Int({
      minimum: 1024,
      maximum: 256 * 1024 * 1024,
      default: 65_536,
      description: 'Largest client frame; larger closes the socket (1009).',
    }),
    MAX_HTTP_BODY_BYTES: Int({
      minimum: 1024,
      maximum: 256 * 1024 * 1024,
      default: 65_536,
      description: 'Largest HTTP request body (413 beyond).',
    }),
    MAX_IN_FLIGHT: Int({
      minimum: 1,
      maximum: 100_000,
      default: 256,
      description: 'Events delivered and not yet acked per connection.',
    }),
    SOCKET_BACKPRESSURE_BYTES: Int({
      minimum: 4096,
      maximum: 1024 * 1024 * 1024,
      default: 1_048_576,
      description: 'Socket buffer above which a connection is paused.',
    }),
    SLOW_CONSUMER_TIMEOUT_MS: Int({
      minimum: 100,
      maximum: MAX_TIMER_MS,
      default: 10_000,
      description: 'A socket paused by backpressure this long is closed with 4101.',
    }),
    REPLAY_BATCH: Int({
      minimum: 1,
      maximum: 10_000,
      default: 256,
      description: 'Events read from the engine per catch-up step.',
    }),
    ACTOR_QUEUE_MAX: Int({
      minimum: 1,
      default: 10_000,
      description: 'Pending operations per session actor before `overloaded`.',
    }),
    ACTOR_CACHE_EVENTS: Int({
      minimum: 0,
      default: 1024,
      description: 'Recent encoded events kept per session actor for catch-up.',
    }),
    NODE_CACHE_BYTES: Int({
      minimum: 1_048_576,
      default: 67_108_864,
      description:
        'Memory the cached events of all session actors may take together (estimated: their encoded frames plus about 0.3 KB each); past it the least recently cached go first.',
    }),
    HEAD_AUDIT_MS: Int({
      minimum: 0,
      maximum: MAX_TIMER_MS,
      default: 10_000,
      description:
        'A session with connections on this node that has heard nothing of its head for this long has it read again, in batches: a lost cross-node notice delays its subscribers by at most about this. 0: off.',
    }),
    ACTOR_IDLE_MS: Int({
      minimum: 1000,
      maximum: MAX_TIMER_MS,
      default: 60_000,
      description: 'An actor with no connections is evicted after this.',
    }),
    HISTORY_MAX_EVENTS: Int({
      minimum: 1,
      default: 100_000,
      description: 'Events retained per session stream.',
    }),
    HISTORY_TTL_AFTER_END_S: Int({
      minimum: 1,
      default: 86_400,
      description: 'Seconds a session’s stream is kept after it ended.',
    }),
    SHUTDOWN_TIMEOUT_MS: Int({
      minimum: 100,
      maximum: MAX_TIMER_MS,
      default: 10_000,
      description: 'Longest graceful shutdown before forced exit.',
    }),
    WORKERS: Int({
      minimum: 0,
      maximum: 1024,
      default: 1,
      description:
        'Gateway processes on this machine, sharing `PORT` (`--workers N` overrides); 0: one per core. Above 1 needs the redis engine.',
    }),
    METRICS_PORT: Type.Union([Type.Literal(''), Type.Integer({ minimum: 0, maximum: 65535 })], {
      default: '',
      description:
        'Port of a separate metrics listener on `HOST` (0 picks a free one, logged): `/metrics` of every worker merged (each series labelled with its `node`), `/workers`, `/healthz`. With `WORKERS=1` the gateway process serves it itself. Unset: none.',
    }),
    CONSOLE_ENABLED: Type.Union([Type.Literal('false'), Type.Literal('true')], {
      default: 'false',
      description:
        'Serves the session inspector: the `/console` page and its operator-only API `/v1/inspector/*` (docs/inspector.md). Off: both answer 404.',
    }),
    LIVEKIT_URL: Type.String({
      default: '',
      description:
        'LiveKit server URL (`wss://…`, `https://…`), handed to clients with their tokens; also where rooms are created and participants reconciled. Unset: tokens and webhooks only (see docs/livekit.md). Needs the key and secret.',
    }),
    LIVEKIT_API_KEY: Type.String({
      default: '',
      description:
        'LiveKit API key: signs participant tokens and verifies webhooks. Unset: the LiveKit bridge is off (its routes answer `livekit_not_configured`).',
    }),
    LIVEKIT_API_SECRET: Type.String({
      default: '',
      description: 'LiveKit API secret (≥ 32 characters); required with `LIVEKIT_API_KEY`.',
    }),
    LIVEKIT_TOKEN_TTL_S: Int({
      minimum: 30,
      maximum: 86_400,
      default: 600,
      description: 'Lifetime of a LiveKit participant token from `POST /v1/call/sessions/:id/livekit-token`.',
    }),
    LIVEKIT_WEBHOOK_MAX_AGE_S: Int({
      minimum: 10,
      maximum: 86_400,
      default: 300,
      description:
        'A LiveKit webhook whose `createdAt` is older than this (or more than 30 s in the future) is refused with 400.',
    }),
    LIVEKIT_MAX_PARTICIPANTS: Int({
      minimum: 0,
      maximum: 100_000,
      default: 0,
      description: '`maxParticipants` of the rooms the gateway creates; 0: no limit.',
    }),
    LIVEKIT_EMPTY_TIMEOUT_S: Int({
      minimum: 0,
      maximum: 86_400,
      default: 300,
      description:
        '`emptyTimeout` of the rooms the gateway creates: LiveKit closes a room this long after it emptied (or was never joined).',
    }),
    LIVEKIT_RECONCILE_INTERVAL_MS: Int({
      minimum: 0,
      maximum: 3_600_000,
      default: 30_000,
      description:
        "With `LIVEKIT_URL`: how often live rooms' participants are compared with LiveKit's (one node per tick); 0: never, else ≥ 1000.",
    }),
  },
  { additionalProperties: false },
);

export type Config = Static<typeof ConfigSchema>;
export type ConfigKey = keyof Config;
export const ConfigKeys = Object.keys(ConfigSchema.properties) as ConfigKey[];
