import assert from 'node:assert/strict';
import { Unpackr } from 'msgpackr';
import WebSocket from 'ws';
import { connect, type ConnectOptions, type Client, type Subscription } from '../../client/index.ts';
import type { TestGateway } from '../helpers/gateway.ts';
import { until } from '../helpers/until.ts';
import { history } from '../protocol/support.ts';

export { until };

/** One session with an owner and an agent token (the agent may publish transcript.*). */
export interface Session {
  sessionId: string;
  ownerToken: string;
  agentToken: string;
}

let sessionN = 0;

/** Creates a session; it already holds seq 1 (`call.created`). */
export async function newSession(gw: TestGateway): Promise<Session> {
  const n = ++sessionN;
  const ownerToken = await gw.token(`sdk-user-${process.pid}-${n}`, 'user', 'acme');
  const agentToken = await gw.token(`sdk-agent-${process.pid}-${n}`, 'agent', 'acme');
  const res = await gw.http('POST', '/v1/call/sessions', ownerToken, undefined, { connection: 'close' });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return { sessionId: res.body.id as string, ownerToken, agentToken };
}

let eventN = 0;

/** Appends `count` transcript events over HTTP, one after the other; resolves with their seqs. */
export async function postEvents(gw: TestGateway, s: Session, count: number): Promise<number[]> {
  const seqs: number[] = [];
  for (let i = 0; i < count; i++) {
    const n = ++eventN;
    const res = await gw.http(
      'POST',
      `/v1/call/sessions/${s.sessionId}/events`,
      s.agentToken,
      {
        eventId: `http-${process.pid}-${n}`,
        type: 'transcript.final',
        payload: { segmentId: `s${n}`, revision: 0, text: `t${n}` },
      },
      { connection: 'close' },
    );
    assert.equal(res.status, 201, JSON.stringify(res.body));
    seqs.push(res.body.seq as number);
  }
  return seqs;
}

/** The stream as stored, over HTTP (every page). */
export { history };

/** Ends the call (connecting → active → ended) and returns the seq of `call.ended`. */
export async function endSession(gw: TestGateway, s: Session): Promise<number> {
  for (const body of [
    { to: 'connecting', provider: 'livekit' },
    { to: 'active', provider: 'livekit', providerRoomId: `room-${s.sessionId}` },
    { to: 'ended', reason: 'done' },
  ]) {
    const res = await gw.http('POST', `/v1/call/sessions/${s.sessionId}/transitions`, s.ownerToken, body, {
      connection: 'close',
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
  }
  return (await history(gw, s)).at(-1)!.seq;
}

/** What a subscription showed the application. */
export interface Record {
  seqs: number[];
  types: string[];
  states: string[];
  errors: Error[];
}

export function record(sub: Subscription): Record {
  const r: Record = { seqs: [], types: [], states: [], errors: [] };
  sub.on('event', (ev) => {
    r.seqs.push(ev.seq);
    r.types.push(ev.event.type);
  });
  sub.on('state', (s) => r.states.push(s));
  sub.on('error', (e) => r.errors.push(e));
  return r;
}

/** Asserts `seqs` is exactly from..to, each once, in order. */
export function assertExactlyOnce(seqs: readonly number[], from: number, to: number): void {
  const expected = Array.from({ length: to - from + 1 }, (_, i) => from + i);
  assert.deepEqual(seqs, expected, `expected seqs ${from}..${to} exactly once, in order`);
}

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });
function decode(data: unknown): any {
  if (typeof data === 'string') return JSON.parse(data);
  return unpackr.unpack(Buffer.from(data as Uint8Array));
}

/** Every frame the SDK sent or received, per socket, in order. */
export interface Wire {
  sockets: Array<{ log: Array<{ dir: 'in' | 'out'; frame: any }>; closeCode?: number }>;
  /** Called with each frame as the SDK sends it. */
  onSend?: (frame: any) => void;
}

/**
 * The `ws` WebSocket, recording every frame the SDK sends and receives: tests assert on
 * the wire (acks never ahead of deliveries) without touching the SDK's internals.
 */
export function recordingWebSocket(wire: Wire): NonNullable<ConnectOptions['WebSocket']> {
  return class RecordingWebSocket extends WebSocket {
    constructor(url: string, protocols: string[]) {
      super(url, protocols);
      const entry: Wire['sockets'][number] = { log: [] };
      wire.sockets.push(entry);
      this.on('message', (data, isBinary) =>
        entry.log.push({ dir: 'in', frame: decode(isBinary ? data : (data as Buffer).toString()) }),
      );
      this.on('close', (code) => (entry.closeCode = code));
      const send = this.send.bind(this);
      this.send = ((data: any, ...rest: any[]) => {
        const frame = decode(data);
        entry.log.push({ dir: 'out', frame });
        wire.onSend?.(frame);
        return (send as any)(data, ...rest);
      }) as typeof this.send;
    }
  };
}

const clients = new Set<Client>();

/** `connect()` with test defaults (the `ws` package, short backoff), closed by `closeClients()`. */
export function testClient(
  gw: TestGateway | { wsUrl: string },
  options: Partial<ConnectOptions> & { token: ConnectOptions['token'] },
): Client {
  const client = connect({
    url: gw.wsUrl,
    WebSocket,
    backoff: { baseMs: 20, capMs: 200 },
    browserEvents: false,
    ...options,
  });
  clients.add(client);
  return client;
}

export async function closeClients(): Promise<void> {
  const all = [...clients];
  clients.clear();
  await Promise.all(all.map((c) => c.close()));
}

export async function waitState(
  sub: Subscription,
  state: Subscription['state'],
  timeoutMs = 10_000,
): Promise<void> {
  await until(
    () => sub.state === state,
    timeoutMs,
    () => `state ${state} (now ${sub.state})`,
  );
}
