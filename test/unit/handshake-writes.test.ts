/**
 * The handshake's server writes (issue 6, handshakes per server CPU-second): `welcome`
 * and what the first pump sends after it (`replayed`, and the events of a catch-up from
 * the cache) leave in one corked write, i.e. one syscall, on fresh and resumed hellos.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { JwtVerifier, Principal } from '../../src/auth/jwt.ts';
import { ResumeTokens } from '../../src/auth/resume-token.ts';
import { jsonCodec } from '../../src/codec/json-codec.ts';
import { MemoryEngine } from '../../src/engine/memory/memory-engine.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { ActorRegistry } from '../../src/session/actor-registry.ts';
import { Connection } from '../../src/session/connection.ts';
import { RealtimeHandler } from '../../src/session/realtime-handler.ts';
import type { Sink } from '../../src/session/sink.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { makeEvent } from '../engine/contract.ts';

const SESSION = 'ses_writes';
const TENANT = 'ten_writes';
const TOKEN = 'agent-token';

const jwt = {
  verify: (token: string): Promise<Principal> =>
    token === TOKEN
      ? Promise.resolve({ userId: 'agt', tenantId: TENANT, role: 'agent', expiresAt: 4_102_444_800 })
      : Promise.reject(new Error('bad token')),
} as unknown as JwtVerifier;

/** Records the frames of each write: a corked write is one group, an uncorked send its own. */
class WriteLog implements Sink {
  readonly writes: string[][] = [];
  readonly frames: Record<string, unknown>[] = [];
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

  close(): void {}
}

async function setup() {
  const clock = new ManualClock();
  const engine = new MemoryEngine(clock, { historyMaxEvents: 1000, historyTtlAfterEndS: 60 });
  await engine.createSession({ id: SESSION, tenantId: TENANT, ownerId: 'usr', createdAt: 'now' });
  const metrics = new Metrics();
  const resumeTokens = new ResumeTokens('handshake-writes-secret');
  const registry = new ActorRegistry({
    engine,
    clock,
    metrics,
    logger: silentLogger(),
    issueResumeToken: (claims) => resumeTokens.issue(claims),
    limits: {
      maxInFlight: 64,
      backpressureBytes: 1 << 20,
      slowConsumerMs: 500,
      replayBatch: 64,
      queueMax: 1000,
      cacheEvents: 64,
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
    helloTimeoutMs: 10_000,
    maxInFlight: 64,
  });
  let n = 0;
  const hello = async (frame: object) => {
    const sink = new WriteLog();
    const conn = new Connection(`conn_${++n}`, jsonCodec, sink);
    handler.opened(conn);
    handler.message(conn, new TextEncoder().encode(JSON.stringify(frame)).buffer);
    for (let i = 0; i < 50 && !sink.writes.some((w) => w.includes('replayed')); i++)
      await new Promise((resolve) => setImmediate(resolve));
    return { conn, sink, handler };
  };
  return { engine, hello };
}

describe('handshake writes', () => {
  it('a fresh hello gets welcome and replayed in one write', async () => {
    const { hello } = await setup();
    const { sink } = await hello({ op: 'hello', sessionId: SESSION, token: TOKEN });
    assert.deepEqual(sink.writes, [['welcome', 'replayed']]);
  });

  it('a hello from seq 0 gets welcome, the cached events and replayed in one write', async () => {
    const { engine, hello } = await setup();
    // an actor with these events in its cache: a first subscriber saw them arrive
    const first = await hello({ op: 'hello', sessionId: SESSION, token: TOKEN });
    await engine.append(SESSION, [makeEvent(SESSION, 'e1'), makeEvent(SESSION, 'e2')]);
    for (let i = 0; i < 50 && first.sink.writes.flat().filter((op) => op === 'ev').length < 2; i++)
      await new Promise((resolve) => setImmediate(resolve));
    const { sink } = await hello({ op: 'hello', sessionId: SESSION, token: TOKEN, after: 0 });
    assert.deepEqual(sink.writes, [['welcome', 'ev', 'ev', 'replayed']]);
  });

  it('a resume gets welcome and replayed in one write', async () => {
    const { hello } = await setup();
    const first = await hello({ op: 'hello', sessionId: SESSION, token: TOKEN });
    first.conn.close(4100, 'test'); // the socket goes away
    first.handler.closed(first.conn);
    const welcome = first.sink.writes[0]!;
    assert.equal(welcome[0], 'welcome');
    const { sink } = await hello({
      op: 'hello',
      sessionId: SESSION,
      resume: { token: first.sink.frames[0]!['resumeToken'], lastSeq: 0 },
    });
    assert.deepEqual(sink.writes, [['welcome', 'replayed']]);
  });
});
