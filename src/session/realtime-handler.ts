import type { JwtVerifier } from '../auth/jwt.ts';
import type { ResumeTokens } from '../auth/resume-token.ts';
import { assertCanRead } from '../auth/access.ts';
import type { Engine } from '../engine/engine.ts';
import { GatewayError, toGatewayError } from '../errors/gateway-error.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { CloseCodes } from '../protocol/close-codes.ts';
import { parseClientFrame, type ClientFrame, type HelloFrame, type PubFrame } from '../protocol/frames.ts';
import type { Clock } from '../util/clock.ts';
import type { ActorRegistry } from './actor-registry.ts';
import { eventFromPub } from './client-event.ts';
import { closeCodeFor } from './close-reason.ts';
import type { Connection } from './connection.ts';
import { isPlainJson } from '../protocol/plain-json.ts';

export interface RealtimeHandlerDeps {
  registry: ActorRegistry;
  engine: Engine;
  jwt: JwtVerifier;
  resumeTokens: ResumeTokens;
  clock: Clock;
  metrics: Metrics;
  logger: Logger;
  helloTimeoutMs: number;
  maxInFlight: number;
}

/** Frames that may arrive between `hello` and `welcome` before the client is cut off. */
const MAX_EARLY_FRAMES = 64;

const ACK_PREFIX = Buffer.from('{"op":"ack","seq":');
/** `{"op":"ack","seq":` + 1–16 digits + `}`. */
const ACK_MAX_BYTES = ACK_PREFIX.length + 16 + 1;

/**
 * The seq of a JSON text frame that is exactly `{"op":"ack","seq":<n>}` (no spaces, n a
 * safe integer without leading zeros, as JSON.stringify writes it), or -1 for anything
 * else, which then takes the full decode and schema check. Every frame this accepts
 * would decode and validate to the same `ack`.
 */
export function canonicalAckSeq(data: ArrayBuffer): number {
  const length = data.byteLength;
  if (length <= ACK_PREFIX.length + 1 || length > ACK_MAX_BYTES) return -1;
  const bytes = new Uint8Array(data);
  for (let i = 0; i < ACK_PREFIX.length; i++) if (bytes[i] !== ACK_PREFIX[i]) return -1;
  if (bytes[length - 1] !== 0x7d) return -1; // }
  const first = ACK_PREFIX.length;
  const last = length - 2;
  if (bytes[first] === 0x30 && last > first) return -1; // a leading zero is not JSON
  let seq = 0;
  for (let i = first; i <= last; i++) {
    const digit = bytes[i]! - 0x30;
    if (digit < 0 || digit > 9) return -1;
    seq = seq * 10 + digit;
  }
  return Number.isSafeInteger(seq) ? seq : -1;
}

/**
 * Protocol v1 over one connection: the `hello` handshake, then dispatch of `ack`, `pub`,
 * `ping` and `bye` to the session actor. Knows nothing of uWS: the transport hands it
 * decoded bytes and a Connection.
 */
export class RealtimeHandler {
  readonly #deps: RealtimeHandlerDeps;
  /**
   * Connections not attached to a session yet, with their hello deadline. Insertion
   * order is deadline order (one timeout for all), so one timer serves them all instead
   * of a timer per connection; attached connections leave, so the many idle ones cost
   * no entry here.
   */
  readonly #unattached = new Map<Connection, number>();
  #helloTimer: NodeJS.Timeout | undefined;

  constructor(deps: RealtimeHandlerDeps) {
    this.#deps = deps;
  }

