import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** What became of a LiveKit webhook: the answer's status, or why it was refused. */
export const LIVEKIT_WEBHOOK_OUTCOMES = [
  'processed',
  'duplicate',
  'ignored',
  'bad_signature',
  'stale',
  'bad_request',
  'error',
] as const;
export type LiveKitWebhookOutcome = (typeof LIVEKIT_WEBHOOK_OUTCOMES)[number];
/** The LiveKit RoomService calls the bridge makes. */
export const LIVEKIT_ROOM_SERVICE_OPS = ['createRoom', 'listRooms', 'listParticipants'] as const;
export type LiveKitRoomServiceOp = (typeof LIVEKIT_ROOM_SERVICE_OPS)[number];

/** Kinds of `lifeos_remote_notices_total`: exported at 0 from the start, so alerts on them have a series. */
export const REMOTE_NOTICE_KINDS = ['head', 'head_during_load', 'anti_entropy'] as const;

/** Longest a scrape waits for the readiness probe (see Metrics#collectReady). */
const READY_PROBE_WAIT_MS = 250;

/**
 * Prometheus metrics of one gateway process. Hot-path counters are incremented once per
 * batch or fan-out (`inc(n)`), never once per subscriber per event.
 */
export class Metrics {
  readonly registry = new Registry();

