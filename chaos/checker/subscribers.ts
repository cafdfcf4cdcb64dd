import type {
  AckOp,
  CheckpointOp,
  CloseOp,
  DeliverOp,
  ErrorFrameOp,
  FaultOp,
  HelloOp,
  RaceSettledOp,
  WelcomeOp,
} from './history.ts';
import type { ConnState, Context, SubscriberState } from './model.ts';
import { bump } from './verdict.ts';

/**
 * Subscribers: who holds them (supersede), how duplicate-resume races end, and their
 * checkpoints.
 *
 * - race_survivors: a race leaves exactly one welcomed connection of a subscriber open
 *   (several are excused only by a node kill during the race); connections welcomed as
 *   other subscribers (a fresh hello creates a new one) are not duplicates of it. None at
 *   all is wrong when every one of its connections was closed 4009 and nobody outside the
 *   race took the subscriber over.
 * - not_superseded / multiple_live_connections: once a newer resume of a subscriber is
 *   welcomed, every older open connection of it is closed (4009, or any way the gateway or
 *   the network closes it) within `supersedeGraceMs`. A close by the client itself within
 *   the grace settles it too (nothing left to judge); a newer connection that is itself
 *   closed 4009 shows the gateway processed the resumes the other way round.
 * - unprovoked_supersede: a connection welcomed as a fresh subscriber is closed 4009 only
 *   if some hello resumed that subscriber before the close. Its resume token came with
 *   that welcome, so no takeover can predate it; a 4009 without one means the gateway
 *   lost the subscriber's record (a failover to a replica that lacked it, say).
 * - checkpoint_decreased / checkpoint_ahead_of_delivery / checkpoint_ahead_of_acks: a
 *   checkpoint reading never goes below one read before the reading connection's hello
 *   was sent (readings of concurrent resumes may arrive in any order), and never exceeds
 *   what was delivered to the subscriber (an ack sent ahead of delivery excuses it: the
 *   events may have been in flight) nor the highest ack sent for it.
 * - silent_epoch_change: a resume is welcomed on the subscriber's own epoch, and on the
 *   epoch the hello named; anything else must be refused with 4011.
 */

/** Checkpoint readings kept per subscriber; older ones fold into a floor. */
const MAX_READINGS = 32;
const MAX_RECENT_WELCOMES = 8;
/** Disturbing faults remembered for race judgement. */
const MAX_FAULTS = 256;

interface Race {
  firstT: number;
}

interface PendingSupersede {
  readonly older: ConnState;
  readonly newer: ConnState;
  readonly sub: SubscriberState;
  /** When the newer resume was welcomed. */
  readonly t: number;
  /** The client closed the older connection itself, after the grace. */
  lateClose: CloseOp | undefined;
}

export class SubscriberInvariants {
  readonly #ctx: Context;
  readonly #races = new Map<string, Race>();
  readonly #pending = new Set<PendingSupersede>();
  readonly #faults: FaultOp[] = [];
  /** `session subscriberId` of every subscriber some hello resumed. */
  readonly #resumed = new Set<string>();

  constructor(ctx: Context) {
    this.#ctx = ctx;
  }

