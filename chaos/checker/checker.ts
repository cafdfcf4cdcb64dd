import { DeliveryInvariants } from './deliveries.ts';
import type { CloseOp, HistoryOp, MemoryOp } from './history.ts';
import { Model, type Context } from './model.ts';
import { StreamInvariants } from './streams.ts';
import { SubscriberInvariants } from './subscribers.ts';
import {
  bump,
  emptyCounts,
  resolveOptions,
  type CheckerOptions,
  type SessionSummary,
  type Verdict,
} from './verdict.ts';
import { ViolationLog } from './violations.ts';

/**
 * The online checker of a chaos run. Feed it every op of the history in the order the
 * swarm observed them (`record`), live during the run or from a saved file, then ask for
 * the verdict (`finish`). It keeps compact state — a binding per stored event, a record
 * per connection, client and subscriber, a watermark per client — never the deliveries, so
 * a soak of millions of ops checks in flat memory.
 *
 * The invariants live in three areas (each file's header lists its own):
 * - streams.ts: what is stored — seq↔eventId bindings, pubacks, refused publishes, the
 *   final read, epochs;
 * - deliveries.ts: what each connection and each logical client received;
 * - subscribers.ts: supersede, duplicate-resume races, checkpoints;
 * and here: memory bounds and the close/fault tallies. violations.ts names every kind.
 */
export class Checker {
  readonly #ctx: Context;
  readonly #streams: StreamInvariants;
  readonly #deliveries: DeliveryInvariants;
  readonly #subscribers: SubscriberInvariants;
  readonly #options: CheckerOptions;
  readonly #memoryReported = new Set<string>();
  #lastT = 0;
  #finished: Verdict | undefined;
  #late = 0;

