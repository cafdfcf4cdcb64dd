import { ErrorCodes } from '../../src/errors/codes.ts';
import type { DeliverOp, FinalStreamOp, PublishOp, WelcomeOp } from './history.ts';
import { range, seqs, span, type Context } from './model.ts';

/**
 * The stored stream of every session, per epoch: which event each seq names, where each
 * event is stored, what the publishers were told, and — at the end — the final read.
 *
 * Invariants: seq_binding, duplicate_store, idempotency_broken, puback_mismatch,
 * acked_publish_lost, acked_publish_duplicated, failed_publish_stored, internal_refusal,
 * gap_in_stream, phantom_event, missing_final_stream, unexpected_epoch_change, and the session-wide
 * silent_epoch_change (the stream moved to a new epoch and no client was told).
 *
 * Memory: one binding per stored event and one record per published eventId; deliveries
 * are compared with the binding of their seq and forgotten.
 */

/** Where a binding was observed (bits). */
const DELIVERED = 1;
const ACKED = 2;
const FINAL = 4;
/** Observations that show what is stored (a puback is the gateway's word, not the store). */
const STORED = DELIVERED | FINAL;

interface Binding {
  readonly eventId: string;
  readonly seq: number;
  /** All the sources that agreed on it. */
  src: number;
  /** The first observation, for messages. */
  readonly firstSrc: number;
  readonly firstConn: string;
  readonly firstT: number;
}

interface AckRecord {
  seq: number;
  t: number;
  conn: string;
  client: string;
}

/** One epoch of one session's stream. */
class EpochLedger {
  readonly bySeq = new Map<number, Binding>();
  readonly byId = new Map<string, Binding>();
  /** First puback per eventId in this epoch. */
  readonly acked = new Map<string, AckRecord>();
}

/** Outcome bits of all attempts of one eventId. */
const PUB_OK = 1;
const PUB_UNKNOWN = 2;
const PUB_FAIL = 4;

interface PublishRecord {
  bits: number;
  failCode: string | undefined;
  failT: number;
}

class SessionLedger {
  /** Epochs in the order first seen. */
  readonly epochs = new Map<string, EpochLedger>();
  readonly welcomeEpochs = new Set<string>();
  saw4011 = false;
  readonly publishes = new Map<string, PublishRecord>();
  final: FinalStreamOp | undefined;
  deliveries = 0;
  publishCounts = { ok: 0, fail: 0, unknown: 0 };

  constructor(readonly session: string) {}
}

function describe(src: number, conn: string, t: number): string {
  if (src & FINAL) return 'the final stream';
  if (src & ACKED) return `puback on ${conn} at t=${t}`;
  return `delivered on ${conn} at t=${t}`;
}

/** How a binding was first observed, and whether the final stream confirmed it since. */
function describeBinding(b: Binding): string {
  const first = describe(b.firstSrc, b.firstConn, b.firstT);
  return b.firstSrc !== FINAL && b.src & FINAL ? `${first}, and the final stream` : first;
}

function isUncertainNack(code: string | undefined): boolean {
  if (code === undefined) return false;
  const known = (ErrorCodes as Record<string, { retryable: boolean }>)[code];
  return known?.retryable === true;
}

export class StreamInvariants {
  readonly #ctx: Context;
  readonly #sessions = new Map<string, SessionLedger>();

  constructor(ctx: Context) {
    this.#ctx = ctx;
  }

  get sessions(): ReadonlyMap<string, SessionLedger> {
    return this.#sessions;
  }

  finalOf(session: string): FinalStreamOp | undefined {
    return this.#sessions.get(session)?.final;
  }

  ledger(session: string): SessionLedger {
    let ledger = this.#sessions.get(session);
    if (!ledger) {
      ledger = new SessionLedger(session);
      this.#sessions.set(session, ledger);
      this.#ctx.counts.sessions++;
    }
    return ledger;
  }