  onHello(op: HelloOp): void {
    if (op.race !== undefined && !this.#races.has(op.race)) this.#races.set(op.race, { firstT: op.t });
    if (op.resume) this.#resumed.add(`${op.session} ${op.resume.subscriberId}`);
    // A resume's lastSeq is the client's word that it holds everything up to there, and
    // the gateway may store it as the checkpoint as soon as it processes the takeover —
    // even if the connection dies before its welcome arrives.
    const lastSeq = op.resume?.lastSeq;
    if (lastSeq === undefined) return;
    const sub = this.#ctx.model.subscriber(op.session, op.resume!.subscriberId);
    if (!sub || (op.resume!.epoch !== undefined && op.resume!.epoch !== sub.epoch)) return;
    sub.maxDelivered = Math.max(sub.maxDelivered, lastSeq);
    sub.maxAck = Math.max(sub.maxAck, lastSeq);
  }

  onWelcome(op: WelcomeOp, conn: ConnState): void {
    const { model, log, counts } = this.#ctx;
    let sub = model.subscriber(op.session, op.subscriberId);
    if (!op.resumed || !sub) {
      if (op.resumed) counts.welcomes.resumed++;
      else counts.welcomes.fresh++;
      sub = model.newSubscriber(op.session, op.subscriberId, op.epoch, op.after);
    } else {
      counts.welcomes.resumed++;
      const asked = conn.hello?.resume?.epoch;
      const base = {
        kind: 'silent_epoch_change',
        session: op.session,
        client: op.client,
        conn: op.conn,
        subscriberId: op.subscriberId,
        epoch: op.epoch,
        seq: op.after,
        t: op.t,
      } as const;
      if (asked !== undefined && asked !== op.epoch) {
        log.add({
          ...base,
          message:
            `resume of ${op.subscriberId} named epoch ${asked} but was welcomed on epoch ${op.epoch} (after seq ` +
            `${op.after}): a resume with another epoch must be refused with 4011 history_gone`,
        });
      } else if (sub.epoch !== op.epoch) {
        log.add({
          ...base,
          message:
            `${op.subscriberId} was created on epoch ${sub.epoch} but resumed on epoch ${op.epoch} (after seq ` +
            `${op.after}) without a 4011 history_gone`,
        });
      }
      if (sub.epoch !== op.epoch) {
        sub = model.newSubscriber(op.session, op.subscriberId, op.epoch, op.after);
      } else if (conn.hello?.resume?.lastSeq !== undefined) {
        // The gateway starts after lastSeq as if the client had acked it: the checkpoint may follow.
        sub.maxDelivered = Math.max(sub.maxDelivered, op.after);
        sub.maxAck = Math.max(sub.maxAck, op.after);
      }
    }
    for (const older of sub.open) {
      if (older !== conn) this.#pending.add({ older, newer: conn, sub, t: op.t, lateClose: undefined });
    }
    sub.open.add(conn);
    sub.recentWelcomes.push({ conn, t: op.t });
    if (sub.recentWelcomes.length > MAX_RECENT_WELCOMES) sub.recentWelcomes.shift();
  }

  onDeliver(op: DeliverOp, conn: ConnState): void {
    const sub = this.#ctx.model.subscriber(op.session, conn.subscriberId ?? op.subscriberId);
    if (sub && sub.epoch === op.epoch && op.seq > sub.maxDelivered) sub.maxDelivered = op.seq;
  }

  onAck(op: AckOp, conn: ConnState): void {
    const { counts, model } = this.#ctx;
    bump(counts.acks, op.kind);
    const sub = model.subscriber(op.session, conn.subscriberId ?? op.subscriberId);
    if (sub) {
      if (op.seq > sub.maxAck) sub.maxAck = op.seq;
      if (op.kind === 'ahead' && op.seq > sub.maxAhead) sub.maxAhead = op.seq;
    }
    if (op.kind === 'ahead' && !conn.closed) {
      counts.ackAhead.sent++;
      conn.pendingAhead++;
    }
  }

  onError(op: ErrorFrameOp, conn: ConnState): void {
    const { counts } = this.#ctx;
    bump(counts.errors, op.code);
    if (op.code !== 'ack_ahead') return;
    if (conn.pendingAhead > 0) {
      conn.pendingAhead--;
      counts.ackAhead.answered++;
    } else counts.ackAhead.unexpectedErrors++;
  }

  onClose(op: CloseOp, conn: ConnState): void {
    const { counts, options, model } = this.#ctx;
    counts.ackAhead.unanswered += conn.pendingAhead;
    conn.pendingAhead = 0;
    if (op.code === 4009) this.#checkProvoked(op, conn);
    if (conn.subscriberId !== undefined) model.subscriber(conn.session, conn.subscriberId)?.open.delete(conn);
    for (const pending of this.#pending) {
      if (pending.older === conn) {
        if (!op.byClient || op.t - pending.t <= options.supersedeGraceMs) {
          this.#pending.delete(pending);
          counts.supersedes++;
        } else pending.lateClose = op;
      } else if (pending.newer === conn && op.code === 4009) {
        // The gateway processed the older connection's resume last: it is the rightful one.
        this.#pending.delete(pending);
      }
    }
  }

  #checkProvoked(op: CloseOp, conn: ConnState): void {
    const subscriberId = conn.subscriberId;
    if (!conn.welcomed || conn.resumed || subscriberId === undefined) return;
    if (this.#resumed.has(`${op.session} ${subscriberId}`)) return;
    this.#ctx.log.add({
      kind: 'unprovoked_supersede',
      session: op.session,
      client: op.client,
      conn: op.conn,
      subscriberId,
      t: op.t,
      message:
        `${op.conn} was welcomed as fresh subscriber ${subscriberId} and closed 4009 superseded, yet no hello ` +
        'ever resumed it: the gateway lost its record',
    });
  }

  onFault(op: FaultOp): void {
    const name = op.fault.toLowerCase();
    if (!this.#ctx.options.raceDisturbingFaults.some((f) => name.includes(f.toLowerCase()))) return;
    this.#faults.push(op);
    if (this.#faults.length > MAX_FAULTS) this.#faults.shift();
  }

  onRaceSettled(op: RaceSettledOp): void {
    const { counts, log, model } = this.#ctx;
    const race = this.#races.get(op.race);
    this.#races.delete(op.race);
    const firstT = race?.firstT ?? op.t;
    counts.races++;
    counts.raceSurvivors += op.survivors.length;
    const conns = op.conns.map((id) => model.conns.get(id));
    if (!conns.some((c) => c?.welcomed)) {
      counts.racesWithoutWelcome++;
      return;
    }
    const base = {
      kind: 'race_survivors',
      session: op.session,
      client: op.client,
      subscriberId: op.subscriberId,
      t: op.t,
    } as const;
    // Welcomed survivors by the subscriber they hold: only connections of one subscriber
    // are duplicates of each other (a fresh hello in a race makes a new subscriber).
    const liveBySub = new Map<string, string[]>();
    for (const id of op.survivors) {
      const conn = model.conns.get(id);
      if (conn && !conn.welcomed) continue;
      const subscriberId = conn?.subscriberId ?? op.subscriberId;
      liveBySub.set(subscriberId, [...(liveBySub.get(subscriberId) ?? []), id]);
    }
    const duplicated = [...liveBySub].find(([, ids]) => ids.length > 1);
    if (duplicated) {
      const fault = this.#faults.find((f) => f.t >= firstT && f.t <= op.t);
      if (fault) {
        counts.racesDisturbed++;
        return;
      }
      const [subscriberId, live] = duplicated;
      log.add({
        ...base,
        subscriberId,
        conn: live[1],
        message:
          `race ${op.race} of ${op.subscriberId} settled with ${live.length} live connections of ${subscriberId} ` +
          `(${live.join(', ')}) out of ${op.conns.length}: duplicate resumes must leave exactly one, the rest ` +
          'closed 4009',
      });
      return;
    }
    if (op.survivors.length > 0) return;
    const codes = conns.map((c) => c?.closed?.code);
    if (!codes.every((code) => code === 4009)) return;
    const sub = model.subscriber(op.session, op.subscriberId);
    const outside = sub?.recentWelcomes.find(
      (w) => w.t >= firstT && w.t <= op.t && !op.conns.includes(w.conn.id),
    );
    if (outside) return;
    log.add({
      ...base,
      message:
        `race ${op.race} of ${op.subscriberId} left no connection: all ${op.conns.length} (${op.conns.join(', ')}) ` +
        'were closed 4009 superseded, yet the one resumed last should have survived',
    });
  }

  onCheckpoint(op: CheckpointOp): void {
    const { counts, log, model } = this.#ctx;
    counts.checkpoints++;
    const sub = model.subscriber(op.session, op.subscriberId);
    if (!sub || sub.epoch !== op.epoch) return;
    // The reading connection: named by the op, or the subscriber's latest welcome.
    const conn =
      (op.conn !== undefined ? model.conns.get(op.conn) : undefined) ?? sub.recentWelcomes.at(-1)?.conn;
    const helloT = conn?.hello?.t ?? op.t;
    // The highest reading recorded before this connection's hello: this one cannot be lower.
    let before = sub.checkpointFloor;
    let concurrentMax = -1;
    for (const reading of sub.readings) {
      if (reading.t < helloT) before = reading.max;
      else concurrentMax = Math.max(concurrentMax, reading.max);
    }
    const base = {
      session: op.session,
      client: op.client,
      conn: conn?.id,
      subscriberId: op.subscriberId,
      epoch: op.epoch,
      seq: op.seq,
      t: op.t,
    } as const;
    if (op.seq < before) {
      log.add({
        ...base,
        kind: 'checkpoint_decreased',
        message: `checkpoint of ${op.subscriberId} went down from seq ${before} to seq ${op.seq}; a checkpoint only grows`,
      });
    } else if (op.seq > sub.maxDelivered && op.seq > sub.maxAhead) {
      log.add({
        ...base,
        kind: 'checkpoint_ahead_of_delivery',
        message:
          `checkpoint of ${op.subscriberId} is seq ${op.seq}, but the highest seq delivered to it on any ` +
          `connection is ${sub.maxDelivered}`,
      });
    } else if (op.seq > sub.maxAck) {
      log.add({
        ...base,
        kind: 'checkpoint_ahead_of_acks',
        message: `checkpoint of ${op.subscriberId} is seq ${op.seq}, but the highest ack sent for it is ${sub.maxAck}`,
      });
    }
    if (op.seq < concurrentMax && op.seq >= before) counts.checkpointsConcurrent++;
    if (op.seq > sub.maxDelivered && op.seq <= sub.maxAhead) counts.checkpointsFromAheadAcks++;
    const previousMax = sub.readings.at(-1)?.max ?? sub.checkpointFloor;
    sub.readings.push({ t: op.t, max: Math.max(previousMax, op.seq) });
    if (sub.readings.length > MAX_READINGS) sub.checkpointFloor = sub.readings.shift()!.max;
  }

  /** The end of the run: supersedes still pending past the grace. */
  finish(lastT: number): void {
    const { counts, log, options } = this.#ctx;
    const grace = options.supersedeGraceMs;
    for (const pending of this.#pending) {
      const { older, newer, sub } = pending;
      const base = {
        session: older.session,
        client: older.client,
        conn: older.id,
        subscriberId: sub.id,
        t: pending.lateClose?.t ?? lastT,
      } as const;
      if (pending.lateClose) {
        log.add({
          ...base,
          kind: 'not_superseded',
          message:
            `${older.id} stayed open ${Math.round(pending.lateClose.t - pending.t)} ms after ${newer.id} resumed ` +
            `${sub.id} (t=${pending.t}), until the client closed it itself: the gateway must close it 4009 superseded`,
        });
        continue;
      }
      if (older.closed) continue;
      if (lastT - pending.t <= grace) {
        counts.supersedePendingAtEnd++;
        continue;
      }
      if (!newer.closed) {
        const open = [...sub.open].map((c) => c.id);
        log.once(`multiple_live_connections|${sub.session}|${sub.id}`, {
          ...base,
          kind: 'multiple_live_connections',
          message:
            `${sub.id} still has ${open.length} open connections at the end (${open.join(', ')}); ${older.id} ` +
            `should have been closed 4009 when ${newer.id} resumed it at t=${pending.t}`,
        });
      } else {
        log.add({
          ...base,
          kind: 'not_superseded',
          message:
            `${older.id} was never closed after ${newer.id} resumed ${sub.id} at t=${pending.t} ` +
            `(${newer.id} closed ${newer.closed.code} later): the gateway must close it 4009 superseded`,
        });
      }
    }
  }
}
