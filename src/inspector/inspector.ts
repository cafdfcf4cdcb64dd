import type { Principal } from '../auth/jwt.ts';
import type { CallService } from '../calls/call-service.ts';
import type { Engine, SessionPosition, SessionRecord, SubscriberRecord } from '../engine/engine.ts';
import { GatewayError } from '../errors/gateway-error.ts';
import type { ActorRegistry } from '../session/actor-registry.ts';
import type { LiveConnectionView } from '../session/session-actor.ts';
import type { Clock } from '../util/clock.ts';

/** Most subscribers one session view lists (the rest: `truncated`). */
export const INSPECT_SUBSCRIBERS_MAX = 500;

/** A subscriber's connection as far as the engine, and this node, know it. */
export const ConnectionStates = ['connected', 'disconnected'] as const;
export type ConnectionState = (typeof ConnectionStates)[number];

/**
 * One subscriber of a session. Positions are seqs of the session's stream:
 * - `ackedSeq`: the highest seq the client acknowledged. The engine's checkpoint, or the
 *   live connection's newer ack when that connection is on the node that answered (a
 *   checkpoint write trails an ack by a round trip).
 * - `ackLag`: `headSeq − ackedSeq`, never below 0.
 * - `deliveredSeq`, `inFlight`: only for a connection on the node that answered
 *   (`local`); null otherwise, since only the node holding a connection knows them.
 * - `node`, `since`: the node that holds (or, once disconnected, last held) the
 *   connection and when it attached; the time of the disconnect once disconnected.
 *   null when the subscriber was created without a node (an older gateway).
 */
export interface SubscriberView {
  subscriberId: string;
  userId: string;
  generation: number;
  state: ConnectionState;
  since: number | null;
  node: string | null;
  local: boolean;
  ackedSeq: number;
  ackLag: number;
  deliveredSeq: number | null;
  inFlight: number | null;
  /** The live connection's id (the `connectionId` of its welcome), for a local one; else null. */
  connectionId: string | null;
  /** While disconnected: until when its resume token still works (ms since the epoch). */
  resumableUntil: number | null;
}

export interface SessionView {
  session: SessionRecord;
  headSeq: number;
  epoch: string;
  /** Set once the stream ended: the seq of its last event. */
  endedAt: number | null;
  /**
   * The head as the answering node's session actor knows it, or null when that node holds
   * no actor for the session (or the actor has not read the stream yet). It trails
   * `headSeq` while another node's append is on its way here (a notice, then a read);
   * staying behind means the node missed changes, and its connections wait for events it
   * does not know of.
   */
  nodeHeadSeq: number | null;
  /** The node that answered, and when (ms since the epoch). */
  node: string;
  at: number;
  subscribers: SubscriberView[];
  /** More subscribers exist than are listed. */
  truncated: boolean;
}

export interface SessionSummary {
  id: string;
  state: SessionRecord['state'];
  ownerId: string;
  createdAt: string;
  headSeq: number;
}

export interface InspectorDeps {
  engine: Engine;
  calls: CallService;
  registry: ActorRegistry;
  clock: Clock;
  nodeId: string;
  resumeWindowMs: number;
}

/**
 * What the session inspector shows (docs/inspector.md): a session's stream position and
 * its subscribers, read from the engine (shared by every node) and completed with what
 * this node knows of the connections it holds.
 *
 * Access: operators only (`forbidden` for any other role), and only their own tenant's
 * sessions (another tenant's is `session_not_found`, as everywhere).
 */
export class Inspector {
  readonly #deps: InspectorDeps;

  constructor(deps: InspectorDeps) {
    this.#deps = deps;
  }

  /** The tenant's sessions, newest first, with their stream heads. */
  async listSessions(
    principal: Principal,
    query: { limit: number; after?: SessionPosition },
  ): Promise<{ sessions: SessionSummary[]; next?: SessionPosition }> {
    assertOperator(principal);
    const page = await this.#deps.calls.list(principal, query);
    const sessions = await Promise.all(
      page.sessions.map(async (s) => ({
        id: s.id,
        state: s.state,
        ownerId: s.ownerId,
        createdAt: s.createdAt,
        headSeq: (await this.#deps.engine.head(s.id)).headSeq,
      })),
    );
    return page.next ? { sessions, next: page.next } : { sessions };
  }

  async session(principal: Principal, sessionId: string): Promise<SessionView> {
    assertOperator(principal);
    const { engine, registry, clock, nodeId } = this.#deps;
    // Checked before anything else is read: no engine call for a session the caller may not see.
    const session = await this.#deps.calls.get(principal, sessionId);
    const [head, list] = await Promise.all([
      engine.head(sessionId),
      engine.listSubscribers(sessionId, INSPECT_SUBSCRIBERS_MAX),
    ]);
    const actor = registry.peek(sessionId);
    const local = new Map<string, LiveConnectionView>();
    for (const conn of actor?.liveConnections() ?? []) local.set(conn.subscriberId, conn);
    const subscribers = list.subscribers
      .map((record) => this.#subscriber(record, head.headSeq, local.get(record.id)))
      .sort(bySubscriberOrder);
    return {
      session,
      headSeq: head.headSeq,
      epoch: head.epoch,
      endedAt: head.endedAt ?? null,
      nodeHeadSeq: actor && actor.epoch !== '' ? actor.headSeq : null,
      node: nodeId,
      at: clock.now(),
      subscribers,
      truncated: list.truncated,
    };
  }

  #subscriber(
    record: SubscriberRecord,
    headSeq: number,
    conn: LiveConnectionView | undefined,
  ): SubscriberView {
    // A local connection of an older generation is on its way out (superseded): not this one.
    const live = conn !== undefined && conn.generation === record.generation ? conn : undefined;
    const ackedSeq = Math.max(record.checkpoint, live?.ackedSeq ?? 0);
    const connected = record.connected;
    return {
      subscriberId: record.id,
      userId: record.userId,
      generation: record.generation,
      state: connected ? 'connected' : 'disconnected',
      since: connected ? (record.connectedAt ?? null) : record.disconnectedAt,
      node: record.node ?? null,
      local: live !== undefined,
      ackedSeq,
      ackLag: Math.max(0, headSeq - ackedSeq),
      deliveredSeq: live ? live.sentSeq : null,
      inFlight: live ? live.sentSeq - live.ackedSeq : null,
      connectionId: live ? live.connectionId : null,
      resumableUntil: connected ? null : record.disconnectedAt + this.#deps.resumeWindowMs,
    };
  }
}

function assertOperator(principal: Principal): void {
  if (principal.role !== 'operator')
    throw new GatewayError('forbidden', 'the inspector needs an operator token');
}

/** Connected first, then the most recently changed, then by id: a stable table. */
function bySubscriberOrder(a: SubscriberView, b: SubscriberView): number {
  if (a.state !== b.state) return a.state === 'connected' ? -1 : 1;
  if ((b.since ?? 0) !== (a.since ?? 0)) return (b.since ?? 0) - (a.since ?? 0);
  return a.subscriberId < b.subscriberId ? -1 : a.subscriberId > b.subscriberId ? 1 : 0;
}
