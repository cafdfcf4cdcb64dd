/**
 * The violation kinds the checker reports, one stable id per invariant, grouped by area.
 * An id is part of the verdict format (scripts and dashboards match on it): it is never
 * renamed, and a retired id is never reused. Each description is the invariant in one line.
 */
export const ViolationKinds = {
  // ── the stored stream (per session and epoch) ──────────────────────────────────────
  seq_binding: 'one (session, epoch, seq) names one eventId everywhere: deliveries, pubacks, final stream',
  duplicate_store: 'one eventId is stored at one seq only within an epoch',
  gap_in_stream: 'the final stream holds every seq from firstSeq (1 unless trimming is allowed) to headSeq',
  phantom_event: 'no seq is delivered beyond the final head of its epoch',
  // ── publishes ──────────────────────────────────────────────────────────────────────
  puback_mismatch: 'an acked event is stored at the seq its puback named',
  acked_publish_lost: 'an acked event is in the final stream of its epoch',
  acked_publish_duplicated: 'an acked event is stored once',
  idempotency_broken: 'retries of one eventId get one seq within an epoch',
  failed_publish_stored: 'a publish refused with a non-retryable nack is never stored',
  internal_refusal:
    'no publish is refused as `internal`: faults of Redis or the network are `unavailable` (retryable)',
  // ── one connection ─────────────────────────────────────────────────────────────────
  conn_order: 'on one connection deliveries go welcome.after+1, +1, +1…, and `replayed` names the last one',
  delivery_before_welcome: 'no event is delivered on a connection before its welcome',
  welcome_after_mismatch:
    'a welcome starts where the hello asked (after, or resume.lastSeq), never past its own head',
  // ── one logical client ─────────────────────────────────────────────────────────────
  client_gap: 'after dedupe by seq, a client processes every seq of an epoch in order, without holes',
  client_reorder: 'a seq the client skipped never turns up later (it would be dropped as a duplicate)',
  resume_skipped_events: 'a resume never starts after events the client neither processed nor claimed',
  undelivered_at_end: 'after the drain phase every subscriber client holds the final head of the final epoch',
  // ── epochs ─────────────────────────────────────────────────────────────────────────
  silent_epoch_change:
    'an epoch change reaches clients as 4011 history_gone (or a new welcome), never silently',
  unexpected_epoch_change: 'the epoch never changes unless the scenario loses history on purpose',
  spurious_history_gone:
    'a resume is refused with 4011 only if its epoch is gone or its lastSeq is beyond what the stream holds',
  // ── subscribers: supersede and checkpoints ─────────────────────────────────────────
  race_survivors: 'a burst of duplicate resumes leaves exactly one live connection',
  multiple_live_connections: 'a subscriber never keeps two live connections past the supersede grace',
  not_superseded: 'a connection is closed (4009) once a newer resume of its subscriber was welcomed',
  unprovoked_supersede:
    'a fresh subscriber is closed 4009 only after some hello resumed it (a lost subscriber record is not a takeover)',
  checkpoint_decreased: 'a subscriber checkpoint never goes down',
  checkpoint_ahead_of_delivery: 'a checkpoint never exceeds the highest seq delivered to its subscriber',
  checkpoint_ahead_of_acks: 'a checkpoint never exceeds the highest ack sent for its subscriber',
  // ── the run as a whole ─────────────────────────────────────────────────────────────
  missing_final_stream: 'a session with acked publishes has a final_stream read to check them against',
  memory_unbounded: "every gateway node's RSS stays under the scenario's bound",
} as const;

export type ViolationKind = keyof typeof ViolationKinds;

export interface Violation {
  kind: ViolationKind;
  /** The session, or '' for node-level violations (memory). */
  session: string;
  client?: string;
  conn?: string;
  subscriberId?: string;
  epoch?: string;
  seq?: number;
  eventId?: string;
  node?: string;
  /** Run time (ms) of the op that revealed it. */
  t: number;
  /** What was expected and what was seen, readable at a glance. */
  message: string;
}

/** A violation as the invariants build it: optional fields may be passed as undefined. */
export type ViolationInit = Pick<Violation, 'kind' | 'session' | 't' | 'message'> & {
  [K in Exclude<keyof Violation, 'kind' | 'session' | 't' | 'message'>]?: Violation[K] | undefined;
};

/** Every kind keeps at least this many examples, whatever the overall cap. */
const KEPT_PER_KIND = 3;

/**
 * The violations of a run: totals per kind and per session are exact; the examples kept are
 * the first `max` found, plus the first few of every kind, so one flooding kind cannot hide
 * the others.
 */
export class ViolationLog {
  readonly kept: Violation[] = [];
  readonly totals: Partial<Record<ViolationKind, number>> = {};
  readonly bySession = new Map<string, number>();
  total = 0;
  readonly #max: number;
  readonly #keptByKind = new Map<ViolationKind, number>();
  readonly #reported = new Set<string>();

  constructor(max: number) {
    this.#max = max;
  }

  add(init: ViolationInit): void {
    const violation = {} as Record<string, unknown>;
    for (const [key, value] of Object.entries(init)) if (value !== undefined) violation[key] = value;
    const v = violation as unknown as Violation;
    this.total++;
    this.totals[v.kind] = (this.totals[v.kind] ?? 0) + 1;
    this.bySession.set(v.session, (this.bySession.get(v.session) ?? 0) + 1);
    const keptOfKind = this.#keptByKind.get(v.kind) ?? 0;
    if (this.kept.length < this.#max || keptOfKind < KEPT_PER_KIND) {
      this.kept.push(v);
      this.#keptByKind.set(v.kind, keptOfKind + 1);
    }
  }

  /** Adds the violation unless one with the same key was added before (one report per fact). */
  once(key: string, init: ViolationInit): void {
    if (this.#reported.has(key)) return;
    this.#reported.add(key);
    this.add(init);
  }

  /** Whether a violation with this key was reported through `once`. */
  reported(key: string): boolean {
    return this.#reported.has(key);
  }
}
