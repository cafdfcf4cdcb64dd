/**
 * The echo shape (many sessions, one client each, every client publishing on its own
 * connection) counts the publishes the gateway refuses, by nack code, so a rate point can
 * say whether any publish was refused; before, those nacks were dropped unread.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Fleet } from '../../bench/compare/loadgen/fleet.ts';
import { createTopics, sourceAddresses } from '../../bench/compare/scenarios/setup.ts';
import { ARMS, ArmServer } from '../../bench/compare/servers.ts';

/** transcript.partial's text allows 16,384 characters: the echo payload is that text. */
const TOO_LONG = 17_000;

const totalOf = (counts: Record<string, number>): number => Object.values(counts).reduce((a, b) => a + b, 0);

describe('bench:compare echo nacks', () => {
  let server: ArmServer;
  let fleet: Fleet;

  before(async () => {
    server = await ArmServer.start(ARMS['Gm']!);
    const setup = await createTopics(server, 3);
    fleet = await Fleet.start(1, {
      kind: 'gateway',
      url: server.url,
      token: setup.token!,
      ackEvery: 32,
      localAddresses: sourceAddresses(1),
    });
    const connected = await fleet.connect(setup.topics, 1, 3);
    assert.equal(connected.ready, 3);
  });
  after(async () => {
    await fleet?.close();
    await server?.close();
  });

  const echo = (payloadBytes: number, drainMs: number) =>
    fleet.echo({ ratePerSub: 20, seconds: 0.5, payloadBytes, fromUs: 0, toUs: 0, seqOffset: 1, drainMs });

  it('counts none while every publish is stored', async () => {
    const sent = (await echo(100, 5000)).sent;
    assert.ok(sent >= 20, `sent ${sent}`);
    const report = await fleet.report();
    assert.equal(report.delivered, sent, 'every echo came back as an event');
    assert.deepEqual(report.nacks, {});
  });

  it('counts every refused publish under its code', async () => {
    const deliveredBefore = (await fleet.report()).delivered;
    const sent = (await echo(TOO_LONG, 0)).sent;
    assert.ok(sent >= 20, `sent ${sent}`);
    let report = await fleet.report();
    for (let i = 0; i < 50 && totalOf(report.nacks) < sent; i++) {
      await sleep(100);
      report = await fleet.report();
    }
    assert.deepEqual(report.nacks, { invalid_event: sent });
    assert.equal(report.delivered, deliveredBefore, 'nothing refused was delivered');
    assert.deepEqual(report.closes, {}, 'a nack leaves the connection open');
  });
});
