import type { EventIdSeal } from '../auth/event-id-seal.ts';
import type { ParticipantInfo } from 'livekit-server-sdk';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Clock } from '../util/clock.ts';
import { ProviderEventWriter } from './emit.ts';
import type { EventSink, SessionLifecycle } from './ports.ts';
import type { RoomProvider } from './room-service.ts';
import type { LiveKitStore, ParticipantChange, PresenceStatus, RoomBinding } from './store.ts';
import { isInRoom, reconciledEventId, reconciledParticipantPayload, type RoomRef } from './translate.ts';

export interface ReconcilerOptions {
  nodeId: string;
  /** LIVEKIT_RECONCILE_INTERVAL_MS; 0: `start` does nothing (`tick` still works). */
  intervalMs: number;
  /** Live rooms looked at per tick; the walk continues where it stopped on the next tick. */
  maxRoomsPerTick: number;
  /** RoomService calls in flight at once. */
  concurrency: number;
  /** A participant the store saw join less than this long before the listing is not declared gone. */
  graceMs: number;
  /** How long bridge state is kept after a room is retired (HISTORY_TTL_AFTER_END_S). */
  retentionS: number;
}

export const RECONCILER_DEFAULTS = { maxRoomsPerTick: 50, concurrency: 4, graceMs: 5_000 } as const;

export interface ReconcilerDeps {
  store: LiveKitStore;
  /** Seals the corrections' eventIds (see reconciledEventId). */
  eventIds: EventIdSeal;
  rooms: RoomProvider;
  lifecycle: SessionLifecycle;
  events: EventSink;
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
}

/** What one tick did. */
export interface ReconcileReport {
  /** Set when this node did not hold the lease: another node reconciles. */
  skipped?: 'lease';
  rooms: number;
  joined: number;
  left: number;
  /** Sessions taken off the live set for good (ended or gone): their state expires. */
  retired: number;
  /** Sessions whose room is closed while they go on: off the live set until it reopens. */
  closed: number;
  errors: number;
}

/**
 * Compares what LiveKit says is in each live room (RoomService `ListParticipants`) with
 * the presence the webhooks built, and appends the difference as `call.participant_joined`
 * / `call.participant_left` with `reconciled: true`: webhooks can be lost, and then this
 * is how the stream learns. Bounded: one node per tick (a lease in the store), at most
 * `maxRoomsPerTick` rooms (one `ListRooms` for all of them), `concurrency` calls at once,
 * and no tick starts while the previous one runs.
 *
 * Corrections use the same presence transitions as webhooks, with event ids fixed per
 * (room sid, participant sid, direction), so a webhook that arrives after its correction
 * changes nothing, and a correction made twice is stored once. A participant the store saw
 * join within `graceMs` before the listing is not declared gone (its webhook may have
 * overtaken the listing).
 */
export class Reconciler {
  readonly #options: ReconcilerOptions;
  readonly #deps: ReconcilerDeps;
  readonly #writer: ProviderEventWriter;
  #cursor = 0;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<ReconcileReport> | undefined;
  #stopped = false;

  constructor(options: ReconcilerOptions, deps: ReconcilerDeps) {
    this.#options = options;
    this.#deps = deps;
    this.#writer = new ProviderEventWriter(deps.events, deps.clock, deps.logger);
  }

