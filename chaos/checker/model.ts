import type { CloseOp, HelloOp } from './history.ts';
import type { Counts, ResolvedOptions } from './verdict.ts';
import type { ViolationLog } from './violations.ts';

/**
 * The checker's compact picture of the run, shared by the invariant areas. It holds one
 * small record per connection, logical client and subscriber — never the deliveries
 * themselves — so a soak of millions of ops checks in flat memory.
 */

/** One WebSocket connection (`<client>#<n>`). */
export interface ConnState {
  readonly id: string;
  readonly session: string;
  readonly client: string;
  hello: HelloOp | undefined;
  welcomed: boolean;
  welcomeT: number;
  resumed: boolean;
  subscriberId: string | undefined;
  epoch: string | undefined;
  /** The welcome's `after`. */
  after: number;
  /** The last seq delivered on this connection (starts at `after`). */
  last: number;
  delivered: number;
  closed: CloseOp | undefined;
  /** Acks sent ahead of delivery that no `error ack_ahead` answered yet. */
  pendingAhead: number;
}

/**
 * One logical client. `watermark` is the highest seq it processed in `epoch` after dedupe
 * by seq (everything up to it reached the application, except recorded `holes`).
 */
export interface ClientState {
  readonly name: string;
  readonly session: string;
  epoch: string | undefined;
  watermark: number;
  /** Seq ranges it jumped over (violations already reported), capped. */
  holes: Array<[number, number]>;
  /** Saw a 4011 close since it last changed epoch. */
  saw4011: boolean;
  welcomes: number;
  publishes: number;
  open: Set<ConnState>;
  lastClose: CloseOp | undefined;
}

/** One checkpoint reading: its value and when it was recorded. */
export interface CheckpointReading {
  t: number;
  /** The highest checkpoint read up to and including this one. */
  max: number;
}

/** One gateway subscriber (named by a welcome). */
export interface SubscriberState {
  readonly id: string;
  readonly session: string;
  epoch: string;
  /** Highest seq delivered to it on any connection (starting at its fresh `after`). */
  maxDelivered: number;
  /** Highest ack sent for it, of any kind (starting at its fresh `after`, raised by resume lastSeq). */
  maxAck: number;
  /** Highest ack sent ahead of delivery (such an ack moves the checkpoint if the events were in flight). */
  maxAhead: number;
  /** The latest checkpoint readings (older ones folded into `checkpointFloor`). */
  readings: CheckpointReading[];
  checkpointFloor: number;
  /** Welcomed connections without a recorded close. */
  open: Set<ConnState>;
  /** The latest welcomes (a few): who took the subscriber over, and when. */
  recentWelcomes: Array<{ conn: ConnState; t: number }>;
}

export interface Context {
  readonly options: ResolvedOptions;
  readonly log: ViolationLog;
  readonly counts: Counts;
  readonly model: Model;
}

export class Model {
  readonly conns = new Map<string, ConnState>();
  /** session → client name → state. */
  readonly clients = new Map<string, Map<string, ClientState>>();
  /** session → subscriberId → state. */
  readonly subscribers = new Map<string, Map<string, SubscriberState>>();

  conn(session: string, client: string, id: string): ConnState {
    let conn = this.conns.get(id);
    if (!conn) {
      conn = {
        id,
        session,
        client,
        hello: undefined,
        welcomed: false,
        welcomeT: 0,
        resumed: false,
        subscriberId: undefined,
        epoch: undefined,
        after: 0,
        last: 0,
        delivered: 0,
        closed: undefined,
        pendingAhead: 0,
      };
      this.conns.set(id, conn);
    }
    return conn;
  }

  client(session: string, name: string): ClientState {
    let bySession = this.clients.get(session);
    if (!bySession) this.clients.set(session, (bySession = new Map()));
    let client = bySession.get(name);
    if (!client) {
      client = {
        name,
        session,
        epoch: undefined,
        watermark: 0,
        holes: [],
        saw4011: false,
        welcomes: 0,
        publishes: 0,
        open: new Set(),
        lastClose: undefined,
      };
      bySession.set(name, client);
    }
    return client;
  }

  subscriber(session: string, id: string): SubscriberState | undefined {
    return this.subscribers.get(session)?.get(id);
  }

  /** A subscriber as a welcome introduces it: delivery starts after `after`. */
  newSubscriber(session: string, id: string, epoch: string, after: number): SubscriberState {
    let bySession = this.subscribers.get(session);
    if (!bySession) this.subscribers.set(session, (bySession = new Map()));
    const sub: SubscriberState = {
      id,
      session,
      epoch,
      maxDelivered: after,
      maxAck: after,
      maxAhead: 0,
      readings: [],
      checkpointFloor: -1,
      open: new Set(),
      recentWelcomes: [],
    };
    bySession.set(id, sub);
    return sub;
  }
}

/** `a..b` or `a` for a one-seq range. */
export function range(from: number, to: number): string {
  return from === to ? `${from}` : `${from}..${to}`;
}

/** `seq a` or `seqs a..b`. */
export function seqs(from: number, to: number): string {
  return from === to ? `seq ${from}` : `seqs ${from}..${to}`;
}

/** The seqs a stream holds, `seqs 1..n`, or `no events`. */
export function span(firstSeq: number, headSeq: number): string {
  return headSeq < firstSeq ? 'no events' : seqs(firstSeq, headSeq);
}
