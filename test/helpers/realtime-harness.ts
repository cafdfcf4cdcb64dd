/**
 * The realtime path in process, without sockets: a RealtimeHandler, its ActorRegistry and
 * an engine (a MemoryEngine, or a subclass the test passes to watch or slow it), with
 * connections whose sink records every frame and groups them by write (a corked write is
 * one group). For unit tests of what the session layer sends and asks the engine.
 */
import type { JwtVerifier, Principal } from '../../src/auth/jwt.ts';
import { ResumeTokens } from '../../src/auth/resume-token.ts';
import { jsonCodec } from '../../src/codec/json-codec.ts';
import { MemoryEngine } from '../../src/engine/memory/memory-engine.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import type { WarnSink } from '../../src/observability/log-throttle.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { ActorRegistry } from '../../src/session/actor-registry.ts';
import { CacheBudget } from '../../src/session/cache-budget.ts';
import { Connection } from '../../src/session/connection.ts';
import { RealtimeHandler } from '../../src/session/realtime-handler.ts';
import type { Sink } from '../../src/session/sink.ts';
import { ManualClock } from '../../src/util/clock.ts';

export const SESSION = 'ses_harness';
export const TENANT = 'ten_harness';
/** The one token the harness's JWT stand-in accepts: an agent of TENANT. */
export const TOKEN = 'agent-token';
export const MAX_IN_FLIGHT = 64;

const jwt = {
  verify: (token: string): Promise<Principal> =>
    token === TOKEN
      ? Promise.resolve({ userId: 'agt', tenantId: TENANT, role: 'agent', expiresAt: 4_102_444_800 })
      : Promise.reject(new Error('bad token')),
} as unknown as JwtVerifier;

/** Records the frames of each write: a corked write is one group, an uncorked send its own. */
export class WriteLog implements Sink {
  readonly writes: string[][] = [];
  readonly frames: Record<string, unknown>[] = [];
  /** The close code the gateway closed this sink with, and when (performance.now()). */
  closedWith: { code: number; at: number } | undefined;
  /** Called on close, as uWS calls the close handler. */
  onClose: (() => void) | undefined;
  #corked: string[] | undefined;

  send(bytes: Uint8Array): boolean {
    const frame = jsonCodec.decode(bytes) as { op: string };
    this.frames.push(frame);
    const op = frame.op;
    if (this.#corked) this.#corked.push(op);
    else this.writes.push([op]);
    return true;
  }

  bufferedAmount(): number {
    return 0;
  }

  cork(fn: () => void): void {
    if (this.#corked) return fn(); // nested: part of the outer write, as in uWS
    this.#corked = [];
    try {
      fn();
    } finally {
      if (this.#corked.length > 0) this.writes.push(this.#corked);
      this.#corked = undefined;
    }
  }

  close(code: number): void {
    if (this.closedWith) return;
    this.closedWith = { code, at: performance.now() };
    this.onClose?.();
  }
}

export const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Waits up to 50 event-loop turns for `done`. */
export async function turnsUntil(done: () => boolean): Promise<void> {
  for (let i = 0; i < 50 && !done(); i++) await nextTurn();
}

export async function realtimeHarness<E extends MemoryEngine = MemoryEngine>(
  makeEngine?: (clock: ManualClock) => E,
  opts: {
    helloTimeoutMs?: number;
    cacheBudgetBytes?: number;
    warnings?: WarnSink;
    cacheEvents?: number;
  } = {},
) {
  const clock = new ManualClock();
  const limits = { historyMaxEvents: 1000, historyTtlAfterEndS: 60 };
  const engine = makeEngine ? makeEngine(clock) : (new MemoryEngine(clock, limits) as E);
  await engine.createSession({ id: SESSION, tenantId: TENANT, ownerId: 'usr', createdAt: 'now' });
  const metrics = new Metrics();
  const resumeTokens = new ResumeTokens('realtime-harness-secret');
  const registry = new ActorRegistry({
    engine,
    clock,
    metrics,
    logger: silentLogger(),
    issueResumeToken: (claims) => resumeTokens.issue(claims),
    ...(opts.cacheBudgetBytes !== undefined ? { cacheBudget: new CacheBudget(opts.cacheBudgetBytes) } : {}),
    ...(opts.warnings ? { warnings: opts.warnings } : {}),
    limits: {
      maxInFlight: MAX_IN_FLIGHT,
      backpressureBytes: 1 << 20,
      slowConsumerMs: 500,
      replayBatch: 64,
      queueMax: 1000,
      cacheEvents: opts.cacheEvents ?? 64,
      resumeWindowMs: 60_000,
      heartbeatMs: 15_000,
      idleMs: 60_000,
    },
  });
  const handler = new RealtimeHandler({
    registry,
    engine,
    jwt,
    resumeTokens,
    clock,
    metrics,
    logger: silentLogger(),
    helloTimeoutMs: opts.helloTimeoutMs ?? 10_000,
    maxInFlight: MAX_IN_FLIGHT,
  });
  const send = (conn: Connection, frame: object): void =>
    handler.message(conn, new TextEncoder().encode(JSON.stringify(frame)).buffer);
  let n = 0;
  /** Opens a connection as the transport does: its sink's close reports back to the handler. */
  const open = () => {
    const sink = new WriteLog();
    const conn = new Connection(++n, jsonCodec, sink);
    sink.onClose = () => handler.closed(conn);
    handler.opened(conn);
    return { conn, sink };
  };
  /** Opens a connection, sends `frame` as its hello, and waits for its `replayed`. */
  const hello = async (frame: object) => {
    const { conn, sink } = open();
    send(conn, frame);
    await turnsUntil(() => sink.writes.some((w) => w.includes('replayed')));
    return { conn, sink, handler };
  };
  return { engine, registry, handler, metrics, open, hello, send };
}

/** A fresh hello of the harness's agent. */
export const freshHello = (extra: object = {}) => ({
  op: 'hello',
  sessionId: SESSION,
  token: TOKEN,
  ...extra,
});