  onWelcome(op: WelcomeOp): void {
    const ledger = this.ledger(op.session);
    ledger.welcomeEpochs.add(op.epoch);
    this.#epoch(ledger, op.epoch, op.t, `welcome on ${op.conn}`);
  }

  /** A connection closed; `told` when it was a 4011 that tells of an epoch change. */
  onClose(session: string, told: boolean): void {
    if (told) this.ledger(session).saw4011 = true;
  }

  hasEpoch(session: string, epoch: string): boolean {
    return this.#sessions.get(session)?.epochs.has(epoch) ?? false;
  }

  onDeliver(op: DeliverOp): void {
    const ledger = this.ledger(op.session);
    ledger.deliveries++;
    if (op.epoch === '') return; // before any welcome: judged by the connection checks
    this.#bind(ledger, op.epoch, op.seq, op.eventId, DELIVERED, op.conn, op.t, op.client);
  }

  onPublish(op: PublishOp, connEpoch: string | undefined): void {
    const { counts, log } = this.#ctx;
    const ledger = this.ledger(op.session);
    counts.publishes[op.outcome]++;
    ledger.publishCounts[op.outcome]++;
    let record = ledger.publishes.get(op.eventId);
    if (!record) {
      record = { bits: 0, failCode: undefined, failT: 0 };
      ledger.publishes.set(op.eventId, record);
      counts.publishedEvents++;
    }
    if (op.outcome === 'fail') {
      if (op.code === 'internal')
        log.add({
          kind: 'internal_refusal',
          session: op.session,
          eventId: op.eventId,
          t: op.t,
          message: `publish "${op.eventId}" (attempt ${op.attempt}) on ${op.conn} was refused as internal`,
        });
      // Only a refusal that cannot have stored anything is certain; a retryable nack
      // (unavailable, internal…) may come after the store accepted the event.
      if (isUncertainNack(op.code)) {
        counts.publishes.retryableNacks++;
        record.bits |= PUB_UNKNOWN;
      } else {
        record.bits |= PUB_FAIL;
        record.failCode = op.code;
        record.failT = op.t;
      }
      return;
    }
    if (op.outcome === 'unknown') {
      record.bits |= PUB_UNKNOWN;
      return;
    }
    record.bits |= PUB_OK;
    const epoch = op.epoch ?? connEpoch;
    if (op.seq === undefined || epoch === undefined) return;
    const ledgerEpoch = this.#epoch(ledger, epoch, op.t, `puback on ${op.conn}`);
    if (!ledgerEpoch.acked.has(op.eventId))
      ledgerEpoch.acked.set(op.eventId, { seq: op.seq, t: op.t, conn: op.conn, client: op.client });
    this.#bind(ledger, epoch, op.seq, op.eventId, ACKED, op.conn, op.t, op.client);
  }

  onFinal(op: FinalStreamOp): void {
    const { counts, log, options } = this.#ctx;
    const ledger = this.ledger(op.session);
    if (!ledger.final) counts.finalStreams++;
    ledger.final = op;
    this.#epoch(ledger, op.epoch, op.t, 'the final stream');
    const expected = op.headSeq >= op.firstSeq ? op.headSeq - op.firstSeq + 1 : 0;
    const base = { kind: 'gap_in_stream', session: op.session, epoch: op.epoch, t: op.t } as const;
    if (op.firstSeq !== 1 && op.headSeq > 0 && !options.retentionMayTrim) {
      log.add({
        ...base,
        seq: 1,
        message:
          `the final stream of epoch ${op.epoch} starts at seq ${op.firstSeq}, not 1 (${seqs(1, op.firstSeq - 1)} ` +
          'gone), and this scenario does not let retention trim the stream',
      });
    }
    const missing: Array<[number, number]> = [];
    let missingCount = 0;
    for (let i = 0; i < expected; i++) {
      if (op.eventIds[i] != null) continue;
      const seq = op.firstSeq + i;
      const lastRange = missing[missing.length - 1];
      if (lastRange && lastRange[1] === seq - 1) lastRange[1] = seq;
      else missing.push([seq, seq]);
      missingCount++;
    }
    if (missingCount > 0) {
      const shown = missing.slice(0, 5).map(([a, b]) => range(a, b));
      log.add({
        ...base,
        seq: missing[0]![0],
        message:
          `the final stream of epoch ${op.epoch} claims ${span(op.firstSeq, op.headSeq)} but is missing ` +
          (missingCount === 1 ? `seq ${shown[0]!}` : `${missingCount} seqs: ${shown.join(', ')}`) +
          `${missing.length > 5 ? ', …' : ''}; seqs must be contiguous`,
      });
    }
    if (op.eventIds.length > expected) {
      log.add({
        ...base,
        seq: op.headSeq + 1,
        message:
          `the final stream of epoch ${op.epoch} holds ${op.eventIds.length} events for ` +
          `${span(op.firstSeq, op.headSeq)}: events beyond its own head seq ${op.headSeq}`,
      });
    }
    for (let i = 0; i < op.eventIds.length; i++) {
      const eventId = op.eventIds[i];
      if (eventId == null) continue;
      this.#bind(ledger, op.epoch, op.firstSeq + i, eventId, FINAL, 'final_stream', op.t, op.client);
    }
  }

