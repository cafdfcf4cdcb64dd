import {
  transitionApplies,
  type LiveKitStore,
  type ParticipantChange,
  type ParticipantPresence,
  type RoomBinding,
} from '../../livekit/store.ts';
import type { Clock } from '../../util/clock.ts';

interface SessionState {
  binding: RoomBinding;
  /** Until when a createRoom claim holds (ms); 0: none. */
  creationClaimUntil: number;
  /** Room sid → participant sid → presence. */
  presence: Map<string, Map<string, ParticipantPresence>>;
  /** Set by `retire`: the state is dropped at this time (ms). */
  expiresAt?: number;
  /** When the instance `binding.roomSid` names was created (see noteRoomSid); 0 if unknown. */
  roomSidAt: number;
}

/**
 * The LiveKit bridge's store in process memory, beside the memory engine: one node only,
 * nothing survives a restart. Claims and leases expire by the injected clock. Webhook
 * claims are pruned as they expire, so memory is bounded by the webhooks of one claim
 * lifetime; retired sessions are dropped after their retention.
 */
export class MemoryLiveKitStore implements LiveKitStore {
  readonly #clock: Clock;
  readonly #sessions = new Map<string, SessionState>();
  readonly #rooms = new Map<string, string>();
  /** Webhook id → claim expiry (ms); insertion order is expiry order for one ttl. */
  readonly #webhooks = new Map<string, number>();
  readonly #live = new Set<string>();
  readonly #leases = new Map<string, { holder: string; until: number }>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  async bindRoom(sessionId: string, room: string): Promise<RoomBinding> {
    let state = this.#session(sessionId);
    if (!state) {
      state = {
        binding: { sessionId, room, roomCreated: false },
        creationClaimUntil: 0,
        presence: new Map(),
        roomSidAt: 0,
      };
      this.#sessions.set(sessionId, state);
    }
    this.#rooms.set(state.binding.room, sessionId);
    return { ...state.binding };
  }

  async getBinding(sessionId: string): Promise<RoomBinding | undefined> {
    const state = this.#session(sessionId);
    return state ? { ...state.binding } : undefined;
  }

  async sessionOfRoom(room: string): Promise<string | undefined> {
    const sessionId = this.#rooms.get(room);
    return sessionId !== undefined && this.#session(sessionId) ? sessionId : undefined;
  }

  async claimRoomCreation(sessionId: string, ttlMs: number): Promise<boolean> {
    const state = this.#session(sessionId);
    const now = this.#clock.now();
    if (!state || state.binding.roomCreated || state.creationClaimUntil > now) return false;
    state.creationClaimUntil = now + ttlMs;
    return true;
  }

  async releaseRoomCreation(sessionId: string): Promise<void> {
    const state = this.#session(sessionId);
    if (state) state.creationClaimUntil = 0;
  }

  async markRoomCreated(sessionId: string): Promise<void> {
    const state = this.#session(sessionId);
    if (!state) return;
    state.binding.roomCreated = true;
    state.creationClaimUntil = 0; // as the redis store deletes its claim
  }

  async noteRoomSid(sessionId: string, roomSid: string, createdAt: number): Promise<string | undefined> {
    const state = this.#session(sessionId);
    if (!state || roomSid === '') return state?.binding.roomSid;
    if (state.binding.roomSid === roomSid) {
      state.roomSidAt = Math.max(state.roomSidAt, createdAt);
    } else if (state.binding.roomSid === undefined || createdAt >= state.roomSidAt) {
      state.binding.roomSid = roomSid;
      state.roomSidAt = createdAt;
    }
    return state.binding.roomSid;
  }

  async claimWebhook(webhookId: string, ttlMs: number): Promise<boolean> {
    const now = this.#clock.now();
    this.#pruneWebhooks(now);
    const until = this.#webhooks.get(webhookId);
    if (until !== undefined && until > now) return false;
    this.#webhooks.delete(webhookId);
    this.#webhooks.set(webhookId, now + ttlMs);
    return true;
  }

  async releaseWebhook(webhookId: string): Promise<void> {
    this.#webhooks.delete(webhookId);
  }

  async transitionParticipant(
    sessionId: string,
    roomSid: string,
    change: ParticipantChange,
  ): Promise<{ applied: boolean; previous: ParticipantPresence | undefined }> {
    const room = this.#room(sessionId, roomSid);
    const previous = room?.get(change.participantSid);
    if (!room || !transitionApplies(previous, change)) return { applied: false, previous };
    room.set(change.participantSid, {
      participantSid: change.participantSid,
      identity: change.identity,
      status: change.to,
      eventId: change.eventId,
      at: change.at,
    });
    return { applied: true, previous };
  }

  async revertParticipant(
    sessionId: string,
    roomSid: string,
    change: ParticipantChange,
    previous: ParticipantPresence | undefined,
  ): Promise<void> {
    const room = this.#room(sessionId, roomSid);
    const current = room?.get(change.participantSid);
    if (!room || current?.eventId !== change.eventId || current.status !== change.to) return;
    if (previous) room.set(change.participantSid, previous);
    else room.delete(change.participantSid);
  }

  async participants(sessionId: string, roomSid: string): Promise<ParticipantPresence[]> {
    return [...(this.#session(sessionId)?.presence.get(roomSid)?.values() ?? [])].map((p) => ({ ...p }));
  }

  async markLive(sessionId: string): Promise<void> {
    const state = this.#session(sessionId);
    if (state && state.expiresAt === undefined) this.#live.add(sessionId);
  }

  async roomClosed(sessionId: string): Promise<void> {
    this.#live.delete(sessionId);
    const state = this.#session(sessionId);
    if (state) state.binding.roomCreated = false;
  }

  async retire(sessionId: string, retentionS: number): Promise<void> {
    this.#live.delete(sessionId);
    const state = this.#session(sessionId);
    if (state) state.expiresAt = this.#clock.now() + retentionS * 1000;
  }

  async liveSessions(cursor: number, limit: number): Promise<{ sessionIds: string[]; next: number }> {
    const all = [...this.#live];
    const start = cursor < all.length ? Math.max(0, cursor) : 0;
    const sessionIds = all.slice(start, start + Math.max(0, limit));
    const next = start + sessionIds.length;
    return { sessionIds, next: next >= all.length ? 0 : next };
  }

  async tryLease(name: string, holder: string, ttlMs: number): Promise<boolean> {
    const now = this.#clock.now();
    const lease = this.#leases.get(name);
    if (lease && lease.until > now && lease.holder !== holder) return false;
    this.#leases.set(name, { holder, until: now + ttlMs });
    return true;
  }

  async close(): Promise<void> {}

  /** The session's state, dropping it once its retention is over. */
  #session(sessionId: string): SessionState | undefined {
    const state = this.#sessions.get(sessionId);
    if (state?.expiresAt !== undefined && state.expiresAt <= this.#clock.now()) {
      this.#sessions.delete(sessionId);
      if (this.#rooms.get(state.binding.room) === sessionId) this.#rooms.delete(state.binding.room);
      return undefined;
    }
    return state;
  }

  #room(sessionId: string, roomSid: string): Map<string, ParticipantPresence> | undefined {
    const state = this.#session(sessionId);
    if (!state) return undefined;
    let room = state.presence.get(roomSid);
    if (!room) state.presence.set(roomSid, (room = new Map<string, ParticipantPresence>()));
    return room;
  }

  #pruneWebhooks(now: number): void {
    for (const [id, until] of this.#webhooks) {
      if (until > now) break;
      this.#webhooks.delete(id);
    }
  }
}
