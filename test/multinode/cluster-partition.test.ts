import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FaultProxy } from '../../chaos/toolkit/fault-proxy.ts';
import { RedisCluster } from '../../chaos/toolkit/redis-cluster.ts';
import type { PublishResult } from '../../client/index.ts';
import {
  assertExactlyOnce,
  closeClients,
  record,
  recordingWebSocket,
  testClient,
  until,
  type Wire,
} from '../client/support.ts';
import type { TestGateway } from '../helpers/gateway.ts';
import {
  assertRecovered,
  publishNth,
  startNodes,
  watchOnEveryMaster,
  type Watched,
} from './cluster-support.ts';

/**
 * A network partition between the gateway nodes and one master of a Redis Cluster, while
 * the cluster itself stays whole: the gateways reach each master through a fault proxy
 * (REDIS_CLUSTER_NAT_MAP maps the address it announces to its proxy; the cluster bus
 * stays direct), so stalling one proxy cuts both gateways off that master and nothing else.
 *
 * Meanwhile the sessions on the other masters are served, and the cut-off master's
 * publishes are refused as `unavailable` (retryable), never `internal`. The SDK clients
 * retry and resume on their own; once the link heals, every publish is stored once, each
 * subscriber gets every event once and in order, and nobody starts over. Commands the
 * stall held may reach Redis after their callers gave up on them: the retried append is
 * deduplicated by its event id.
 */
const PREFIX = 'cpt:';
const COMMAND_TIMEOUT_MS = 1000;
let cluster: RedisCluster;
/** By the port of the master behind each. */
const proxies = new Map<number, FaultProxy>();
const nodes: TestGateway[] = [];

before(async () => {
  cluster = await RedisCluster.start({ masters: 3, replicas: 0 });
  for (const port of cluster.ports) {
    const proxy = await FaultProxy.start({
      target: { host: '127.0.0.1', port },
      name: `gateways↔redis:${port}`,
    });
    proxies.set(port, proxy);
  }
  const reachable = [...proxies].map(([port, proxy]) => ({
    announced: `127.0.0.1:${port}`,
    via: `127.0.0.1:${proxy.port}`,
  }));
  const env = {
    REDIS_CLUSTER_NODES: reachable.map((r) => r.via).join(','),
    REDIS_CLUSTER_NAT_MAP: reachable.map((r) => `${r.announced}=${r.via}`).join(','),
    REDIS_KEY_PREFIX: PREFIX,
    REDIS_COMMAND_TIMEOUT_MS: String(COMMAND_TIMEOUT_MS),
  };
  nodes.push(...(await startNodes('p', env)));
});
after(async () => {
  await closeClients();
  await Promise.allSettled(nodes.map((n) => n.stop()));
  await Promise.allSettled([...proxies.values()].map((p) => p.close()));
  await cluster.stop();
});

/** Transcript event `n` of a watched session. */
function publish(w: Watched, n: number): Promise<PublishResult> {
  return publishNth(w.publisher, w.sessionId, n);
}

/** Every nack and error frame a client received. */
function refusals(wire: Wire): Array<{ op: string; code: string }> {
  return wire.sockets.flatMap((s) =>
    s.log
      .filter((l) => l.dir === 'in' && (l.frame.op === 'nack' || l.frame.op === 'error'))
      .map((l) => l.frame),
  );
}

describe('a partition between the gateways and one Redis Cluster master', () => {
  it('serves the other masters meanwhile and refuses the cut-off one as unavailable; after the heal every publish is stored once and delivered once, in order', async () => {
    const [a, b] = nodes as [TestGateway, TestGateway];
    const watched = await watchOnEveryMaster(cluster, PREFIX, [a, b]);
    for (const w of watched) for (let n = 1; n <= 3; n++) await publish(w, n);
    for (const w of watched) await until(() => w.seen.seqs.length === 4, 5000, 'events before the cut');

    const [victim, ...others] = watched as [Watched, ...Watched[]];
    const link = proxies.get(victim.master)!;
    const acceptedBefore = link.stats().connectionsAccepted;
    link.blackhole('stall');
    const stuck = [4, 5, 6].map((n) => publish(victim, n));
    let stuckSettled = false;
    void Promise.allSettled(stuck).then(() => (stuckSettled = true));
    // A client that joins while the session's master is out of reach.
    const lateWire: Wire = { sockets: [] };
    const late = testClient(a, {
      token: await a.token('alice'),
      WebSocket: recordingWebSocket(lateWire),
    }).subscribe(victim.sessionId, { after: 0 });
    const lateSeen = record(late);

    for (const w of others) for (let n = 4; n <= 6; n++) await publish(w, n);
    for (const w of others) await until(() => w.seen.seqs.length === 7, 10_000, 'the others served');
    await until(
      () => refusals(victim.wire).some((f) => f.op === 'nack' && f.code === 'unavailable'),
      10_000,
      () => `a publish refused as unavailable: ${JSON.stringify(refusals(victim.wire))}`,
    );
    // Stalled connections are given up (socketTimeout) and made again, into the stall.
    await until(
      () => link.stats().connectionsAccepted > acceptedBefore,
      10_000,
      'a gateway reconnecting to the cut-off master',
    );
    assert.equal(stuckSettled, false, "the victim's publishes wait for its master");
    assert.deepEqual(victim.seen.seqs, [1, 2, 3, 4], 'nothing half-stored reached the subscriber');
    // The late joiner's hellos are turned away with "try again later" (it backs off and retries).
    await until(
      () => lateWire.sockets.some((socket) => socket.closeCode === 1013),
      10_000,
      () => `the late joiner turned away: ${JSON.stringify(lateWire.sockets.map((x) => x.closeCode))}`,
    );
    for (const socket of lateWire.sockets)
      assert.ok(
        [undefined, 1013].includes(socket.closeCode),
        `late joiner closed with ${String(socket.closeCode)}`,
      );

    link.heal();
    await assertRecovered(a, watched, victim, stuck);
    await until(
      () => lateSeen.seqs.length === 7,
      15_000,
      () => `the late joiner's (${lateSeen.seqs.join(',')})`,
    );
    assertExactlyOnce(lateSeen.seqs, 1, 7);
    assert.equal(late.stats.freshStarts, 1);
    for (const f of refusals(lateWire)) assert.notEqual(f.code, 'internal', JSON.stringify(f));
    for (const w of watched)
      for (const f of [...refusals(w.wire), ...refusals(w.watcherWire)])
        assert.notEqual(f.code, 'internal', `a client was told: ${JSON.stringify(f)}`);
    for (const w of others) assert.deepEqual(refusals(w.wire), [], 'the other masters never refused');
  });
});