  constructor(options: CheckerOptions = {}) {
    this.#options = { ...options };
    const resolved = resolveOptions(options);
    this.#ctx = {
      options: resolved,
      log: new ViolationLog(resolved.maxViolations),
      counts: emptyCounts(),
      model: new Model(),
    };
    this.#streams = new StreamInvariants(this.#ctx);
    this.#deliveries = new DeliveryInvariants(this.#ctx);
    this.#subscribers = new SubscriberInvariants(this.#ctx);
  }

  /**
   * Checks one op. Ops must come in the order they were observed. Ops recorded after
   * `finish` (a socket's close event landing after the run ended) are counted in
   * `lateOps` and otherwise ignored: the verdict is already out.
   */
  /** 4011 answers to resumes with lastSeq, judged against the final stream at the end. */
  readonly #refusedResumes: Array<{ op: CloseOp; lastSeq: number; epoch: string | undefined }> = [];

  /**
   * A resume refused with history_gone although the stream never changed epoch and
   * still holds its lastSeq: the node judged by a stale view of the head.
   */
  #judgeRefusedResumes(): void {
    for (const { op, lastSeq, epoch } of this.#refusedResumes) {
      const final = this.#streams.finalOf(op.session);
      if (!final || epoch === undefined || final.epoch !== epoch) continue;
      if (this.#streams.sessions.get(op.session)?.epochs.size !== 1) continue;
      if (lastSeq > final.headSeq || final.firstSeq > lastSeq + 1) continue;
      this.#ctx.log.add({
        kind: 'spurious_history_gone',
        session: op.session,
        client: op.client,
        conn: op.conn,
        epoch,
        seq: lastSeq,
        t: op.t,
        message:
          `resume with lastSeq ${lastSeq} on epoch ${epoch} was closed 4011 history_gone, but that epoch never ` +
          `changed and its stream holds seqs ${final.firstSeq}..${final.headSeq}`,
      });
    }
  }

  record(op: HistoryOp): void {
    if (this.#finished) {
      this.#late++;
      return;
    }
    const { counts, model } = this.#ctx;
    counts.ops++;
    bump(counts.opsByType, op.op);
    if (op.t > this.#lastT) this.#lastT = op.t;
    switch (op.op) {
      case 'hello': {
        const conn = model.conn(op.session, op.client, op.conn);
        conn.hello = op;
        model.client(op.session, op.client);
        this.#streams.ledger(op.session);
        if (op.resume) counts.hellos.resume++;
        else counts.hellos.fresh++;
        this.#subscribers.onHello(op);
        return;
      }
      case 'welcome': {
        const conn = model.conn(op.session, op.client, op.conn);
        const client = model.client(op.session, op.client);
        this.#streams.onWelcome(op);
        // Subscribers first: a resume's epoch is judged against the subscriber's before the client moves on.
        this.#subscribers.onWelcome(op, conn);
        this.#deliveries.onWelcome(op, conn, client);
        return;
      }
      case 'deliver': {
        const conn = model.conn(op.session, op.client, op.conn);
        const client = model.client(op.session, op.client);
        this.#streams.onDeliver(op);
        this.#deliveries.onDeliver(op, conn, client);
        this.#subscribers.onDeliver(op, conn);
        return;
      }
      case 'replayed':
        this.#deliveries.onReplayed(op, model.conn(op.session, op.client, op.conn));
        return;
      case 'ack':
        this.#subscribers.onAck(op, model.conn(op.session, op.client, op.conn));
        return;
      case 'error':
        this.#subscribers.onError(op, model.conn(op.session, op.client, op.conn));
        return;
      case 'close': {
        const conn = model.conn(op.session, op.client, op.conn);
        if (conn.closed) return; // one close per connection; a repeat adds nothing
        conn.closed = op;
        bump(counts.closes, op.code);
        // A 4011 answering a resume that named an epoch the stream never had (the swarm's
        // deliberate bogus epoch) says nothing about an epoch change.
        const named = conn.hello?.resume?.epoch;
        const tells = op.code === 4011 && (named === undefined || this.#streams.hasEpoch(op.session, named));
        this.#streams.onClose(op.session, tells);
        const lastSeq = conn.hello?.resume?.lastSeq;
        if (op.code === 4011 && tells && lastSeq !== undefined) {
          this.#refusedResumes.push({ op, lastSeq, epoch: named ?? conn.hello?.resume?.epoch });
        }
        this.#deliveries.onClose(op, conn, model.client(op.session, op.client), tells);
        this.#subscribers.onClose(op, conn);
        return;
      }
      case 'publish':
        // Publisher connections are not tracked (their hellos are not recorded): only their epoch, if known.
        model.client(op.session, op.client).publishes++;
        this.#streams.onPublish(op, model.conns.get(op.conn)?.epoch);
        return;
      case 'checkpoint':
        this.#subscribers.onCheckpoint(op);
        return;
      case 'race_settled':
        this.#subscribers.onRaceSettled(op);
        return;
      case 'final_stream':
        this.#streams.onFinal(op);
        return;
      case 'fault':
        bump(counts.faults, op.fault);
        this.#subscribers.onFault(op);
        return;
      case 'memory':
        this.#memory(op);
        return;
      default:
        counts.unknownOps++;
    }
  }

  /** Ops recorded after `finish` (ignored). */
  get lateOps(): number {
    return this.#late;
  }

  /** Runs the end-of-run checks and returns the verdict (idempotent). */
  finish(): Verdict {
    if (this.#finished) return this.#finished;
    const { counts, log, model } = this.#ctx;
    this.#streams.finish(this.#lastT);
    this.#deliveries.finish((session) => this.#streams.finalOf(session));
    this.#subscribers.finish(this.#lastT);
    this.#judgeRefusedResumes();

    for (const conn of model.conns.values()) if (conn.hello || conn.welcomed) counts.connections++;
    for (const clients of model.clients.values()) counts.clients += clients.size;

    const perSession: Record<string, SessionSummary> = {};
    for (const [session, ledger] of this.#streams.sessions) {
      const final = ledger.final;
      perSession[session] = {
        epochs: [...ledger.epochs.keys()],
        ...(final ? { finalEpoch: final.epoch, headSeq: final.headSeq } : {}),
        eventsStored: final ? final.eventIds.filter((id) => id != null).length : 0,
        deliveries: ledger.deliveries,
        publishes: { ...ledger.publishCounts },
        clients: model.clients.get(session)?.size ?? 0,
        violations: log.bySession.get(session) ?? 0,
      };
    }
    this.#finished = {
      ok: log.total === 0,
      options: this.#options,
      counts,
      violationCount: log.total,
      violationTotals: { ...log.totals },
      violations: log.kept,
      perSession,
    };
    return this.#finished;
  }

  #memory(op: MemoryOp): void {
    const { counts, log, options } = this.#ctx;
    counts.memory.samples++;
    const max = counts.memory.maxByNode[op.node] ?? 0;
    if (op.rssBytes > max) counts.memory.maxByNode[op.node] = op.rssBytes;
    const bound = options.maxRssBytes;
    if (bound === undefined || op.rssBytes <= bound || this.#memoryReported.has(op.node)) return;
    this.#memoryReported.add(op.node);
    log.add({
      kind: 'memory_unbounded',
      session: '',
      node: op.node,
      t: op.t,
      message: `node ${op.node} RSS reached ${mb(op.rssBytes)} at t=${op.t}, over the bound of ${mb(bound)}`,
    });
  }
}

function mb(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

/** Checks a whole history (an array, or `readHistory(path)` to stream a file). */
export function checkHistory(ops: Iterable<HistoryOp>, options: CheckerOptions = {}): Verdict {
  const checker = new Checker(options);
  for (const op of ops) checker.record(op);
  return checker.finish();
}

export type { CheckerOptions, Counts, SessionSummary, Verdict } from './verdict.ts';
export { ViolationKinds, type Violation, type ViolationKind } from './violations.ts';
export { readHistory, writeHistory, writeVerdict } from './history-io.ts';
export { formatSummary } from './summary.ts';