  /** The end of the run: everything that needs the final stream. */
  finish(lastT: number): void {
    for (const ledger of this.#sessions.values()) this.#finishSession(ledger, lastT);
  }

  #finishSession(ledger: SessionLedger, lastT: number): void {
    const { counts, log, options } = this.#ctx;
    const { session } = ledger;
    const final = ledger.final;
    if (!final) {
      counts.sessionsWithoutFinal++;
      let acked = 0;
      for (const epoch of ledger.epochs.values()) acked += epoch.acked.size;
      if (acked > 0) {
        log.add({
          kind: 'missing_final_stream',
          session,
          t: lastT,
          message: `session has ${acked} acked events but no final_stream read: their durability was never checked`,
        });
      }
      return;
    }
    counts.eventsStored += final.eventIds.filter((id) => id != null).length;
    // eventId → first seq and number of copies in the final stream.
    const stored = new Map<string, { seq: number; copies: number; second: number }>();
    final.eventIds.forEach((eventId, i) => {
      if (eventId == null) return;
      const seq = final.firstSeq + i;
      const entry = stored.get(eventId);
      if (entry) {
        if (entry.copies === 1) entry.second = seq;
        entry.copies++;
      } else stored.set(eventId, { seq, copies: 1, second: 0 });
    });

    // Acked events of earlier epochs: history loss the scenario allows, if clients were told.
    let lost = 0;
    let lostEpoch = '';
    for (const [epoch, ledgerEpoch] of ledger.epochs) {
      if (epoch === final.epoch) continue;
      for (const eventId of ledgerEpoch.acked.keys()) {
        if (stored.has(eventId)) continue;
        lost++;
        lostEpoch = epoch;
      }
    }
    counts.lostToEpochChange += lost;
    if (ledger.epochs.size > 1 && !ledger.saw4011 && ledger.welcomeEpochs.size < 2) {
      const others = [...ledger.epochs.keys()].filter((e) => e !== final.epoch);
      log.once(`silent_epoch_change|${session}`, {
        kind: 'silent_epoch_change',
        session,
        epoch: final.epoch,
        t: final.t,
        message:
          `the stream moved from epoch ${others.join(', ')} to epoch ${final.epoch} (final stream), but no client ` +
          'saw a 4011 history_gone close or a welcome on another epoch' +
          (lost > 0 ? `: ${lost} acked events of epoch ${lostEpoch} vanished silently` : ''),
      });
    }

    // Acked events of the final epoch: stored exactly once, at the seq the puback named.
    const finalEpoch = ledger.epochs.get(final.epoch);
    if (finalEpoch) {
      for (const [eventId, ack] of finalEpoch.acked) {
        const entry = stored.get(eventId);
        const base = {
          session,
          client: ack.client,
          conn: ack.conn,
          epoch: final.epoch,
          eventId,
          t: final.t,
        } as const;
        if (!entry) {
          if (ack.seq < final.firstSeq && options.retentionMayTrim) {
            counts.ackedTrimmed++;
            continue;
          }
          log.add({
            ...base,
            kind: 'acked_publish_lost',
            seq: ack.seq,
            message:
              `event "${eventId}" was acked at seq ${ack.seq} (puback on ${ack.conn} at t=${ack.t}) but the final ` +
              `stream of epoch ${final.epoch} (${span(final.firstSeq, final.headSeq)}) does not hold it`,
          });
          continue;
        }
        if (entry.copies > 1) {
          log.once(`acked_publish_duplicated|${session}|${final.epoch}|${eventId}`, {
            ...base,
            kind: 'acked_publish_duplicated',
            seq: entry.second,
            message:
              `acked event "${eventId}" (puback seq ${ack.seq}) is stored ${entry.copies} times in epoch ` +
              `${final.epoch}: at seq ${entry.seq} and seq ${entry.second}${entry.copies > 2 ? ' and more' : ''}`,
          });
        } else if (entry.seq !== ack.seq) {
          log.once(`puback_mismatch|${session}|${final.epoch}|${eventId}`, {
            ...base,
            kind: 'puback_mismatch',
            seq: ack.seq,
            message:
              `event "${eventId}" was acked at seq ${ack.seq} (puback on ${ack.conn} at t=${ack.t}) but the final ` +
              `stream holds it at seq ${entry.seq}`,
          });
        }
      }

      // Nothing is delivered beyond what is stored.
      for (const binding of finalEpoch.bySeq.values()) {
        if (binding.seq <= final.headSeq || !(binding.src & DELIVERED)) continue;
        log.once(`phantom_event|${session}|${final.epoch}|${binding.seq}`, {
          kind: 'phantom_event',
          session,
          conn: binding.firstConn,
          epoch: final.epoch,
          seq: binding.seq,
          eventId: binding.eventId,
          t: final.t,
          message:
            `seq ${binding.seq} ("${binding.eventId}") was ${describe(binding.firstSrc, binding.firstConn, binding.firstT)}, ` +
            `but the final stream of epoch ${final.epoch} ends at seq ${final.headSeq}`,
        });
      }
    }

    // Refused publishes are never stored; unknown ones may be, once.
    for (const [eventId, record] of ledger.publishes) {
      const entry = stored.get(eventId);
      if (record.bits === PUB_FAIL) {
        if (!entry) continue;
        log.add({
          kind: 'failed_publish_stored',
          session,
          epoch: final.epoch,
          seq: entry.seq,
          eventId,
          t: final.t,
          message:
            `event "${eventId}" was refused (nack ${record.failCode ?? '(no code)'} at t=${record.failT}) on every ` +
            `attempt, but the final stream holds it at seq ${entry.seq}`,
        });
      } else if (!(record.bits & PUB_OK)) {
        if (entry) counts.unknownStored++;
        else counts.unknownNotStored++;
      }
    }
  }