  opened(conn: Connection): void {
    this.#deps.metrics.connectionsOf(conn.codec.name).inc();
    this.#unattached.set(conn, performance.now() + this.#deps.helloTimeoutMs);
    if (this.#helloTimer === undefined) this.#helloTimer = this.#armHelloTimer(this.#deps.helloTimeoutMs);
  }

  /** Closes every connection still saying hello (awaiting it, or being checked). */
  closeUnattached(code: number, reason: string): void {
    // closing deletes the entry (closed()); deleting while iterating a Map is safe
    for (const conn of this.#unattached.keys()) conn.close(code, reason);
  }

  #armHelloTimer(ms: number): NodeJS.Timeout {
    const timer = setTimeout(() => this.#expireHellos(), Math.max(1, ms));
    timer.unref();
    return timer;
  }

  /**
   * Closes, with 4001, the connections whose hello deadline passed before a hello came.
   * Those already checking their hello keep their entry (closeUnattached still needs it)
   * and are passed over.
   */
  #expireHellos(): void {
    this.#helloTimer = undefined;
    const now = performance.now();
    for (const [conn, deadline] of this.#unattached) {
      if (conn.state !== 'awaiting_hello') continue;
      if (deadline > now) {
        this.#helloTimer = this.#armHelloTimer(deadline - now);
        return;
      }
      this.#violation(conn, CloseCodes.unauthorized, 'no hello in time');
    }
  }

  /**
   * One frame's raw bytes from the socket, valid only during this call; `isBinary` says
   * which kind of frame it came as (the subprotocol fixes which one is right).
   */
  message(conn: Connection, data: ArrayBuffer, isBinary = conn.codec.binary): void {
    if (conn.state === 'closed') return;
    if (isBinary !== conn.codec.binary) {
      // lifeos.v1.json is text frames, lifeos.v1.msgpack binary ones (PROTOCOL.md §3)
      return this.#violation(
        conn,
        CloseCodes.bad_request,
        `${conn.codec.subprotocol} takes ${conn.codec.binary ? 'binary' : 'text'} frames`,
      );
    }
    // The most frequent frame, in the form every client writes it: no decode, no schema.
    if (conn.state === 'live' && !conn.codec.binary) {
      const seq = canonicalAckSeq(data);
      if (seq >= 0) {
        conn.actor?.ack(conn, seq);
        return;
      }
    }
    let decoded: unknown;
    try {
      decoded = conn.codec.decode(data);
    } catch {
      return this.#violation(conn, CloseCodes.bad_request, `malformed ${conn.codec.name} frame`);
    }
    this.#dispatch(conn, decoded);
  }

  closed(conn: Connection): void {
    this.#deps.metrics.connectionsOf(conn.codec.name).dec();
    this.#unattached.delete(conn);
    conn.state = 'closed';
    conn.clearTimers();
    // Also after closes the gateway started itself (state already 'closed'): detach is
    // idempotent, and it is what writes the last acks and starts the resume window.
    conn.actor?.detach(conn);
  }

  drained(conn: Connection): void {
    if (conn.live) conn.actor?.drained(conn);
  }

