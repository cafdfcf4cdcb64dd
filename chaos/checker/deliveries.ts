import type { CloseOp, DeliverOp, FinalStreamOp, ReplayedOp, WelcomeOp } from './history.ts';
import { seqs, type ClientState, type ConnState, type Context } from './model.ts';

/**
 * What each connection and each logical client received.
 *
 * Per connection: the first delivery is welcome.after + 1, every next one is +1
 * (conn_order), `replayed` names the last catch-up seq (conn_order), nothing arrives
 * before the welcome (delivery_before_welcome) or in another epoch than the welcome's
 * (silent_epoch_change), and the welcome starts where the hello asked
 * (welcome_after_mismatch).
 *
 * Per logical client, after dedupe by seq within an epoch (a redelivery of a seq it
 * processed is counted, not judged): every seq is processed in order without holes
 * (client_gap, client_reorder); a resume never starts past what the client processed or
 * claimed (resume_skipped_events); after the drain it holds the final head
 * (undelivered_at_end). A client changes epoch only through a welcome on the new one.
 * client_gap is the safety net: while the connection and welcome checks hold, a client's
 * hole always has a connection-level cause, reported there (and not twice).
 */

/** Holes remembered per client (the violations are reported either way). */
const MAX_HOLES = 16;

export class DeliveryInvariants {
  readonly #ctx: Context;

  constructor(ctx: Context) {
    this.#ctx = ctx;
  }

  onWelcome(op: WelcomeOp, conn: ConnState, client: ClientState): void {
    const { log, options, counts, model } = this.#ctx;
    conn.welcomed = true;
    conn.welcomeT = op.t;
    conn.resumed = op.resumed;
    conn.subscriberId = op.subscriberId;
    conn.epoch = op.epoch;
    conn.after = op.after;
    conn.last = op.after;
    client.welcomes++;
    client.open.add(conn);

    const base = {
      kind: 'welcome_after_mismatch',
      session: op.session,
      client: op.client,
      conn: op.conn,
      subscriberId: op.subscriberId,
      epoch: op.epoch,
      seq: op.after,
      t: op.t,
    } as const;
    const hello = conn.hello;
    if (hello?.resume) {
      // Without lastSeq the welcome starts at the stored checkpoint, which may be ahead of
      // a node's own head for a moment (its notice of the newest events still in flight).
      const { lastSeq } = hello.resume;
      if (lastSeq !== undefined && op.after !== lastSeq)
        log.add({
          ...base,
          message: `resume asked for lastSeq ${lastSeq}, but the welcome starts after seq ${op.after}`,
        });
    } else if (op.after > op.headSeq) {
      log.add({
        ...base,
        message: `welcome starts after seq ${op.after}, beyond its own head seq ${op.headSeq}`,
      });
    } else if (typeof hello?.after === 'number') {
      // ("latest" is the head when the hello was handled; the welcome's own head may have
      // moved on since, so any start up to it fits.)
      const asked = hello.after;
      const fine = asked === 0 ? op.after === 0 || options.retentionMayTrim : op.after === asked;
      if (!fine)
        log.add({
          ...base,
          message: `fresh hello asked for after=${asked}, but the welcome starts after seq ${op.after}`,
        });
    }

    // The client's position: a new epoch starts over; a later start skips (judged here).
    const w = client.watermark;
    if (client.epoch === undefined || client.epoch !== op.epoch) {
      if (client.epoch !== undefined && !op.resumed && !client.saw4011) counts.epochSwitchWithout4011++;
      // A resume into another epoch is the subscriber checks' silent_epoch_change.
      client.epoch = op.epoch;
      client.watermark = op.after;
      client.holes = [];
      client.saw4011 = false;
    } else if (op.after > w) {
      if (!op.resumed) {
        counts.skippedByFreshHello += op.after - w;
      } else {
        const sub = model.subscriber(op.session, op.subscriberId);
        const lastSeq = hello?.resume?.lastSeq;
        const claimed = Math.max(lastSeq ?? -1, sub?.maxAck ?? -1);
        if (claimed >= op.after) {
          counts.skippedByClientClaim += op.after - w;
        } else {
          log.add({
            kind: 'resume_skipped_events',
            session: op.session,
            client: op.client,
            conn: op.conn,
            subscriberId: op.subscriberId,
            epoch: op.epoch,
            seq: w + 1,
            t: op.t,
            message:
              `resume of ${op.subscriberId} was welcomed after seq ${op.after}, but ${op.client} had processed only up ` +
              `to seq ${w} of epoch ${op.epoch}, so it will never get ${seqs(w + 1, op.after)} (it sent ` +
              `${lastSeq === undefined ? 'no lastSeq' : `lastSeq ${lastSeq}`}, its highest ack was ${sub?.maxAck ?? 'none'})`,
          });
        }
      }
      client.watermark = op.after;
    }
  }