  readonly connections = new Gauge({
    name: 'lifeos_ws_connections',
    help: 'Open WebSocket connections, by subprotocol codec.',
    labelNames: ['codec'] as const,
    registers: [this.registry],
  });
  readonly actors = new Gauge({
    name: 'lifeos_session_actors',
    help: 'Session actors alive on this node.',
    registers: [this.registry],
  });
  /** The node's cache budget, read at scrape time; set by the app. */
  cacheBudget: { readonly bytes: number } | undefined;
  readonly eventCacheBytes: Gauge = new Gauge({
    name: 'lifeos_event_cache_bytes',
    help: 'Estimated heap of the encoded events cached by all session actors of this node (bounded by NODE_CACHE_BYTES).',
    registers: [this.registry],
    collect: (): void => this.eventCacheBytes.set(this.cacheBudget?.bytes ?? 0),
  });
  readonly eventsAppended = new Counter({
    name: 'lifeos_events_appended_total',
    help: 'Events accepted and stored (duplicates excluded).',
    registers: [this.registry],
  });
  readonly eventsDuplicate = new Counter({
    name: 'lifeos_events_duplicate_total',
    help: 'Publishes of an eventId already stored (answered with the original seq).',
    registers: [this.registry],
  });
  /**
   * Counted per subscriber per event, so it is a plain number on the hot path (no
   * prom-client call, which allocates) and folded into the counter at scrape time.
   */
  delivered = 0;
  #deliveredReported = 0;
  readonly eventsDelivered = new Counter({
    name: 'lifeos_events_delivered_total',
    help: 'Event frames sent to subscribers (live and catch-up).',
    registers: [this.registry],
    collect: () => {
      this.eventsDelivered.inc(this.delivered - this.#deliveredReported);
      this.#deliveredReported = this.delivered;
    },
  });
  readonly remoteNotices = new Counter({
    name: 'lifeos_remote_notices_total',
    help: 'Cross-node notices that moved a session forward on this node, by kind (head_during_load: a head notice that overtook the first head read of a session here, kept until the read was in; anti_entropy: a head the audit found past what the node had heard, i.e. a lost notice).',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly headAudits = new Counter({
    name: 'lifeos_head_audits_total',
    help: 'Session heads read by the anti-entropy audit (HEAD_AUDIT_MS): sessions with connections here that heard nothing of their head for that long. The ones found behind count in lifeos_remote_notices_total{kind="anti_entropy"}.',
    registers: [this.registry],
  });
  readonly gapFills = new Counter({
    name: 'lifeos_gap_fills_total',
    help: 'Engine reads that filled the cache with events other nodes appended.',
    registers: [this.registry],
  });
  readonly replays = new Counter({
    name: 'lifeos_replays_total',
    help: 'Catch-up reads from the engine (a connection behind the live head).',
    registers: [this.registry],
  });
  /**
   * Outcomes are not exclusive (do not sum them): a refused resume counts its error code
   * (`resume_expired` 4010, `history_gone` 4011, `unavailable` 1013, …) and, when the
   * engine refused it, also `expired`; `superseded_*` count displaced connections (4009).
   */
  readonly resumes = new Counter({
    name: 'lifeos_resumes_total',
    help: 'Resume attempts by outcome: ok, or the error code that refused it (resume_expired, history_gone, unavailable, …); expired is the part of resume_expired the engine refused (counted in both); superseded_local/superseded_remote count connections a resume displaced.',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly closes = new Counter({
    name: 'lifeos_ws_closes_total',
    help: 'Connections closed by the gateway, by close code.',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
  readonly engineLatency = new Histogram({
    name: 'lifeos_engine_call_seconds',
    help: 'Engine call latency by operation.',
    labelNames: ['op'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly transport = new Gauge({
    name: 'lifeos_transport_info',
    help: 'Which uWebSockets.js build is loaded (1 for the active one).',
    labelNames: ['transport'] as const,
    registers: [this.registry],
  });

  readonly engineErrors = new Counter({
    name: 'lifeos_engine_errors_total',
    help: 'Engine calls that failed, by operation and error code (unavailable = Redis trouble).',
    labelNames: ['op', 'code'] as const,
    registers: [this.registry],
  });
  /** Counted once per session per change on each node that notices it (not per connection). */
  readonly epochChanges = new Counter({
    name: 'lifeos_epoch_changes_total',
    help: 'Session streams this node saw move to a new epoch (history lost or rolled back in the engine); their connections close with 4011.',
    registers: [this.registry],
  });

  // LiveKit bridge (src/livekit/). Every labelled series is created at 0 in the
  // constructor, so alerts and dashboards see them before the first webhook (and on a
  // node without the bridge).
  readonly livekitWebhooks = new Counter({
    name: 'lifeos_livekit_webhooks_total',
    help: 'LiveKit webhooks by outcome: processed, duplicate, ignored (200); bad_signature (401), stale (400), bad_request (400); error (5xx, LiveKit retries).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly livekitReconcileCorrections = new Counter({
    name: 'lifeos_livekit_reconcile_corrections_total',
    help: 'Participant events the LiveKit reconciler appended because no webhook had (kind: joined, left).',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly livekitRoomServiceErrors = new Counter({
    name: 'lifeos_livekit_room_service_errors_total',
    help: 'LiveKit RoomService calls that failed, by operation (createRoom, listRooms, listParticipants).',
    labelNames: ['op'] as const,
    registers: [this.registry],
  });
  readonly livekitTokensIssued = new Counter({
    name: 'lifeos_livekit_tokens_issued_total',
    help: 'LiveKit participant tokens issued (POST /v1/call/sessions/:id/livekit-token).',
    registers: [this.registry],
  });

  /** What `/readyz` would answer; set by the server. Probed on each scrape. */
  readinessProbe: (() => Promise<boolean>) | undefined;
  #lastReady = false;
  #readyProbe: Promise<void> | undefined;
  readonly ready = new Gauge({
    name: 'lifeos_ready',
    help: '1 when this node is ready (/readyz 200: the engine answers a ping and the node is not draining), 0 otherwise; probed at each scrape (a probe slower than 250 ms is reported by a later scrape).',
    registers: [this.registry],
    collect: () => this.#collectReady(),
  });

  /**
   * A scrape waits at most READY_PROBE_WAIT_MS for the probe: during a Redis stall a ping
   * takes up to REDIS_COMMAND_TIMEOUT_MS, and /metrics must stay fast exactly then. A
   * slower probe keeps running (one at a time) and its answer is reported next scrape.
   */
  async #collectReady(): Promise<void> {
    const probe = this.readinessProbe;
    if (!probe) return;
    this.#readyProbe ??= probe()
      .catch(() => false)
      .then((ready) => {
        this.#lastReady = ready;
      })
      .finally(() => (this.#readyProbe = undefined));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.#readyProbe,
      new Promise<void>((resolve) => (timer = setTimeout(resolve, READY_PROBE_WAIT_MS))),
    ]);
    clearTimeout(timer);
    this.ready.set(this.#lastReady ? 1 : 0);
  }

  /** `node` labels every series, so metrics of several nodes can be told apart. */
  constructor(nodeId = '') {
    if (nodeId !== '') this.registry.setDefaultLabels({ node: nodeId });
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 10 });
    for (const outcome of LIVEKIT_WEBHOOK_OUTCOMES) this.livekitWebhooks.labels({ outcome }).inc(0);
    for (const kind of ['joined', 'left']) this.livekitReconcileCorrections.labels({ kind }).inc(0);
    for (const op of LIVEKIT_ROOM_SERVICE_OPS) this.livekitRoomServiceErrors.labels({ op }).inc(0);
    for (const kind of REMOTE_NOTICE_KINDS) this.remoteNotices.labels({ kind }).inc(0);
  }

  /**
   * Times an engine call by operation name. On the hot path (an append and a checkpoint
   * per event): one clock read each side and a histogram child per operation, no timer
   * closure or label objects per call.
   */
  time<T>(op: string, call: () => Promise<T>): Promise<T> {
    const start = performance.now();
    let promise: Promise<T>;
    try {
      promise = call();
    } catch (err) {
      promise = rejected(err);
    }
    return promise.then(
      (value) => {
        this.timed(op, start, false, undefined);
        return value;
      },
      (err: unknown) => {
        this.timed(op, start, true, err);
        throw err;
      },
    );
  }

  readonly #latencyByOp = new Map<string, { observe(value: number): void }>();
  readonly #connectionsByCodec = new Map<string, { inc(): void; dec(): void }>();

  /**
   * The open-connections gauge of one codec: a child kept per codec, so an open or a
   * close (one each per handshake) hashes no label object.
   */
  connectionsOf(codec: string): { inc(): void; dec(): void } {
    let child = this.#connectionsByCodec.get(codec);
    if (!child) {
      child = this.connections.labels({ codec });
      this.#connectionsByCodec.set(codec, child);
    }
    return child;
  }

  /**
   * Records an engine call that began at `start` (performance.now()) and just settled:
   * for callers that chain their own handlers onto the call (one promise fewer than
   * `time`).
   */
  timed(op: string, start: number, failed: boolean, err: unknown): void {
    let child = this.#latencyByOp.get(op);
    if (!child) {
      child = this.engineLatency.labels({ op });
      this.#latencyByOp.set(op, child);
    }
    child.observe((performance.now() - start) / 1000);
    if (!failed) return;
    const code = (err as { code?: unknown } | null)?.code;
    this.engineErrors.inc({ op, code: typeof code === 'string' ? code : 'internal' });
  }
}

/** A call that threw instead of rejecting is timed like one that rejected. */
async function rejected(err: unknown): Promise<never> {
  throw err;
}
