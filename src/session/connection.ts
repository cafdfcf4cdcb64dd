import type { Codec } from '../codec/index.ts';
import { randomBase64url } from '../util/random-pool.ts';
import type { Role } from '../protocol/roles.ts';
import type { ServerFrame } from '../protocol/frames.ts';
import type { Sink } from './sink.ts';
import type { SessionActor } from './session-actor.ts';

/**
 * A connection's life: waiting for `hello`, checking it, attached to a session actor as
 * a subscriber's live connection, then closed. A superseded connection is closed the
 * moment another one resumes its subscriber.
 */
export type ConnectionState = 'awaiting_hello' | 'authenticating' | 'live' | 'closed';

/** Who a live connection acts for: from the JWT, or from a verified resume token. */
export interface ConnectionIdentity {
  userId: string;
  tenantId: string;
  role: Role;
}

const CHECKPOINT_WRITING = 1;
const READING = 2;
const REPLAYED_SENT = 4;
const EOS_SENT = 8;

/**
 * This process's part of every connection id: random, so that ids (and the subscriber
 * ids made from them) stay unique across nodes and restarts.
 */
const ID_TAG = randomBase64url(9);

/**
 * Per-socket state. Positions follow the protocol: `sentSeq` is the highest seq
 * delivered on this connection (it starts at `after`), `ackedSeq` the highest seq the
 * client acknowledged on it. In flight = sentSeq − ackedSeq, never above maxInFlight.
 *
 * Idle connections are many, so every field counts (`npm run bench:conn-heap`): the id is
 * a number until someone asks for its string, the session id is the actor's, and rare
 * state (pubacks waiting, a slow-consumer timer, frames before welcome) stays undefined.
 */
export class Connection {
  /** Unique in this process; `id` is the protocol's string form. */
  readonly serial: number;
  readonly codec: Codec;
  readonly sink: Sink;
  state: ConnectionState = 'awaiting_hello';

  /** The actor this connection is attached to, from `welcome` on. */
  actor: SessionActor | undefined;
  subscriberId = '';
  generation = 0;
  /** The role it acts in (from the JWT or the resume token), from `welcome` on: what it may publish. */
  role: Role | undefined;

  sentSeq = 0;
  ackedSeq = 0;
  /** The last checkpoint written (or being written) to the engine for this connection. */
  savedSeq = 0;
  /** The four flags below, as bits of one field: idle connections are many (see bench:conn-heap). */
  #flags = 0;
  /** Publishes from this connection not yet answered. */
  pendingPubs = 0;
  /**
   * Encoded control frames (pubacks) waiting for the session actor's next pump of this
   * connection, which writes them ahead of its events in one corked write.
   */
  outbox: Uint8Array[] | undefined;
  /** Set while the socket buffer is over its limit; fires the 4101 close. */
  slowTimer: NodeJS.Timeout | undefined;
  /** Frames that arrived while `hello` was being checked; replayed after welcome. Created on the first. */
  earlyFrames: unknown[] | undefined;

  constructor(serial: number, codec: Codec, sink: Sink) {
    this.serial = serial;
    this.codec = codec;
    this.sink = sink;
  }

  /** `conn_<process tag><serial>`: built when asked (welcome, inspector), never stored. */
  get id(): string {
    return `conn_${ID_TAG}${this.serial.toString(36)}`;
  }

  /** The id of a fresh subscriber made on this connection: unique as the connection id is. */
  get freshSubscriberId(): string {
    return `sub_${ID_TAG}${this.serial.toString(36)}`;
  }

  /** The session it is attached to ('' before `welcome`). */
  get sessionId(): string {
    return this.actor?.sessionId ?? '';
  }

  get live(): boolean {
    return this.state === 'live';
  }

  /** A checkpoint write for this connection is under way. */
  get checkpointWriting(): boolean {
    return this.#flag(CHECKPOINT_WRITING);
  }
  set checkpointWriting(on: boolean) {
    this.#setFlag(CHECKPOINT_WRITING, on);
  }

  /** An engine read for catch-up is under way; live fan-out leaves this connection to it. */
  get reading(): boolean {
    return this.#flag(READING);
  }
  set reading(on: boolean) {
    this.#setFlag(READING, on);
  }

  get replayedSent(): boolean {
    return this.#flag(REPLAYED_SENT);
  }
  set replayedSent(on: boolean) {
    this.#setFlag(REPLAYED_SENT, on);
  }

  get eosSent(): boolean {
    return this.#flag(EOS_SENT);
  }
  set eosSent(on: boolean) {
    this.#setFlag(EOS_SENT, on);
  }

  #flag(bit: number): boolean {
    return (this.#flags & bit) !== 0;
  }

  #setFlag(bit: number, on: boolean): void {
    this.#flags = on ? this.#flags | bit : this.#flags & ~bit;
  }

  /** Encodes and sends a control frame (never an `ev`: those are encoded once, elsewhere). */
  sendFrame(frame: ServerFrame): void {
    if (this.state === 'closed') return;
    this.sink.send(this.codec.encode(frame), this.codec.binary);
  }

  sendError(code: string, message: string, retryable = false): void {
    this.sendFrame({ op: 'error', code, message, retryable });
  }

  /** Closes the socket and stops every timer; safe to call more than once. */
  close(code: number, reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.clearTimers();
    this.sink.close(code, reason);
  }

  clearTimers(): void {
    clearTimeout(this.slowTimer);
    this.slowTimer = undefined;
  }
}
