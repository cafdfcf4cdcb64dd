import type { Codec } from '../codec/index.ts';
import { randomBase64url } from '../util/random-pool.ts';
import { Roles, type Role } from '../protocol/roles.ts';
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

// #bits: four flags, then the state (2 bits), then the role (3 bits: 0 = none, else index + 1)
const CHECKPOINT_WRITING = 1;
const READING = 2;
const REPLAYED_SENT = 4;
const EOS_SENT = 8;
const STATE_SHIFT = 4;
const STATE_MASK = 3 << STATE_SHIFT;
const ROLE_SHIFT = 6;
const ROLE_MASK = 7 << ROLE_SHIFT;
const STATES: readonly ConnectionState[] = ['awaiting_hello', 'authenticating', 'live', 'closed'];
const STATE_BITS: Readonly<Record<ConnectionState, number>> = {
  awaiting_hello: 0,
  authenticating: 1 << STATE_SHIFT,
  live: 2 << STATE_SHIFT,
  closed: 3 << STATE_SHIFT,
};

/**
 * What only some connections need (publishers, slow consumers, clients that send before
 * `welcome`): one object, made on first use, instead of four fields on every connection.
 */
class RareState {
  pendingPubs = 0;
  outbox: Uint8Array[] | undefined;
  slowTimer: NodeJS.Timeout | undefined;
  earlyFrames: unknown[] | undefined;
}

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
 * a number until someone asks for its string, the session id is the actor's, the state,
 * role and flags share one small integer, and rare state (pubacks waiting, a
 * slow-consumer timer, frames before welcome) lives in an object made on first use.
 */
export class Connection {
  /** Unique in this process; `id` is the protocol's string form. */
  readonly serial: number;
  readonly codec: Codec;
  readonly sink: Sink;

  /** The actor this connection is attached to, from `welcome` on. */
  actor: SessionActor | undefined;
  subscriberId = '';
  generation = 0;

  sentSeq = 0;
  ackedSeq = 0;
  /** The last checkpoint written (or being written) to the engine for this connection. */
  savedSeq = 0;
  /** The flags, the state and the role, as bits of one field (see the constants above). */
  #bits = 0;
  #rare: RareState | undefined;

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

  get state(): ConnectionState {
    return STATES[(this.#bits & STATE_MASK) >> STATE_SHIFT]!;
  }
  set state(state: ConnectionState) {
    this.#bits = (this.#bits & ~STATE_MASK) | STATE_BITS[state];
  }

  get live(): boolean {
    return (this.#bits & STATE_MASK) === STATE_BITS.live;
  }

  /** The role it acts in (from the JWT or the resume token), from `welcome` on: what it may publish. */
  get role(): Role | undefined {
    const index = (this.#bits & ROLE_MASK) >> ROLE_SHIFT;
    return index === 0 ? undefined : Roles[index - 1];
  }
  set role(role: Role | undefined) {
    const index = role === undefined ? 0 : Roles.indexOf(role) + 1;
    this.#bits = (this.#bits & ~ROLE_MASK) | (index << ROLE_SHIFT);
  }

  /** Publishes from this connection not yet answered. */
  get pendingPubs(): number {
    return this.#rare?.pendingPubs ?? 0;
  }
  set pendingPubs(n: number) {
    this.#rareState().pendingPubs = n;
  }

  /**
   * Encoded control frames (pubacks) waiting for the session actor's next pump of this
   * connection, which writes them ahead of its events in one corked write.
   */
  get outbox(): Uint8Array[] | undefined {
    return this.#rare?.outbox;
  }
  set outbox(frames: Uint8Array[] | undefined) {
    if (frames !== undefined || this.#rare) this.#rareState().outbox = frames;
  }

  /** Set while the socket buffer is over its limit; fires the 4101 close. */
  get slowTimer(): NodeJS.Timeout | undefined {
    return this.#rare?.slowTimer;
  }
  set slowTimer(timer: NodeJS.Timeout | undefined) {
    if (timer !== undefined || this.#rare) this.#rareState().slowTimer = timer;
  }

  /** Frames that arrived while `hello` was being checked; replayed after welcome. Created on the first. */
  get earlyFrames(): unknown[] | undefined {
    return this.#rare?.earlyFrames;
  }
  set earlyFrames(frames: unknown[] | undefined) {
    if (frames !== undefined || this.#rare) this.#rareState().earlyFrames = frames;
  }

  #rareState(): RareState {
    return (this.#rare ??= new RareState());
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
    return (this.#bits & bit) !== 0;
  }

  #setFlag(bit: number, on: boolean): void {
    this.#bits = on ? this.#bits | bit : this.#bits & ~bit;
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
