/**
 * The memory baseline of M3/M4 counts from a server that has done a burst of handshakes
 * and holds none of them. These tests hold the warm-up to that: it completes its
 * handshakes against a real gateway (JWT hellos), leaves no connection open there, and
 * leaves no trace in the load generator's counters that later readings use.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Fleet } from '../../bench/compare/loadgen/fleet.ts';
import { createTopics, sourceAddresses, warmBaseline } from '../../bench/compare/scenarios/setup.ts';
import { ARMS, ArmServer } from '../../bench/compare/servers.ts';

/** lifeos_ws_connections summed over its codec labels, from the gateway's /metrics. */
async function openConnections(server: ArmServer): Promise<number> {
  const text = await (await fetch(`${server.httpUrl}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('lifeos_ws_connections')) sum += Number(line.split(' ').pop());
  }
  return sum;
}

describe('bench:compare warm memory baseline', () => {
  let server: ArmServer;
  let fleet: Fleet;
  let topics: string[];

  before(async () => {
    server = await ArmServer.start(ARMS['Gm']!);
    const setup = await createTopics(server, 3);
    topics = setup.topics;
    fleet = await Fleet.start(2, {
      kind: 'gateway',
      url: server.url,
      token: setup.token!,
      ackEvery: 32,
      localAddresses: sourceAddresses(2),
    });
  });
  after(async () => {
    await fleet?.close();
    await server?.close();
  });

  it('does its handshakes, then holds none of them; what connects next is held', async () => {
    const warm = await warmBaseline(server, fleet, topics, 60, 10);
    assert.equal(warm.warmup, 60);
    assert.equal(warm.failed, 0);
    assert.ok(warm.cold > 0 && warm.rss > 0 && warm.rssAnon > 0, 'RSS read before and after');
    assert.equal(await openConnections(server), 0, 'no warm-up connection is left open');

    const connected = await fleet.connect(topics, 5, 10);
    assert.equal(connected.ready, 15);
    assert.equal(await openConnections(server), 15);

    // the workers keep only the held subscribers, and the warm-up's own closes are not counted
    const report = await fleet.report();
    assert.equal(report.subscribers, 15);
    assert.equal(report.ready, 15);
    assert.deepEqual(report.closes, {});
  });
});
