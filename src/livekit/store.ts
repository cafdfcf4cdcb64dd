/**
 * The LiveKit bridge's storage port: what the bridge must share between gateway nodes
 * (ARCHITECTURE-NOTES: state lives in the engine, never only in one node's memory). Two
 * implementations pass one contract suite (test/livekit/store-contract.ts):
 * `MemoryLiveKitStore` (src/engine/memory/livekit-store.ts, one node, beside the memory
 * engine) and `RedisLiveKitStore` (src/engine/redis/livekit-store.ts, many nodes).
 *
 * What it holds:
 * - the **binding** of a session to its LiveKit room: one room per session, for ever.
 *   The first `bindRoom` decides; every later call, on any node, gets the same room. A
 *   room → session index answers webhooks, which name rooms, not sessions.
 * - **webhook claims**: one claim per LiveKit webhook id, so each is processed once
 *   however many copies arrive on however many nodes.
 * - **presence**, keyed by room sid (a room closed and reopened under the same name is a
 *   new instance with a new sid): per participant sid, `joined` or `left`, and which
 *   event made it so. It is what lets out-of-order webhooks and the reconciler agree on
 *   one story (see `transitionParticipant`).
 * - the **live rooms** the reconciler walks, and a **lease** so that one node at a time
 *   reconciles.
 *
 * In Redis every key of a session carries its `{<sessionId>}` hash tag; the room index,
 * webhook claims, live set and leases have their own keys (own slots). Every method may
 * reject with EngineUnavailableError like the engine's.
 */
export interface LiveKitStore {
  /**
   * Binds `room` to the session unless it has a room already, and returns the binding
   * that holds (so `room` is only a candidate). Atomic per session. Also writes the
   * room → session index entry, repairing it if an earlier call stopped in between.
   */
  bindRoom(sessionId: string, room: string): Promise<RoomBinding>;
  getBinding(sessionId: string): Promise<RoomBinding | undefined>;
  /** The session a room belongs to, from the index; undefined for a room the gateway never bound. */
  sessionOfRoom(room: string): Promise<string | undefined>;

  /**
   * Claims the one `createRoom` call for this session's room: true for exactly one caller
   * until `markRoomCreated` (then false for ever) or until the claim expires after
   * `ttlMs` (a claimant that died) or is released (a claimant that failed).
   */
  claimRoomCreation(sessionId: string, ttlMs: number): Promise<boolean>;
  releaseRoomCreation(sessionId: string): Promise<void>;
  markRoomCreated(sessionId: string): Promise<void>;

  /**
   * Records the sid of the room's current instance: the newest one. `createdAt` (ms) is
   * when that instance was created, or a time at which it was known to be open (a
   * listing, a createRoom reply). A sid older than the one recorded is ignored: a late
   * webhook of an earlier instance (a retried `room_started`) must not make it current
   * again, or the current instance's `room_finished` would end nothing and the old one's
   * would end the session.
   */
  noteRoomSid(sessionId: string, roomSid: string, createdAt: number): Promise<string | undefined>;

  /**
   * Claims a webhook id: true for exactly one caller while the claim lives (`ttlMs`),
   * false for every other copy.
   */
  claimWebhook(webhookId: string, ttlMs: number): Promise<boolean>;
  /** Drops a claim whose processing failed, so LiveKit's retry is processed. */
  releaseWebhook(webhookId: string): Promise<void>;

  /**
   * Moves a participant of a room instance, atomically:
   * - to `joined`: applies when the participant has no state yet;
   * - to `left`: applies when it has none or is `joined` (a left before its joined is
   *   kept, so the late joined is recognised as stale and ignored).
   * A repeat by the same `eventId` as the one that made the current state also reports
   * `applied` (a retried webhook whose event was not yet appended appends it again; the
   * stream dedupes it). Returns whether the caller should emit its event, and the state
   * before.
   */
  transitionParticipant(
    sessionId: string,
    roomSid: string,
    change: ParticipantChange,
  ): Promise<{ applied: boolean; previous: ParticipantPresence | undefined }>;
  /** Undoes a transition whose event could not be appended (best effort), if it is still current. */
  revertParticipant(
    sessionId: string,
    roomSid: string,
    change: ParticipantChange,
    previous: ParticipantPresence | undefined,
  ): Promise<void>;
  /** Every participant of a room instance the store knows, joined or left. */
  participants(sessionId: string, roomSid: string): Promise<ParticipantPresence[]>;

  /** Adds the session to the live rooms the reconciler walks. */
  markLive(sessionId: string): Promise<void>;
  /**
   * The session's room closed while the session goes on (nobody joined in time, or the
   * call has not started): it leaves the live rooms, and the next token request creates
   * the room again (`roomCreated` false). Nothing expires: the room may reopen.
   */
  roomClosed(sessionId: string): Promise<void>;
  /**
   * Takes the session off the live rooms and lets its bridge state expire after
   * `retentionS` (like the session's stream after it ended).
   */
  retire(sessionId: string, retentionS: number): Promise<void>;
  /**
   * Up to `limit` live sessions from position `cursor` (0 to start); `next` is where the
   * following page starts, 0 once the walk wrapped around. Sessions added or retired
   * meanwhile may be seen twice or missed once: the walk repeats.
   */
  liveSessions(cursor: number, limit: number): Promise<{ sessionIds: string[]; next: number }>;

  /**
   * A lease: true when `holder` holds `name` now (newly or again) for `ttlMs`; false while
   * another holder's lease lives.
   */
  tryLease(name: string, holder: string, ttlMs: number): Promise<boolean>;

  /** Releases connections. */
  close(): Promise<void>;
}

export interface RoomBinding {
  sessionId: string;
  /** The LiveKit room name. */
  room: string;
  /** True once `createRoom` succeeded for it. */
  roomCreated: boolean;
  /** The sid of the room's latest instance, once a webhook or the reconciler saw one. */
  roomSid?: string;
}

export type PresenceStatus = 'joined' | 'left';

export interface ParticipantPresence {
  participantSid: string;
  identity: string;
  status: PresenceStatus;
  /** The id of the stream event that made this state. */
  eventId: string;
  /** When the store recorded it (ms since the epoch, the recording node's clock). */
  at: number;
}

export interface ParticipantChange {
  participantSid: string;
  identity: string;
  to: PresenceStatus;
  eventId: string;
  at: number;
}

/**
 * The transition rule both stores implement (the redis one in Lua, mirroring this):
 * whether `change` applies on top of `current`.
 */
export function transitionApplies(
  current: ParticipantPresence | undefined,
  change: ParticipantChange,
): boolean {
  if (current === undefined) return true;
  if (current.status === change.to && current.eventId === change.eventId) return true;
  return change.to === 'left' && current.status === 'joined';
}