  onDeliver(op: DeliverOp, conn: ConnState, client: ClientState): void {
    const { log, counts } = this.#ctx;
    counts.deliveries++;
    const base = {
      session: op.session,
      client: op.client,
      conn: op.conn,
      subscriberId: conn.subscriberId ?? op.subscriberId,
      epoch: op.epoch,
      seq: op.seq,
      eventId: op.eventId,
      t: op.t,
    } as const;

    // The connection.
    if (!conn.welcomed) {
      log.add({
        ...base,
        kind: 'delivery_before_welcome',
        message: `seq ${op.seq} ("${op.eventId}") was delivered on ${op.conn} before any welcome`,
      });
      return;
    }
    if (op.epoch !== conn.epoch) {
      log.add({
        ...base,
        kind: 'silent_epoch_change',
        message:
          `${op.conn} was welcomed on epoch ${conn.epoch ?? '(none)'} but delivered seq ${op.seq} of epoch ${op.epoch}: ` +
          'an epoch change must close the connection with 4011 history_gone',
      });
      return;
    }
    const expected = conn.last + 1;
    let explained = false;
    if (op.seq !== expected) {
      explained = true;
      let message: string;
      if (op.seq > expected && conn.delivered === 0)
        message =
          `first delivery on ${op.conn} should be seq ${expected} (welcome after ${conn.after}), got seq ${op.seq}: ` +
          `skipping ${seqs(expected, op.seq - 1)}`;
      else if (op.seq > expected)
        message = `expected seq ${expected} next on ${op.conn} (after seq ${conn.last}), got seq ${op.seq}, skipping ${seqs(expected, op.seq - 1)}`;
      else
        message =
          `seq ${op.seq} delivered on ${op.conn} after seq ${conn.last}: ` +
          (op.seq === conn.last
            ? 'the same seq twice on one connection'
            : 'a step backwards on one connection');
      log.add({ ...base, kind: 'conn_order', message });
    }
    conn.delivered++;
    if (op.seq > conn.last) conn.last = op.seq;

    // The logical client, after dedupe by seq.
    if (client.epoch !== op.epoch) {
      counts.staleEpochDeliveries++;
      return;
    }
    const w = client.watermark;
    if (op.seq <= w) {
      if (this.#fillHole(client, op.seq)) {
        log.add({
          ...base,
          kind: 'client_reorder',
          message:
            `seq ${op.seq} reached ${op.client} only after seq ${w}: it was missing when later seqs were processed ` +
            '(the client drops it as a duplicate)',
        });
      } else counts.duplicatesDropped++;
      return;
    }
    if (op.seq > w + 1) {
      // A hole the connection check already explained is not reported twice.
      if (!explained) {
        log.add({
          ...base,
          kind: 'client_gap',
          message:
            `${op.client} processed seq ${w} of epoch ${op.epoch} and next got seq ${op.seq} (on ${op.conn}): ` +
            `skipping ${seqs(w + 1, op.seq - 1)}`,
        });
      }
      client.holes.push([w + 1, op.seq - 1]);
      if (client.holes.length > MAX_HOLES) client.holes.shift();
    }
    client.watermark = op.seq;
  }

  onReplayed(op: ReplayedOp, conn: ConnState): void {
    if (!conn.welcomed || op.seq === conn.last) return;
    this.#ctx.log.add({
      kind: 'conn_order',
      session: op.session,
      client: op.client,
      conn: op.conn,
      subscriberId: conn.subscriberId,
      epoch: conn.epoch,
      seq: op.seq,
      t: op.t,
      message: `replayed marker on ${op.conn} says catch-up ended at seq ${op.seq}, but the last seq delivered there was ${conn.last}`,
    });
  }

  /** `told`: a 4011 that tells of an epoch change (not the answer to a bogus epoch). */
  onClose(op: CloseOp, conn: ConnState, client: ClientState, told: boolean): void {
    client.open.delete(conn);
    client.lastClose = op;
    if (told) client.saw4011 = true;
  }

  /** After the drain: every subscriber client holds the final head of the final epoch. */
  finish(finalOf: (session: string) => FinalStreamOp | undefined): void {
    const { log, options, model } = this.#ctx;
    if (!options.expectDrained) return;
    for (const [session, clients] of model.clients) {
      const final = finalOf(session);
      if (!final) continue;
      for (const client of clients.values()) {
        // Publishers are not judged as subscribers; a client that left early is not owed the end.
        if (client.welcomes === 0 || client.publishes > 0 || client.lastClose?.leftEarly) continue;
        const last = client.lastClose;
        const how =
          client.open.size > 0
            ? 'a connection still open'
            : last
              ? `last connection ${last.conn} closed ${last.code}${last.reason ? ` (${last.reason})` : ''}${last.byClient ? ' by the client' : ''}`
              : 'no close recorded';
        const base = {
          kind: 'undelivered_at_end',
          session,
          client: client.name,
          epoch: final.epoch,
          t: final.t,
        } as const;
        if (client.epoch !== final.epoch) {
          log.add({
            ...base,
            seq: final.headSeq,
            message:
              `${client.name} ended on epoch ${client.epoch ?? '(none)'} at seq ${client.watermark}, but the stream ` +
              `is on epoch ${final.epoch} with head seq ${final.headSeq} (${how})`,
          });
        } else if (client.watermark < final.headSeq) {
          log.add({
            ...base,
            seq: client.watermark + 1,
            message:
              `${client.name} processed up to seq ${client.watermark} of ${final.headSeq}: after the drain it still ` +
              `lacks ${seqs(client.watermark + 1, final.headSeq)} (${how})`,
          });
        }
      }
    }
  }

  #fillHole(client: ClientState, seq: number): boolean {
    for (let i = 0; i < client.holes.length; i++) {
      const hole = client.holes[i]!;
      if (seq < hole[0] || seq > hole[1]) continue;
      if (hole[0] === hole[1]) client.holes.splice(i, 1);
      else if (seq === hole[0]) hole[0]++;
      else if (seq === hole[1]) hole[1]--;
      else client.holes.splice(i, 1, [hole[0], seq - 1], [seq + 1, hole[1]]);
      return true;
    }
    return false;
  }
}