  /** Ticks every `intervalMs` (unref'd) until `stop`. */
  start(): void {
    if (this.#options.intervalMs <= 0 || this.#timer || this.#stopped) return;
    const schedule = (): void => {
      if (this.#stopped) return;
      this.#timer = setTimeout(() => {
        void this.tick()
          .catch((err: unknown) => this.#deps.logger.warn({ err }, 'livekit reconcile failed'))
          .finally(schedule);
      }, this.#options.intervalMs);
      this.#timer.unref();
    };
    schedule();
  }

  /** Stops ticking and waits for a tick in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => {});
  }

  /** One pass over the next live rooms; concurrent calls share the pass in progress. */
  tick(): Promise<ReconcileReport> {
    this.#running ??= this.#tick().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #tick(): Promise<ReconcileReport> {
    const { store, rooms, lifecycle, logger } = this.#deps;
    const report: ReconcileReport = { rooms: 0, joined: 0, left: 0, retired: 0, closed: 0, errors: 0 };
    // Held across ticks by the node that has it; another takes over when it stops renewing.
    const leaseMs = Math.max(2 * this.#options.intervalMs, 10_000);
    if (!(await store.tryLease('reconcile', this.#options.nodeId, leaseMs))) {
      return { ...report, skipped: 'lease' };
    }
    const page = await store.liveSessions(this.#cursor, this.#options.maxRoomsPerTick);
    this.#cursor = page.next;

    const bindings: RoomBinding[] = [];
    await eachBounded(page.sessionIds, this.#options.concurrency, async (sessionId) => {
      const [status, binding] = await Promise.all([lifecycle.status(sessionId), store.getBinding(sessionId)]);
      if (!status || status.ended || !binding) {
        await store.retire(sessionId, this.#options.retentionS);
        report.retired++;
      } else {
        bindings.push(binding);
      }
    });
    if (bindings.length === 0) return report;

    const listedAt = this.#deps.clock.now();
    const open = new Map((await rooms.listRooms(bindings.map((b) => b.room))).map((r) => [r.name, r]));
    await eachBounded(bindings, this.#options.concurrency, async (binding) => {
      report.rooms++;
      try {
        const room = open.get(binding.room);
        // A previous instance of the room: everyone in it has left.
        if (binding.roomSid !== undefined && binding.roomSid !== room?.sid) {
          await this.#correct(
            binding,
            { roomSid: binding.roomSid, roomName: binding.room },
            [],
            listedAt,
            report,
          );
        }
        if (!room) {
          // The session goes on (ended ones were retired above): its room may reopen, and
          // the next token request creates it again.
          await store.roomClosed(binding.sessionId);
          report.closed++;
          return;
        }
        // listed now, so open now: newer than any instance created before
        if (binding.roomSid !== room.sid)
          await store.noteRoomSid(binding.sessionId, room.sid, room.createdAt ?? listedAt);
        const at = this.#deps.clock.now();
        const participants = await rooms.listParticipants(room.name);
        await this.#correct(
          binding,
          { roomSid: room.sid, roomName: room.name },
          participants ?? [],
          at,
          report,
        );
      } catch (err) {
        report.errors++;
        logger.warn(
          { sessionId: binding.sessionId, room: binding.room, err },
          'livekit reconcile of a room failed',
        );
      }
    });
    if (report.joined + report.left + report.retired + report.closed > 0)
      logger.info(report, 'livekit reconciled');
    return report;
  }

  /** Appends the corrections that make the store's presence of one room instance match `inRoom`. */
  async #correct(
    binding: RoomBinding,
    room: RoomRef,
    inRoom: readonly ParticipantInfo[],
    listedAt: number,
    report: ReconcileReport,
  ): Promise<void> {
    const { store } = this.#deps;
    const sessionId = binding.sessionId;
    const known = new Map(
      (await store.participants(sessionId, room.roomSid)).map((p) => [p.participantSid, p]),
    );
    const present = inRoom.filter((p) => isInRoom(p) && p.sid !== '' && p.identity !== '');
    for (const p of present) {
      if (known.has(p.sid)) continue;
      if (await this.#move(sessionId, room, { sid: p.sid, identity: p.identity, info: p }, 'joined'))
        report.joined++;
    }
    const presentSids = new Set(present.map((p) => p.sid));
    for (const p of known.values()) {
      if (p.status !== 'joined' || presentSids.has(p.participantSid)) continue;
      if (p.at > listedAt - this.#options.graceMs) continue;
      if (await this.#move(sessionId, room, { sid: p.participantSid, identity: p.identity }, 'left'))
        report.left++;
    }
  }

  async #move(
    sessionId: string,
    room: RoomRef,
    participant: { sid: string; identity: string; info?: ParticipantInfo },
    to: PresenceStatus,
  ): Promise<boolean> {
    const { store } = this.#deps;
    const eventId = reconciledEventId(this.#deps.eventIds, room.roomSid, participant.sid, to);
    const change: ParticipantChange = {
      participantSid: participant.sid,
      identity: participant.identity,
      to,
      eventId,
      at: this.#deps.clock.now(),
    };
    const moved = await store.transitionParticipant(sessionId, room.roomSid, change);
    if (!moved.applied) return false;
    const type = to === 'joined' ? 'call.participant_joined' : 'call.participant_left';
    try {
      const result = await this.#writer.emit(
        sessionId,
        eventId,
        type,
        reconciledParticipantPayload(participant, room, to),
      );
      if (result.status !== 'appended') return false;
      this.#deps.metrics.livekitReconcileCorrections.inc({ kind: to });
      return true;
    } catch (err) {
      await store.revertParticipant(sessionId, room.roomSid, change, moved.previous).catch(() => {});
      throw err;
    }
  }
}

/** Runs `fn` over `items` with at most `limit` at once. */
async function eachBounded<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), items.length) }, worker));
}
