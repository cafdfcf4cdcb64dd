/**
 * Shared helpers for the protocol conformance tests (test/protocol/*.test.ts). Not a test
 * file itself: the runner only collects `*.test.ts`.
 *
 * Everything here observes `TestClient.frames` without consuming it, so several waits
 * may run at once on one client (concurrent publishes) and a test can always look back
 * at every frame a connection received.
 */
import assert from 'node:assert/strict';
import { SignJWT } from 'jose';
import WebSocket from 'ws';
import type { TestGateway } from '../helpers/gateway.ts';
import { TestClient, type Frame, type Sub } from '../helpers/ws-client.ts';

export type { Frame, Sub };

/** Both subprotocols; frame-level suites are generated once per entry. */
export const SUBPROTOCOLS: readonly Sub[] = ['json', 'msgpack'];

/** Everything a test opened, closed again by `closeAll` (call it from `afterEach`). */
const opened = new Set<TestClient>();

export function track(client: TestClient): TestClient {
  opened.add(client);
  return client;
}

export async function closeAll(): Promise<void> {
  const clients = [...opened];
  opened.clear();
  await Promise.all(
    clients.map(async (c) => {
      if (c.closeInfo) return;
      try {
        (c.ws as unknown as { _socket?: { resume(): void } })._socket?.resume();
        c.ws.terminate();
      } catch {
        /* already gone */
      }
      await Promise.race([c.closed, sleep(500)]);
    }),
  );
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Opens a socket (tracked, so `closeAll` ends it). */
export async function connect(gw: TestGateway, sub: Sub): Promise<TestClient> {
  return track(await TestClient.connect(gw.wsUrl, sub));
}

/** Connects and sends `hello`; resolves with the client and its `welcome` (non-consuming). */
export async function hello(
  gw: TestGateway,
  sub: Sub,
  fields: Frame,
): Promise<{ client: TestClient; welcome: Frame }> {
  const client = await connect(gw, sub);
  client.send({ op: 'hello', ...fields });
  const welcome = await waitFor(client, (f) => f.op === 'welcome');
  return { client, welcome };
}

/** Connects, sends `hello`, and resolves with the close code (the hello must fail). */
export async function helloRefused(gw: TestGateway, sub: Sub, fields: Frame): Promise<number> {
  const client = await connect(gw, sub);
  client.send({ op: 'hello', ...fields });
  const code = await client.closeCode();
  assert.equal(
    client.frames.find((f) => f.op === 'welcome'),
    undefined,
    'a refused hello must not be welcomed',
  );
  return code;
}

// ── waiting on frames without consuming them ─────────────────────────────────────

const wakers = new WeakMap<TestClient, Set<() => void>>();

function onActivity(client: TestClient, wake: () => void): () => void {
  let set = wakers.get(client);
  if (!set) {
    const fresh = new Set<() => void>();
    wakers.set(client, fresh);
    const fire = (): void => {
      for (const w of [...fresh]) w();
    };
    // TestClient registered its own listeners first, so the frame is already recorded.
    client.ws.on('message', fire);
    client.ws.on('close', fire);
    set = fresh;
  }
  set.add(wake);
  return () => set.delete(wake);
}

/**
 * Resolves with the first frame (from index `from`) matching `pred`, waiting for it if
 * needed. Rejects on timeout, or when the socket closed without such a frame.
 */
export function waitFor(
  client: TestClient,
  pred: (f: Frame) => boolean,
  timeoutMs = 5000,
  from = 0,
): Promise<Frame> {
  return new Promise((resolve, reject) => {
    let done = false;
    let off: () => void = () => undefined;
    const check = (): void => {
      if (done) return;
      for (let i = from; i < client.frames.length; i++) {
        if (pred(client.frames[i]!)) {
          finish();
          resolve(client.frames[i]!);
          return;
        }
      }
      if (client.closeInfo) {
        finish();
        reject(
          new Error(
            `closed ${client.closeInfo.code} ${client.closeInfo.reason} while waiting; last frames ${describe(client)}`,
          ),
        );
      }
    };
    const timer = setTimeout(() => {
      finish();
      reject(new Error(`timeout waiting for a frame; last frames ${describe(client)}`));
    }, timeoutMs);
    const finish = (): void => {
      done = true;
      clearTimeout(timer);
      off();
    };
    off = onActivity(client, check);
    check();
  });
}

function describe(client: TestClient): string {
  return JSON.stringify(client.frames.slice(-5)).slice(0, 400);
}

/** Seqs of every `ev` frame the client received, in arrival order. */
export function seqs(client: TestClient): number[] {
  return client.frames.filter((f) => f.op === 'ev').map((f) => f.seq as number);
}

/** Waits until the client received an `ev` with `seq` (or a later one). */
export function waitSeq(client: TestClient, seq: number, timeoutMs = 5000): Promise<Frame> {
  return waitFor(client, (f) => f.op === 'ev' && f.seq >= seq, timeoutMs);
}

let pingN = 0;

/**
 * A ping/pong round trip: the gateway answers frames in order, so once the pong is
 * here every frame it sent before is here too.
 */
export async function roundTrip(client: TestClient): Promise<void> {
  const n = ++pingN;
  client.send({ op: 'ping', n });
  await waitFor(client, (f) => f.op === 'pong' && f.n === n);
}

/**
 * Acks as events arrive: eagerly (the latest seq, after every burst of frames) or lazily
 * (only once `maxInFlight` events are unacknowledged, so the gateway has to pause).
 */
export function autoAck(client: TestClient, mode: 'eager' | 'lazy' = 'eager', maxInFlight = Infinity): void {
  let acked = 0;
  let scheduled = false;
  const check = (): void => {
    scheduled = false;
    if (client.closeInfo || client.ws.readyState !== client.ws.OPEN) return;
    const last = seqs(client).at(-1) ?? 0;
    if (last <= acked || (mode === 'lazy' && last - acked < maxInFlight)) return;
    acked = last;
    client.send({ op: 'ack', seq: last });
  };
  const schedule = (): void => {
    if (scheduled || client.closeInfo) return;
    scheduled = true;
    setImmediate(check);
  };
  client.ws.on('message', schedule);
  schedule(); // frames may have arrived together with the welcome
}

/** Asserts that delivered seqs are after + 1, after + 2, …: no gap, no duplicate, in order. */
export function assertContiguous(delivered: readonly number[], after: number, what = 'delivered seqs'): void {
  for (let i = 0; i < delivered.length; i++) {
    if (delivered[i] !== after + 1 + i) {
      assert.fail(
        `${what}: expected seq ${after + 1 + i} at position ${i}, got ${String(delivered[i])} (around: ${JSON.stringify(
          delivered.slice(Math.max(0, i - 3), i + 4),
        )})`,
      );
    }
  }
}

/** Asserts the socket was closed (or is closed within `timeoutMs`) with `code`. */
export async function expectClose(client: TestClient, code: number, timeoutMs = 5000): Promise<void> {
  const actual = await client.closeCode(timeoutMs);
  assert.equal(actual, code, `expected close ${code}, got ${actual} (${client.closeInfo?.reason ?? ''})`);
}

// ── sessions and publishing ─────────────────────────────────────────────────────

export interface Session {
  sessionId: string;
  /** Owner (role user, tenant acme). */
  ownerToken: string;
  /** An agent of the session's tenant: may publish transcript.* events. */
  agentToken: string;
}

let sessionN = 0;

/** Creates a session owned by a fresh user of tenant `acme`. It already holds seq 1 (`call.created`). */
export async function newSession(gw: TestGateway): Promise<Session> {
  const owner = `user-${++sessionN}`;
  const ownerToken = await gw.token(owner, 'user', 'acme');
  const agentToken = await gw.token(`agent-${sessionN}`, 'agent', 'acme');
  const res = await api(gw, 'POST', '/v1/call/sessions', ownerToken);
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return { sessionId: res.body.id as string, ownerToken, agentToken };
}

/**
 * `gw.http` with `connection: close`: the gateway keeps idle HTTP keep-alive sockets open
 * after shutdown, which would hold every test process open for the client's keep-alive
 * timeout (4 s).
 */
export function api(
  gw: TestGateway,
  method: string,
  path: string,
  token?: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: any }> {
  return gw.http(method, path, token, body, { connection: 'close', ...headers });
}

let eventN = 0;

/** A valid `transcript.final` pub frame (agents and services may publish it). */
export function transcriptPub(text = 'hello', id = `ev-${process.pid}-${++eventN}`): Frame {
  return {
    op: 'pub',
    id,
    type: 'transcript.final',
    payload: { segmentId: `seg-${eventN}`, revision: 0, text },
  };
}

/**
 * Sends `pub` and resolves with its answer (`puback` or `nack` with the same id). Safe to
 * call many times at once on one client.
 */
export function publish(client: TestClient, frame: Frame, timeoutMs = 5000): Promise<Frame> {
  const from = client.frames.length;
  client.send(frame);
  return waitFor(client, (f) => (f.op === 'puback' || f.op === 'nack') && f.id === frame.id, timeoutMs, from);
}

/** Publishes `count` transcript events one after the other; resolves with their seqs. */
export async function publishMany(client: TestClient, count: number, text = 'x'): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const answer = await publish(client, transcriptPub(text));
    assert.equal(answer.op, 'puback', `publish failed: ${JSON.stringify(answer)}`);
    out.push(answer.seq as number);
  }
  return out;
}

