import type { WebhookEvent } from 'livekit-server-sdk';
import type { Principal } from '../auth/jwt.ts';
import { GatewayError } from '../errors/gateway-error.ts';
import type { Logger } from '../observability/logger.ts';
import type { LiveKitWebhookOutcome, Metrics } from '../observability/metrics.ts';
import type { Clock } from '../util/clock.ts';
import { ProviderEventWriter, type EmitResult } from './emit.ts';
import type { EventSink, SessionLifecycle } from './ports.ts';
import { roomCreatedAt, type RoomProvider } from './room-service.ts';
import type { LiveKitStore, ParticipantChange } from './store.ts';
import { identityOf, issueParticipantToken } from './tokens.ts';
import { createdAtMs, roomOf, translate, webhookEventId } from './translate.ts';
import { WEBHOOK_MAX_FUTURE_MS, WebhookVerifier } from './webhooks.ts';

export interface LiveKitBridgeOptions {
  apiKey: string;
  apiSecret: string;
  /** LIVEKIT_URL; '' when unset (tokens and webhooks only, no RoomService calls). */
  url: string;
  tokenTtlS: number;
  webhookMaxAgeS: number;
  emptyTimeoutS: number;
  maxParticipants: number;
  /** How long bridge state is kept after a room finished (HISTORY_TTL_AFTER_END_S). */
  retentionS: number;
}

export interface LiveKitBridgeDeps {
  store: LiveKitStore;
  lifecycle: SessionLifecycle;
  events: EventSink;
  /** LiveKit's RoomService; undefined without LIVEKIT_URL. */
  rooms: RoomProvider | undefined;
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
}

/** The answer to `POST /v1/call/sessions/:id/livekit-token`. */
export interface LiveKitTokenGrant {
  token: string;
  /** LIVEKIT_URL, for the client to connect to; null when the gateway has none configured. */
  url: string | null;
  room: string;
  identity: string;
  /** RFC 3339: the token admits joins until then. */
  expiresAt: string;
}

/** The answer to a webhook (always 2xx once the signature and age are good). */
export interface WebhookOutcome {
  status: 'processed' | 'duplicate' | 'ignored';
  event: string;
  id: string;
  /** Why nothing was appended (`ignored`). */
  reason?: string;
  /** The canonical type appended, and its seq (`processed`). */
  type?: string;
  seq?: number;
}

/** A room name per session, the same on every node: the binding makes it stick. */
export function roomNameFor(sessionId: string): string {
  return `lifeos-${sessionId}`;
}

/** How long one node may take over the createRoom call before another may try. */
const ROOM_CREATION_CLAIM_MS = 30_000;

/**
 * The LiveKit bridge: participant tokens for a session's room, and LiveKit webhooks
 * translated into the session's stream. The only home of livekit-server-sdk (with the
 * other files of src/livekit/). See docs/livekit.md.
 *
 * Webhook path (answered fast, no LiveKit API call): verify signature and age → claim the
 * webhook id in the store (one claimant on any number of nodes; every other copy answers
 * `duplicate`) → map the room to its session → translate → for participant events move
 * presence (keyed by room sid) → append with eventId `lk.<webhook id>` → for a finished
 * room, end the session through the lifecycle. A failure after the claim releases it and
 * answers 5xx, so LiveKit's retry is processed; everything before the failure is
 * idempotent (presence accepts a repeat of the same event id, the stream dedupes).
 */
export class LiveKitBridge {
  readonly #options: LiveKitBridgeOptions;
  readonly #deps: LiveKitBridgeDeps;
  readonly #verifier: WebhookVerifier;
  readonly #writer: ProviderEventWriter;

