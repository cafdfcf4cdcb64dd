import type { Violation, ViolationKind } from './violations.ts';

/** What a scenario lets happen. Every field is optional; the defaults are the strict ones. */
export interface CheckerOptions {
  /** The swarm drains at the end: every subscriber client must hold the final head. Default false. */
  expectDrained?: boolean;
  /** Retention may trim the stream: the final stream may start after seq 1. Default false. */
  retentionMayTrim?: boolean;
  /** Bound on every node's RSS (bytes); unset: memory is only reported. */
  maxRssBytes?: number;
  /** History loss is the point of the scenario: epoch changes (with 4011) are allowed. Default false. */
  allowEpochChange?: boolean;
  /**
   * How long (ms) an older connection of a subscriber may stay open after a newer resume of
   * it was welcomed before it counts as never superseded. Default 15 000.
   */
  supersedeGraceMs?: number;
  /** Violations kept as examples in the verdict (totals are always exact). Default 100. */
  maxViolations?: number;
  /**
   * Fault names (case-insensitive substrings) that excuse a duplicate-resume race with more
   * than one survivor when one was injected during the race. Default ['kill', 'crash'].
   */
  raceDisturbingFaults?: string[];
}

export type ResolvedOptions = Required<Omit<CheckerOptions, 'maxRssBytes'>> & {
  maxRssBytes: number | undefined;
};

export function resolveOptions(options: CheckerOptions = {}): ResolvedOptions {
  return {
    expectDrained: options.expectDrained ?? false,
    retentionMayTrim: options.retentionMayTrim ?? false,
    maxRssBytes: options.maxRssBytes,
    allowEpochChange: options.allowEpochChange ?? false,
    supersedeGraceMs: options.supersedeGraceMs ?? 15_000,
    maxViolations: options.maxViolations ?? 100,
    raceDisturbingFaults: options.raceDisturbingFaults ?? ['kill', 'crash'],
  };
}

/** Everything the checker counted. Plain JSON: it is written into verdict.json as is. */
export interface Counts {
  ops: number;
  opsByType: Record<string, number>;
  sessions: number;
  /** Logical clients with at least one recorded connection op. */
  clients: number;
  /** Connections with a recorded hello or welcome. */
  connections: number;
  hellos: { fresh: number; resume: number };
  welcomes: { fresh: number; resumed: number };
  /** Publish attempts by outcome; `retryableNacks` are `fail`s with a retryable code, judged as unknown. */
  publishes: { ok: number; fail: number; unknown: number; retryableNacks: number };
  /** Distinct (session, eventId) published. */
  publishedEvents: number;
  /** Publishes whose every attempt was unknown: stored (once) or not, as the final stream says. */
  unknownStored: number;
  unknownNotStored: number;
  /** Acked events of an epoch that is not the final one, and not in the final stream. */
  lostToEpochChange: number;
  /** Acked events below the first retained seq (retention may trim). */
  ackedTrimmed: number;
  eventsStored: number;
  deliveries: number;
  /** Redeliveries of seqs the client had already processed (dropped by its dedupe). */
  duplicatesDropped: number;
  /** Deliveries of an epoch the client had already left. */
  staleEpochDeliveries: number;
  /** Seqs a client skipped on purpose: a fresh hello asking for `after` beyond what it held. */
  skippedByFreshHello: number;
  /** Seqs skipped by a resume that the client asked for (its lastSeq, or an ack ahead of delivery). */
  skippedByClientClaim: number;
  /** A client moved to another epoch through a fresh welcome without having seen a 4011. */
  epochSwitchWithout4011: number;
  acks: Record<string, number>;
  /** Acks sent ahead of delivery, and how many were answered with `error ack_ahead`. */
  ackAhead: { sent: number; answered: number; unanswered: number; unexpectedErrors: number };
  errors: Record<string, number>;
  closes: Record<string, number>;
  races: number;
  raceSurvivors: number;
  racesDisturbed: number;
  racesWithoutWelcome: number;
  /** Older connections retired after a newer resume (any close), and those still pending at the end within the grace. */
  supersedes: number;
  supersedePendingAtEnd: number;
  checkpoints: number;
  /** Checkpoints above every delivery but covered by an ack sent ahead of delivery (the client claimed them). */
  checkpointsFromAheadAcks: number;
  /** Checkpoints read concurrently with a higher one (duplicate resumes): not compared with it. */
  checkpointsConcurrent: number;
  /** Distinct (session, epoch) pairs, and epoch changes (epochs beyond each session's first). */
  epochs: number;
  epochChanges: number;
  finalStreams: number;
  sessionsWithoutFinal: number;
  faults: Record<string, number>;
  memory: { samples: number; maxByNode: Record<string, number> };
  unknownOps: number;
}

export function emptyCounts(): Counts {
  return {
    ops: 0,
    opsByType: {},
    sessions: 0,
    clients: 0,
    connections: 0,
    hellos: { fresh: 0, resume: 0 },
    welcomes: { fresh: 0, resumed: 0 },
    publishes: { ok: 0, fail: 0, unknown: 0, retryableNacks: 0 },
    publishedEvents: 0,
    unknownStored: 0,
    unknownNotStored: 0,
    lostToEpochChange: 0,
    ackedTrimmed: 0,
    eventsStored: 0,
    deliveries: 0,
    duplicatesDropped: 0,
    staleEpochDeliveries: 0,
    skippedByFreshHello: 0,
    skippedByClientClaim: 0,
    epochSwitchWithout4011: 0,
    acks: {},
    ackAhead: { sent: 0, answered: 0, unanswered: 0, unexpectedErrors: 0 },
    errors: {},
    closes: {},
    races: 0,
    raceSurvivors: 0,
    racesDisturbed: 0,
    racesWithoutWelcome: 0,
    supersedes: 0,
    supersedePendingAtEnd: 0,
    checkpoints: 0,
    checkpointsFromAheadAcks: 0,
    checkpointsConcurrent: 0,
    epochs: 0,
    epochChanges: 0,
    finalStreams: 0,
    sessionsWithoutFinal: 0,
    faults: {},
    memory: { samples: 0, maxByNode: {} },
    unknownOps: 0,
  };
}

export function bump(record: Record<string, number>, key: string | number, by = 1): void {
  record[key] = (record[key] ?? 0) + by;
}

export interface SessionSummary {
  /** Epochs in the order they were first seen. */
  epochs: string[];
  finalEpoch?: string;
  headSeq?: number;
  eventsStored: number;
  deliveries: number;
  publishes: { ok: number; fail: number; unknown: number };
  clients: number;
  violations: number;
}

export interface Verdict {
  ok: boolean;
  options: CheckerOptions;
  counts: Counts;
  /** All violations found (the examples below may be fewer). */
  violationCount: number;
  violationTotals: Partial<Record<ViolationKind, number>>;
  /** Examples, in the order found: the first `maxViolations`, plus the first few of every kind. */
  violations: Violation[];
  perSession: Record<string, SessionSummary>;
}