/** A live agent connection (after "latest") to publish with. */
export async function publisher(gw: TestGateway, session: Session, sub: Sub = 'json'): Promise<TestClient> {
  const { client } = await hello(gw, sub, { sessionId: session.sessionId, token: session.agentToken });
  return client;
}

/** GET the whole stream over HTTP, a page of 1,000 at a time. */
export async function history(
  gw: TestGateway,
  session: Session,
): Promise<Array<{ seq: number; event: any }>> {
  const events: Array<{ seq: number; event: any }> = [];
  for (;;) {
    const after = events.at(-1)?.seq ?? 0;
    const res = await api(
      gw,
      'GET',
      `/v1/call/sessions/${session.sessionId}/events?after=${after}&limit=1000`,
      session.ownerToken,
    );
    assert.equal(res.status, 200, JSON.stringify(res.body));
    if (res.body.events.length === 0) return events;
    events.push(...res.body.events);
  }
}

/**
 * The subscriber's acknowledged seq as the gateway holds it: resumes it without
 * `lastSeq` (so delivery starts at the checkpoint, PROTOCOL.md §3) and reads `after`
 * from the welcome. The resuming connection supersedes any live one, and is closed again.
 */
export async function checkpointOf(
  gw: TestGateway,
  sub: Sub,
  sessionId: string,
  resumeToken: string,
): Promise<number> {
  const { client, welcome } = await hello(gw, sub, { sessionId, resume: { token: resumeToken } });
  assert.equal(welcome.resumed, true);
  client.close();
  await client.closed;
  return welcome.after as number;
}

// ── tokens the gateway must refuse ──────────────────────────────────────────────

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');

export async function foreignToken(
  claims: Record<string, unknown>,
  opts: { secret: string; alg?: string },
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT(claims)
    .setProtectedHeader({ alg: opts.alg ?? 'HS256', typ: 'JWT' })
    .setIssuedAt(now)
    .setExpirationTime(now + 3600)
    .sign(new TextEncoder().encode(opts.secret));
}

export function unsignedToken(claims: Record<string, unknown>): string {
  const now = Math.floor(Date.now() / 1000);
  return `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ iat: now, exp: now + 3600, ...claims })}.`;
}

/** Opens a raw `ws` upgrade and resolves with the HTTP status of a refused upgrade. */
export function refusedUpgradeStatus(url: string, protocols: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = protocols.length > 0 ? new WebSocket(url, protocols) : new WebSocket(url);
    ws.on('unexpected-response', (req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
      req.destroy();
    });
    ws.on('open', () => {
      ws.terminate();
      reject(new Error(`upgrade with ${JSON.stringify(protocols)} was accepted (protocol ${ws.protocol})`));
    });
    ws.on('error', (err) => reject(err));
  });
}
