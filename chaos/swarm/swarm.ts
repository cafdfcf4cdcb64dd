import { httpJson } from '../toolkit/http.ts';
import type { SwarmContext } from './context.ts';
import { Publisher } from './publisher.ts';
import type { Rng } from './rng.ts';
import { Subscriber } from './subscriber.ts';

/**
 * The client swarm of a run: `sessions` call sessions, each with durable subscribers and
 * publishers spread over every gateway node. A run has three phases — start (every
 * subscriber welcomed before the first publish, so each one is owed every event), load
 * (publishers publish while the scenario injects faults), and finish (publishers settle,
 * subscribers drain to the stored head, the stored streams are read back as the truth).
 */
export interface SwarmShape {
  sessions: number;
  subscribersPerSession: number;
  publishersPerSession: number;
  /** Share of subscribers that connect through the slow lane (when there is one). */
  slowShare: number;
}

export interface FinishReport {
  /** Publishers whose every publish was answered. */
  settled: number;
  unsettled: string[];
  /** Subscribers that reached the stored head. */
  drained: number;
  behind: string[];
  fatal: string[];
  /**
   * For each subscriber behind at the deadline: its client state and connections, then
   * each node's inspector view of it (see #whyBehind). Lines, for the summary.
   */
  stuck: string[];
}

export class Swarm {
  readonly sessions: string[];
  readonly subscribers: Subscriber[] = [];
  readonly publishers: Publisher[] = [];
  readonly #ctx: SwarmContext;

  private constructor(ctx: SwarmContext, sessions: string[], shape: SwarmShape, rng: Rng) {
    this.#ctx = ctx;
    this.sessions = sessions;
    let n = 0;
    sessions.forEach((session, s) => {
      for (let i = 0; i < shape.subscribersPerSession; i++) {
        // Every 1/slowShare-th subscriber reads slowly, spread evenly over the sessions.
        const slow =
          ctx.slowTargets.urls.length > 0 &&
          shape.slowShare > 0 &&
          n++ % Math.round(1 / shape.slowShare) === 0;
        const name = `s${s}.sub${i}${slow ? '.slow' : ''}`;
        this.subscribers.push(new Subscriber(name, session, ctx, rng.fork(name), slow));
      }
      for (let i = 0; i < shape.publishersPerSession; i++) {
        const name = `s${s}.pub${i}`;
        this.publishers.push(new Publisher(name, session, ctx, rng.fork(name)));
      }
    });
  }

  /** Creates the call sessions (as their owner) and the clients; connects nothing yet. */
  static async create(ctx: SwarmContext, ownerToken: string, shape: SwarmShape, rng: Rng): Promise<Swarm> {
    const sessions: string[] = [];
    for (let i = 0; i < shape.sessions; i++) {
      const res = await anyNode(ctx, (base) =>
        httpJson(base, 'POST', '/v1/call/sessions', {
          token: ownerToken,
          body: {},
          headers: { 'idempotency-key': `chaos-${rng.seed}-${i}` },
        }),
      );
      if (res.status !== 201 && res.status !== 200)
        throw new Error(`creating a session: HTTP ${res.status} ${JSON.stringify(res.body)}`);
      sessions.push(String((res.body as { id: string }).id));
    }
    return new Swarm(ctx, sessions, shape, rng);
  }

  /** Connects every subscriber, waits until all are welcomed, then starts the publishers. */
  async start(timeoutMs = 20_000): Promise<void> {
    for (const sub of this.subscribers) sub.start();
    const deadline = Date.now() + timeoutMs;
    while (!this.subscribers.every((s) => s.live)) {
      const fatal = this.subscribers.find((s) => s.fatal);
      if (fatal) throw new Error(`${fatal.name} could not subscribe: ${fatal.fatal ?? ''}`);
      if (Date.now() > deadline) throw new Error('subscribers did not all connect in time');
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const pub of this.publishers) pub.start();
  }