  constructor(options: LiveKitBridgeOptions, deps: LiveKitBridgeDeps) {
    this.#options = options;
    this.#deps = deps;
    this.#verifier = new WebhookVerifier({
      apiKey: options.apiKey,
      apiSecret: options.apiSecret,
      maxAgeS: options.webhookMaxAgeS,
      now: () => deps.clock.now(),
    });
    this.#writer = new ProviderEventWriter(deps.events, deps.clock, deps.logger);
  }

  // ── tokens ──────────────────────────────────────────────────────────────────────

  /**
   * A token for `principal` to join the session's room; the caller has checked that the
   * principal may read the session. Binds the room on first use and, with LIVEKIT_URL,
   * creates it once (one node does; the others go ahead, LiveKit also creates a room on
   * first join).
   */
  async issueToken(principal: Principal, sessionId: string): Promise<LiveKitTokenGrant> {
    const status = await this.#deps.lifecycle.status(sessionId);
    if (!status) throw new GatewayError('session_not_found');
    if (status.ended) throw new GatewayError('session_ended');
    const binding = await this.#deps.store.bindRoom(sessionId, roomNameFor(sessionId));
    if (this.#deps.rooms && !binding.roomCreated) await this.#createRoom(sessionId, binding.room);
    const identity = identityOf(principal);
    const { token, expiresAtMs } = await issueParticipantToken({
      apiKey: this.#options.apiKey,
      apiSecret: this.#options.apiSecret,
      ttlS: this.#options.tokenTtlS,
      room: binding.room,
      identity,
      name: principal.userId,
      role: principal.role,
      attributes: { 'lifeos.session': sessionId, 'lifeos.role': principal.role },
    });
    this.#deps.metrics.livekitTokensIssued.inc();
    return {
      token,
      url: this.#options.url === '' ? null : this.#options.url,
      room: binding.room,
      identity,
      expiresAt: new Date(expiresAtMs).toISOString(),
    };
  }

  async #createRoom(sessionId: string, room: string): Promise<void> {
    const { store, rooms, logger } = this.#deps;
    if (!rooms || !(await store.claimRoomCreation(sessionId, ROOM_CREATION_CLAIM_MS))) return;
    try {
      const created = await rooms.createRoom({
        name: room,
        emptyTimeoutS: this.#options.emptyTimeoutS,
        maxParticipants: this.#options.maxParticipants,
        metadata: JSON.stringify({ sessionId }),
      });
      await store.markRoomCreated(sessionId);
      // open now, whatever LiveKit says of its creation: newer than any instance before it
      await store.noteRoomSid(sessionId, created.sid, created.createdAt ?? this.#deps.clock.now());
      await store.markLive(sessionId);
    } catch (err) {
      await store.releaseRoomCreation(sessionId).catch(() => {});
      if (err instanceof GatewayError) throw err;
      logger.warn({ sessionId, room, err }, 'livekit: createRoom failed');
      throw new GatewayError('livekit_unavailable', 'LiveKit did not create the room; retry', { cause: err });
    }
  }

  // ── webhooks ────────────────────────────────────────────────────────────────────

  /**
   * Verifies, dedupes and applies one webhook (see the class comment), and counts its
   * outcome in `lifeos_livekit_webhooks_total`.
   */
  async receiveWebhook(rawBody: Uint8Array, authorization: string): Promise<WebhookOutcome> {
    const counter = this.#deps.metrics.livekitWebhooks;
    try {
      const outcome = await this.#receiveWebhook(rawBody, authorization);
      counter.inc({ outcome: outcome.status });
      return outcome;
    } catch (err) {
      counter.inc({ outcome: refusalOf(err) });
      throw err;
    }
  }

  async #receiveWebhook(rawBody: Uint8Array, authorization: string): Promise<WebhookOutcome> {
    const event = await this.#verifier.verify(rawBody, authorization);
    if (!event.id) throw new GatewayError('bad_request', 'the webhook has no id');
    const base = { event: event.event, id: event.id };
    // A claim outlives every copy that can still pass the age check.
    const claimTtlMs = this.#options.webhookMaxAgeS * 1000 + WEBHOOK_MAX_FUTURE_MS + 60_000;
    if (!(await this.#deps.store.claimWebhook(event.id, claimTtlMs))) return { ...base, status: 'duplicate' };
    try {
      return { ...base, ...(await this.#apply(event)) };
    } catch (err) {
      await this.#deps.store.releaseWebhook(event.id).catch((releaseErr: unknown) => {
        this.#deps.logger.warn(
          { webhookId: event.id, err: releaseErr },
          'livekit: webhook claim not released',
        );
      });
      throw err;
    }
  }

  async #apply(event: WebhookEvent): Promise<Omit<WebhookOutcome, 'event' | 'id'>> {
    const { store, logger } = this.#deps;
    const room = roomOf(event);
    const log = { webhookId: event.id, webhook: event.event, room: room.roomName, roomSid: room.roomSid };
    if (room.roomName === '') return ignored(logger, log, 'no_room');
    const sessionId = await store.sessionOfRoom(room.roomName);
    if (sessionId === undefined) return ignored(logger, log, 'unknown_room');
    const translation = translate(event, room);
    if ('ignore' in translation) return ignored(logger, { ...log, sessionId }, translation.ignore);

    const binding = await store.getBinding(sessionId);
    const roomSid = room.roomSid || binding?.roomSid || '';
    // Any webhook that says when its room was created may name a newer instance (its
    // room_started may have been lost); the store keeps the newest.
    let currentSid = binding?.roomSid;
    const named = event.room !== undefined && roomCreatedAt(event.room) > 0;
    if (roomSid !== '' && (event.event === 'room_started' || named || currentSid === undefined)) {
      currentSid = await store.noteRoomSid(sessionId, roomSid, instanceCreatedAt(event));
    }
    if (this.#deps.rooms && (event.event === 'room_started' || event.event === 'participant_joined')) {
      await store.markLive(sessionId);
    }

    const eventId = webhookEventId(event.id);
    let result: EmitResult;
    if (translation.presence) {
      const change: ParticipantChange = { ...translation.presence, eventId, at: this.#deps.clock.now() };
      const moved = await store.transitionParticipant(sessionId, roomSid, change);
      if (!moved.applied) {
        const why =
          moved.previous?.status === 'left' ? 'participant_already_left' : 'participant_already_joined';
        return ignored(logger, { ...log, sessionId, participant: change.participantSid }, why);
      }
      try {
        result = await this.#writer.emit(sessionId, eventId, translation.type, translation.payload);
      } catch (err) {
        await store.revertParticipant(sessionId, roomSid, change, moved.previous).catch(() => {});
        throw err;
      }
    } else {
      result = await this.#writer.emit(sessionId, eventId, translation.type, translation.payload);
    }

    if (event.event === 'room_finished') {
      // A finished earlier instance of the room (the session's room reopened since) ends nothing.
      const current = currentSid === undefined || currentSid === roomSid;
      if (current) {
        // Retired only once the session has ended: a room that closed before the call
        // was active (nobody joined in time) may reopen, and its webhooks must still find
        // it; the next token request creates it again.
        if (await this.#deps.lifecycle.endFromProvider(sessionId, 'livekit room finished')) {
          await store.retire(sessionId, this.#options.retentionS);
        } else {
          await store.roomClosed(sessionId);
        }
      }
    }
    if (result.status === 'session_ended') return ignored(logger, { ...log, sessionId }, 'session_ended');
    if (result.status === 'invalid') return { status: 'ignored', reason: 'invalid_translation' };
    return { status: 'processed', type: translation.type, seq: result.seq };
  }
}

/** The webhook outcome of a failure: the verifier's refusals by code, anything else `error` (5xx). */
function refusalOf(err: unknown): LiveKitWebhookOutcome {
  if (!(err instanceof GatewayError)) return 'error';
  switch (err.code) {
    case 'webhook_signature_invalid':
      return 'bad_signature';
    case 'webhook_stale':
      return 'stale';
    case 'bad_request':
      return 'bad_request';
    default:
      return 'error';
  }
}

function ignored(
  logger: Logger,
  fields: Record<string, unknown>,
  reason: string,
): { status: 'ignored'; reason: string } {
  logger.info({ ...fields, reason }, 'livekit webhook ignored');
  return { status: 'ignored', reason };
}

/**
 * When the webhook's room instance was created (ms): the room's own creation time, or,
 * when the webhook does not carry it, the webhook's time (a `room_started` is sent as the
 * instance starts).
 */
function instanceCreatedAt(event: WebhookEvent): number {
  const created = event.room ? roomCreatedAt(event.room) : 0;
  if (created > 0) return created;
  const at = createdAtMs(event);
  return Number.isNaN(at) ? 0 : at;
}