  /** Notes that `session` has `epoch`; returns its ledger. */
  #epoch(ledger: SessionLedger, epoch: string, t: number, where: string): EpochLedger {
    let ledgerEpoch = ledger.epochs.get(epoch);
    if (ledgerEpoch) return ledgerEpoch;
    const { counts, log, options } = this.#ctx;
    const previous = [...ledger.epochs.keys()].pop();
    ledgerEpoch = new EpochLedger();
    ledger.epochs.set(epoch, ledgerEpoch);
    counts.epochs++;
    if (previous !== undefined) {
      counts.epochChanges++;
      if (!options.allowEpochChange) {
        log.add({
          kind: 'unexpected_epoch_change',
          session: ledger.session,
          epoch,
          t,
          message:
            `the stream moved from epoch ${previous} to epoch ${epoch} (first seen in ${where}); ` +
            'this scenario loses no history, so the epoch must never change',
        });
      }
    }
    return ledgerEpoch;
  }

  /** Records that (epoch, seq) names `eventId` according to `src`, and checks it against everything seen. */
  #bind(
    ledger: SessionLedger,
    epoch: string,
    seq: number,
    eventId: string,
    src: number,
    conn: string,
    t: number,
    client: string,
  ): void {
    const { log } = this.#ctx;
    const { session } = ledger;
    const ledgerEpoch = this.#epoch(ledger, epoch, t, describe(src, conn, t));
    const bySeq = ledgerEpoch.bySeq.get(seq);
    let binding: Binding | undefined;
    if (bySeq) {
      if (bySeq.eventId === eventId) {
        bySeq.src |= src;
        binding = bySeq;
      } else {
        log.once(`seq_binding|${session}|${epoch}|${seq}`, {
          kind: 'seq_binding',
          session,
          client,
          conn: src & FINAL ? undefined : conn,
          epoch,
          seq,
          eventId,
          t,
          message:
            `epoch ${epoch} seq ${seq} names two events: "${bySeq.eventId}" (${describeBinding(bySeq)}) ` +
            `and "${eventId}" (${describe(src, conn, t)}); a seq must name one event everywhere`,
        });
      }
    }
    const byId = ledgerEpoch.byId.get(eventId);
    if (byId) {
      if (byId.seq === seq) {
        byId.src |= src;
        return;
      }
      // Keep the seq's own binding, so later observations of this seq are still compared.
      if (!bySeq)
        ledgerEpoch.bySeq.set(seq, { eventId, seq, src, firstSrc: src, firstConn: conn, firstT: t });
      const first = describeBinding(byId);
      const now = describe(src, conn, t);
      const bothStored = byId.src & STORED && src & STORED;
      const base = { session, client, conn: src & FINAL ? undefined : conn, epoch, seq, eventId, t } as const;
      if (!(byId.src & STORED) && !(src & STORED)) {
        log.once(`idempotency_broken|${session}|${epoch}|${eventId}`, {
          ...base,
          kind: 'idempotency_broken',
          message:
            `event "${eventId}" was acked at two seqs in epoch ${epoch}: seq ${byId.seq} (${first}) and seq ${seq} ` +
            `(${now}); a retried publish must get its original seq back`,
        });
      } else if (bothStored && ledgerEpoch.acked.has(eventId)) {
        log.once(`acked_publish_duplicated|${session}|${epoch}|${eventId}`, {
          ...base,
          kind: 'acked_publish_duplicated',
          message:
            `acked event "${eventId}" is stored twice in epoch ${epoch}: at seq ${byId.seq} (${first}) and at seq ` +
            `${seq} (${now})`,
        });
      } else if (bothStored) {
        log.once(`duplicate_store|${session}|${epoch}|${eventId}`, {
          ...base,
          kind: 'duplicate_store',
          message:
            `event "${eventId}" is stored twice in epoch ${epoch}: at seq ${byId.seq} (${first}) and at seq ${seq} ` +
            `(${now}); an eventId is stored at one seq only`,
        });
      } else {
        const acked = byId.src & STORED ? { seq, how: now } : { seq: byId.seq, how: first };
        const storedAt = byId.src & STORED ? { seq: byId.seq, how: first } : { seq, how: now };
        log.once(`puback_mismatch|${session}|${epoch}|${eventId}`, {
          ...base,
          kind: 'puback_mismatch',
          seq: acked.seq,
          message:
            `event "${eventId}" was acked at seq ${acked.seq} (${acked.how}) but is stored at seq ${storedAt.seq} ` +
            `(${storedAt.how})`,
        });
      }
      return;
    }
    if (!binding) {
      binding = { eventId, seq, src, firstSrc: src, firstConn: conn, firstT: t };
      if (!bySeq) ledgerEpoch.bySeq.set(seq, binding);
    }
    ledgerEpoch.byId.set(eventId, binding);
  }
}