  /**
   * Stops publishing, waits for every publish to be answered, reads each session's head,
   * lets every subscriber drain to it, and records the stored streams.
   */
  async finish(timeoutMs = 60_000): Promise<FinishReport> {
    const deadline = Date.now() + timeoutMs;
    for (const pub of this.publishers) pub.stopPublishing();
    const settledFlags = await Promise.all(this.publishers.map((p) => p.settle(deadline)));
    for (const pub of this.publishers) pub.stop();

    const heads = new Map<string, { epoch: string; headSeq: number }>();
    for (const session of this.sessions) heads.set(session, await this.#head(session));
    const stuck: string[] = [];
    const drainedFlags = await Promise.all(
      this.subscribers.map((sub) => {
        const head = heads.get(sub.session)!;
        return sub.drain(head.epoch, head.headSeq, deadline, async () => {
          stuck.push(...(await this.#whyBehind(sub, head.headSeq)));
        });
      }),
    );
    for (const session of this.sessions) await this.#recordStream(session);
    return {
      settled: settledFlags.filter(Boolean).length,
      unsettled: this.publishers
        .filter((_, i) => !settledFlags[i])
        .map((p) => `${p.name}${p.fatal ? ` (${p.fatal})` : ` (${p.outstanding} outstanding)`}`),
      drained: drainedFlags.filter(Boolean).length,
      behind: this.subscribers.filter((_, i) => !drainedFlags[i]).map((s) => `${s.name} at ${s.watermark}`),
      fatal: [...this.subscribers, ...this.publishers]
        .filter((c) => c.fatal)
        .map((c) => `${c.name}: ${c.fatal ?? ''}`),
      stuck,
    };
  }

  /**
   * Why a subscriber did not drain, as far as can be seen from outside: the client's own
   * state and connections, then what each node's inspector says of the session (the head
   * its actor knows) and of this subscriber (generation, the node holding it, and on that
   * node the connection and how far it delivered). A welcomed connection that the node
   * does not list is one the gateway no longer serves.
   */
  async #whyBehind(sub: Subscriber, headSeq: number): Promise<string[]> {
    const lines = [`stuck ${sub.name} (${sub.session}, stored head ${headSeq}):`, ...sub.describe()];
    const token = this.#ctx.operatorToken;
    if (!token) return lines;
    for (const base of this.#ctx.targets.urls) {
      try {
        const res = await httpJson(base, 'GET', `/v1/inspector/sessions/${sub.session}`, {
          token,
          timeoutMs: 2000,
        });
        if (res.status !== 200) {
          lines.push(`  inspector ${base}: HTTP ${res.status}`);
          continue;
        }
        const view = res.body as InspectorView;
        const mine = view.subscribers.find((s) => s.subscriberId === sub.subscriberId);
        lines.push(
          `  inspector ${base} (${view.node}): head ${view.headSeq}, this node's actor at ${view.nodeHeadSeq ?? 'none'}; ` +
            (mine
              ? `subscriber gen ${mine.generation} ${mine.state} on ${mine.node ?? '?'}, acked ${mine.ackedSeq}` +
                (mine.local
                  ? `, here as ${mine.connectionId ?? '?'} delivered ${mine.deliveredSeq ?? '?'}`
                  : '')
              : 'subscriber not listed'),
        );
      } catch (err) {
        lines.push(`  inspector ${base}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    return lines;
  }

  /** Stops every client at once (an aborted run). */
  stop(): void {
    for (const pub of this.publishers) pub.stop();
    for (const sub of this.subscribers) sub.stop();
  }

  async #head(session: string): Promise<{ epoch: string; headSeq: number }> {
    const page = await this.#page(session, 0, 1);
    return { epoch: page.epoch, headSeq: page.headSeq };
  }

  /** Pages through `GET …/events` from 0 and records what is stored. */
  async #recordStream(session: string): Promise<void> {
    const eventIds: string[] = [];
    let firstSeq = 0;
    let after = 0;
    let page = await this.#page(session, after, 1000);
    const epoch = page.epoch;
    for (;;) {
      for (const { seq, event } of page.events) {
        if (firstSeq === 0) firstSeq = seq;
        eventIds[seq - firstSeq] = event.eventId;
        after = seq;
      }
      if (page.events.length === 0 || after >= page.headSeq) break;
      page = await this.#page(session, after, 1000);
      if (page.epoch !== epoch)
        throw new Error(`${session}: the epoch changed while reading the final stream`);
    }
    this.#ctx.recorder.record({
      op: 'final_stream',
      session,
      client: 'harness',
      epoch,
      headSeq: page.headSeq,
      firstSeq: firstSeq || 1,
      eventIds,
    });
  }

  async #page(session: string, after: number, limit: number): Promise<EventsPage> {
    const res = await anyNode(this.#ctx, (base) =>
      httpJson(base, 'GET', `/v1/call/sessions/${session}/events?after=${after}&limit=${limit}`, {
        token: this.#ctx.subscriberToken,
      }),
    );
    if (res.status !== 200)
      throw new Error(`reading ${session}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
    return res.body as EventsPage;
  }
}

/** What #whyBehind reads of GET /v1/inspector/sessions/:id (src/inspector/inspector.ts). */
interface InspectorView {
  node: string;
  headSeq: number;
  nodeHeadSeq: number | null;
  subscribers: Array<{
    subscriberId: string;
    generation: number;
    state: string;
    node: string | null;
    local: boolean;
    ackedSeq: number;
    deliveredSeq: number | null;
    connectionId: string | null;
  }>;
}

interface EventsPage {
  events: Array<{ seq: number; event: { eventId: string } }>;
  headSeq: number;
  epoch: string;
}

/**
 * Runs an HTTP call against the nodes in turn until one answers with something other
 * than a network error or a 5xx (a node may be dead, frozen or draining right now).
 */
async function anyNode(
  ctx: SwarmContext,
  call: (base: string) => Promise<{ status: number; body: unknown }>,
  timeoutMs = 30_000,
): Promise<{ status: number; body: unknown }> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (let round = 0; Date.now() < deadline; round++) {
    for (const base of ctx.targets.urls) {
      try {
        const res = await call(base);
        if (res.status < 500) return res;
        last = `HTTP ${res.status} ${JSON.stringify(res.body)}`;
      } catch (err) {
        last = err;
      }
    }
    await new Promise((r) => setTimeout(r, Math.min(1000, 50 * 2 ** round)));
  }
  throw new Error(`no gateway node answered: ${String(last)}`);
}