  #dispatch(conn: Connection, decoded: unknown): void {
    if (conn.state === 'authenticating') {
      const early = (conn.earlyFrames ??= []);
      if (early.length >= MAX_EARLY_FRAMES) {
        return this.#violation(conn, CloseCodes.bad_request, 'too many frames before welcome');
      }
      early.push(decoded);
      return;
    }
    const parsed = parseClientFrame(decoded);
    if (!parsed.ok) return this.#violation(conn, CloseCodes.bad_request, parsed.message);
    const frame = parsed.frame;
    if (conn.state === 'awaiting_hello') {
      if (frame.op !== 'hello')
        return this.#violation(conn, CloseCodes.bad_request, 'the first frame must be hello');
      // its strings name keys and records (see util/well-formed.ts)
      if (!isPlainJson(decoded))
        return this.#violation(conn, CloseCodes.bad_request, 'hello holds a lone surrogate: not Unicode');
      conn.state = 'authenticating';
      void this.#hello(conn, frame);
      return;
    }
    this.#live(conn, frame);
  }

  #live(conn: Connection, frame: ClientFrame): void {
    const actor = conn.actor;
    if (!actor || !conn.live) return;
    switch (frame.op) {
      case 'ack':
        return actor.ack(conn, frame.seq);
      case 'pub':
        return this.#publish(conn, frame);
      case 'ping':
        return conn.sendFrame(frame.n === undefined ? { op: 'pong' } : { op: 'pong', n: frame.n });
      case 'bye':
        void actor.bye(conn);
        return;
      case 'hello':
        return this.#violation(conn, CloseCodes.bad_request, 'hello was already processed');
    }
  }

  async #hello(conn: Connection, hello: HelloFrame): Promise<void> {
    const { registry } = this.#deps;
    try {
      // The actor is looked up only after the awaits: one that went idle meanwhile must not
      // be the one this connection attaches to. Attaching queues synchronously in its
      // mailbox, which keeps it from being evicted from then on.
      if (hello.resume) {
        // The token is signed and bound to session, user and tenant, so the session record
        // is not needed: the engine's subscriber decides (4010), and a stream that lost its
        // history answers with its new epoch (4011) even where the record was lost with it.
        const claims = this.#deps.resumeTokens.verify(hello.resume.token);
        if (!claims || claims.sessionId !== hello.sessionId) throw new GatewayError('resume_expired');
        await registry
          .get(hello.sessionId)
          .attachResume(conn, claims, hello.resume.lastSeq, hello.resume.epoch);
      } else {
        if (hello.token === undefined) throw new GatewayError('unauthorized', 'hello needs a token');
        const principal = await this.#deps.jwt.verify(hello.token);
        // Tenant and owner never change, so a session's live actor keeps them from a read:
        // a crowd of hellos to one session costs the engine a read or two, not one each.
        const live = registry.peek(hello.sessionId);
        const readUnder = live?.epoch ?? '';
        const access = assertCanRead(principal, live?.access ?? (await this.#session(hello.sessionId)));
        const actor = registry.get(hello.sessionId);
        if (actor === live) actor.keepAccess(access, readUnder);
        await actor.attachFresh(conn, principal, hello.after ?? 'latest');
      }
    } catch (err) {
      const error = toGatewayError(err);
      if (error.code === 'internal')
        this.#deps.logger.error({ err, sessionId: hello.sessionId }, 'hello failed');
      if (hello.resume) this.#deps.metrics.resumes.inc({ outcome: error.code });
      return this.#violation(conn, closeCodeFor(error.code), error.code);
    }
    this.#unattached.delete(conn);
    const early = conn.earlyFrames;
    if (!early) return;
    conn.earlyFrames = undefined;
    for (const frame of early) {
      if (conn.state === 'closed') break;
      this.#dispatch(conn, frame);
    }
  }

  async #session(sessionId: string, tenantId?: string) {
    const session = await this.#deps.engine.getSession(sessionId);
    if (!session || (tenantId !== undefined && session.tenantId !== tenantId)) {
      throw new GatewayError('session_not_found');
    }
    return session;
  }

  #publish(conn: Connection, frame: PubFrame): void {
    const { clock, maxInFlight } = this.#deps;
    if (conn.pendingPubs >= maxInFlight) {
      return this.#nack(conn, frame.id, new GatewayError('rate_limited', 'too many unanswered publishes'));
    }
    let event;
    try {
      event = eventFromPub(frame, conn.sessionId, conn.role!, clock.now());
    } catch (err) {
      return this.#nack(conn, frame.id, toGatewayError(err));
    }
    conn.pendingPubs++;
    // The actor answers on the connection (puback or nack) and decrements pendingPubs.
    conn.actor!.publishFrom(conn, event);
  }

  #nack(conn: Connection, id: string, error: GatewayError): void {
    conn.sendFrame({ op: 'nack', id, code: error.code, message: error.message, retryable: error.retryable });
  }

  #violation(conn: Connection, code: number, reason: string): void {
    this.#deps.metrics.closes.inc({ code: String(code) });
    conn.close(code, reason.slice(0, 120));
  }
}
