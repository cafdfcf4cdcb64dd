import assert from 'node:assert/strict';
import type { PublishResult, Subscription } from '../../client/index.ts';
import type { RedisCluster } from '../../chaos/toolkit/redis-cluster.ts';
import { sessionKeys } from '../../src/engine/redis/keys.ts';
import {
  assertExactlyOnce,
  history,
  record,
  recordingWebSocket,
  testClient,
  until,
  type Record as Seen,
  type Wire,
} from '../client/support.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

/** Two gateway nodes on one cluster, `NODE_ID`s `<name>0` and `<name>1`. */
export function startNodes(name: string, env: Record<string, string>): Promise<TestGateway[]> {
  return Promise.all([0, 1].map((i) => startTestGateway({ ...env, NODE_ID: `${name}${i}` })));
}

/** A session watched on one node and published to from the other, on a known master. */
export interface Watched {
  sessionId: string;
  /** The port of the master holding the session, as CLUSTER SLOTS names it. */
  master: number;
  slot: number;
  watcher: Subscription;
  seen: Seen;
  /** The watcher's frames, both ways. */
  watcherWire: Wire;
  publisher: Subscription;
  /** The publisher's frames, both ways. */
  wire: Wire;
}

/** Transcript event `n` of the session; its fixed id makes the SDK's retries one event. */
export function publishNth(publisher: Subscription, sessionId: string, n: number): Promise<PublishResult> {
  return publisher.publish(
    'transcript.final',
    { segmentId: `s${n}`, revision: 0, text: `t${n}` },
    { id: `${sessionId}-${n}` },
  );
}

/** Watches `sessionId` from seq 1 on node `a` and publishes to it from node `b` (SDK clients). */
export async function watch(
  cluster: RedisCluster,
  prefix: string,
  [a, b]: readonly [TestGateway, TestGateway],
  sessionId: string,
): Promise<Watched> {
  const slot = await cluster.keyslot(sessionKeys(prefix, sessionId).meta);
  const master = await cluster.masterOf(slot);
  const watcherWire: Wire = { sockets: [] };
  const watcher = testClient(a, {
    token: await a.token('alice'),
    WebSocket: recordingWebSocket(watcherWire),
  }).subscribe(sessionId, { after: 0 });
  const wire: Wire = { sockets: [] };
  const publisher = testClient(b, {
    token: await a.token('bot', 'agent'),
    WebSocket: recordingWebSocket(wire),
  }).subscribe(sessionId);
  return { sessionId, master, slot, watcher, seen: record(watcher), watcherWire, publisher, wire };
}

/** Sessions of alice's, watched as `watch` does, until every master holds one. */
export async function watchOnEveryMaster(
  cluster: RedisCluster,
  prefix: string,
  nodes: readonly [TestGateway, TestGateway],
): Promise<Watched[]> {
  const masters = new Set((await cluster.topology()).map((m) => m.master));
  const owner = await nodes[0].token('alice');
  const out: Watched[] = [];
  while (out.length < masters.size) {
    const sessionId = await nodes[0].createSession(owner);
    const master = await cluster.masterOf(await cluster.keyslot(sessionKeys(prefix, sessionId).meta));
    if (!out.some((w) => w.master === master)) out.push(await watch(cluster, prefix, nodes, sessionId));
  }
  return out;
}

/**
 * After the victim's master was out of reach: its publishes 4–6, stuck meanwhile, are
 * stored as seqs 5–7, and every watched session's subscriber holds 1–7 once, in order,
 * without having started over; the victim's stored history is 1–7.
 */
export async function assertRecovered(
  a: TestGateway,
  watched: readonly Watched[],
  victim: Watched,
  stuck: ReadonlyArray<Promise<PublishResult>>,
): Promise<void> {
  const results = await Promise.all(stuck);
  assert.deepEqual(
    results.map((r) => r.seq),
    [5, 6, 7],
  );
  await until(
    () => victim.seen.seqs.length === 7,
    15_000,
    () => `victim's events (${victim.seen.seqs.join(',')})`,
  );
  for (const w of watched) {
    assertExactlyOnce(w.seen.seqs, 1, 7);
    assert.equal(w.watcher.stats.freshStarts, 1, 'resumed, never started over');
  }
  const stored = await history(a, {
    sessionId: victim.sessionId,
    ownerToken: await a.token('alice'),
    agentToken: '',
  });
  assert.deepEqual(
    stored.map((e) => e.seq),
    [1, 2, 3, 4, 5, 6, 7],
  );
}
