/**
 * The history of a chaos run: every operation the client swarm performed and what it
 * observed, in the order the swarm saw it (one Node process, so the order of `record`
 * calls is a total order of observations). It is the only input of the checker, and it
 * is written to disk as JSON Lines so that a verdict can be re-checked offline.
 *
 * Outcomes follow Jepsen: `ok` (the gateway confirmed), `fail` (the gateway refused, so
 * the operation certainly did not happen) and `unknown` (the connection went away before
 * an answer: it may or may not have happened). The checker never assumes an `unknown`
 * publish was lost, nor that it was stored.
 *
 * Names used throughout:
 * - `client`: a logical client of the swarm (one publisher, or one durable subscriber that
 *   survives reconnects, resume expiry and epoch changes under the same name);
 * - `conn`: one WebSocket connection, unique over the run (`<client>#<n>`);
 * - `subscriberId`: the gateway's subscriber, named by a welcome. A logical client has a
 *   new one after every fresh hello.
 */

export type Outcome = 'ok' | 'fail' | 'unknown';

interface Base {
  /** Milliseconds since the start of the run (monotonic clock). */
  t: number;
  session: string;
  client: string;
}

/** A connection was opened and its hello sent. */
export interface HelloOp extends Base {
  op: 'hello';
  conn: string;
  codec: 'json' | 'msgpack';
  /** Fresh hello: `after` as sent. Absent on a resume. */
  after?: number | 'latest';
  /** Resume: the subscriber named by the token, and `lastSeq`/`epoch` as sent (absent: not sent). */
  resume?: { subscriberId: string; lastSeq?: number; epoch?: string };
  /** Set when this hello is one of a burst of concurrent resumes of one subscriber. */
  race?: string;
}

/** The gateway answered a hello with `welcome`. */
export interface WelcomeOp extends Base {
  op: 'welcome';
  conn: string;
  subscriberId: string;
  epoch: string;
  headSeq: number;
  /** The seq delivery starts after, as the welcome states it. */
  after: number;
  resumed: boolean;
}

/** An `ev` frame arrived on a connection (before any client-side dedupe). */
export interface DeliverOp extends Base {
  op: 'deliver';
  conn: string;
  subscriberId: string;
  epoch: string;
  seq: number;
  eventId: string;
}

/** The `replayed` marker arrived. */
export interface ReplayedOp extends Base {
  op: 'replayed';
  conn: string;
  seq: number;
}

/** The client sent `ack` (it may be stale, late, repeated or deliberately ahead). */
export interface AckOp extends Base {
  op: 'ack';
  conn: string;
  subscriberId: string;
  seq: number;
  /** Why this ack was sent: an honest cumulative ack, or one of the abuse kinds. */
  kind: 'cumulative' | 'stale' | 'repeat' | 'ahead' | 'on_superseded';
}

/** An `error` frame arrived (not fatal by itself). */
export interface ErrorFrameOp extends Base {
  op: 'error';
  conn: string;
  code: string;
}

/** The connection closed (by either side, or the network). */
export interface CloseOp extends Base {
  op: 'close';
  conn: string;
  code: number;
  reason: string;
  /** True when the swarm closed it itself (fault injection or the end of the run). */
  byClient: boolean;
  /**
   * Optional: true when the swarm stopped this client for good before the finish phase (it
   * will not reconnect, so it is not expected to catch up). `byClient` alone cannot say
   * this: the finish phase closes every connection by client too.
   */
  leftEarly?: boolean;
}

/** A publish attempt and its outcome. Retries of one event share `eventId`. */
export interface PublishOp extends Base {
  op: 'publish';
  conn: string;
  eventId: string;
  attempt: number;
  outcome: Outcome;
  /** The seq the puback named (outcome ok). */
  seq?: number;
  /** The epoch of the connection that got the puback (outcome ok). */
  epoch?: string;
  /** The nack code (outcome fail, or unknown for retryable nacks). */
  code?: string;
}

/**
 * A checkpoint observation: a resume without `lastSeq` starts after the subscriber's
 * stored checkpoint, so its welcome's `after` is the checkpoint at that moment.
 */
export interface CheckpointOp extends Base {
  op: 'checkpoint';
  /**
   * Optional: the connection whose welcome read the checkpoint. Without it the checker
   * takes the subscriber's latest welcome (the swarm records the checkpoint right after).
   */
  conn?: string;
  subscriberId: string;
  epoch: string;
  seq: number;
}

/**
 * A burst of duplicate resumes settled: every connection of the race is closed or is the
 * one left open. `survivors` counts the race's connections still open once the others
 * closed (or the settle timeout passed).
 */
export interface RaceSettledOp extends Base {
  op: 'race_settled';
  race: string;
  subscriberId: string;
  conns: string[];
  survivors: string[];
}

/**
 * The end-of-run read of a session's stored stream over HTTP (`GET …/events`, paged from
 * 0): the truth the deliveries and pubacks are compared with.
 */
export interface FinalStreamOp extends Base {
  op: 'final_stream';
  epoch: string;
  headSeq: number;
  /** The seq of the first retained event (1 unless retention trimmed the stream). */
  firstSeq: number;
  /** eventIds by position: `eventIds[i]` is stored at seq `firstSeq + i`. */
  eventIds: string[];
}

/** A fault the scenario injected (for the timeline; the checker does not need it). */
export interface FaultOp {
  op: 'fault';
  t: number;
  fault: string;
  target: string;
  detail?: string;
}

/** A gateway memory sample (RSS) taken by the harness. */
export interface MemoryOp {
  op: 'memory';
  t: number;
  node: string;
  rssBytes: number;
}

export type HistoryOp =
  | HelloOp
  | WelcomeOp
  | DeliverOp
  | ReplayedOp
  | AckOp
  | ErrorFrameOp
  | CloseOp
  | PublishOp
  | CheckpointOp
  | RaceSettledOp
  | FinalStreamOp
  | FaultOp
  | MemoryOp;
