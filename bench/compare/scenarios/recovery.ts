/**
 * M5: how fast everyone is back after a restart. Two server processes of the arm share
 * one Redis: V holds the N subscribers, P takes the publishes. V is stopped (SIGTERM or
 * SIGKILL), K events per topic are published through P while it is down, V is started
 * again on the same port, and every client reconnects with the same policy (full-jitter
 * backoff, 100 ms base, 5 s cap) and the arm's own recovery (G: resume token + lastSeq;
 * S: connection-state recovery). Measured from V's `listening` until each client holds
 * its topic's last event: p50, p99, max, how many got there, gaps and duplicates, the
 * kernel's listen-queue overflows, and which core was the limit meanwhile (the restarted
 * server's CPU, and the core the clients share with Redis). Only arms with recovery (G, S)
 * take part.
 */
import { performance } from 'node:perf_hooks';
import { nowMicros } from '../../lib/wire.ts';
import { OpenLoop } from '../driver.ts';
import { Fleet } from '../loadgen/fleet.ts';
import { percentilesMs } from '../loadgen/histogram.ts';
import { CpuSpan, corePercent, coreTicks, listenOverflows } from '../proc.ts';
import { ArmServer, CLIENT_CORE, type ArmSpec } from '../servers.ts';
import type { Latency } from './fanout.ts';
import { connectPublisher, createTopics, loadArmClient, sourceAddresses } from './setup.ts';

export interface RecoveryOptions {
  clients: number;
  topics: number;
  missed: number;
  signal: 'SIGTERM' | 'SIGKILL';
  payloadBytes: number;
  concurrency: number;
  timeoutMs: number;
  log: (line: string) => void;
}

export interface RecoveryResult {
  arm: string;
  clients: number;
  missed: number;
  signal: string;
  caughtUp: number;
  total: number;
  /** Share of clients that hold every missed event, without gaps or duplicates. */
  recoveredFraction: number;
  catchup: Latency;
  gaps: number;
  duplicates: number;
  recovered: number;
  freshStarts: number;
  listenOverflows: number;
  /** From the signal to the restarted server's `listening`: add it to `catchup` for times from the signal. */
  downMs: number;
  /** The outage's parts: signal to the old process's exit, and spawn to `listening`. */
  exitMs: number;
  startMs: number;
  /**
   * From `listening` until the wait ended (the last client caught up, or the timeout):
   * the restarted server's CPU as a share of its core, and the busy share of the core
   * the clients and Redis run on. At 85 % or more the clients' core was the limit.
   */
  serverCpuPercent: number;
  clientCorePercent: number;
  clientBound: boolean;
  /** Redis's CPU in the same span, as a share of a core: part of the clients' core. */
  redisCpuPercent: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function runRecovery(spec: ArmSpec, o: RecoveryOptions): Promise<RecoveryResult> {
  const victim = await ArmServer.start(spec);
  const publisherNode = await ArmServer.start(spec, { redis: victim.redis! });
  let fleet: Fleet | undefined;
  try {
    const arm = await loadArmClient(spec.kind);
    const setup = await createTopics(publisherNode, o.topics);
    fleet = await Fleet.start(Math.max(2, Math.ceil(o.clients / 9000)), {
      kind: spec.kind,
      url: victim.url,
      ...(setup.token !== undefined ? { token: setup.token } : {}),
      ackEvery: 32,
      localAddresses: sourceAddresses(8),
    });
    const perTopic = Math.ceil(o.clients / o.topics);
    const connected = await fleet.connect(setup.topics, perTopic, o.concurrency);
    await fleet.policy(100, 5000);
    const publisher = await connectPublisher(arm, publisherNode, setup);
    const loop = new OpenLoop(publisher, setup.topics, o.payloadBytes);
    const seqOffset = spec.kind === 'gateway' ? 1 : 0;
    // a few events first, so every client has a position to resume from
    loop.burst(3);
    await publisher.drain();
    const settleUntil = performance.now() + 15_000;
    let report = await fleet.report();
    while (
      performance.now() < settleUntil &&
      setup.topics.some((t) => (report.lastSeq[t]?.min ?? -1) < 3 + seqOffset)
    ) {
      await sleep(100);
      report = await fleet.report();
    }

    // Each topic's last seq after the missed events, told to the fleet before the stop:
    // its workers answer slowly while their clients retry, and the outage is the server's.
    const target: Record<string, number> = {};
    for (const t of setup.topics) target[t] = loop.seq.get(t)! + o.missed + seqOffset;
    await fleet.catchupTarget(target);

    const downAt = performance.now();
    await victim.stop(o.signal);
    const exitMs = performance.now() - downAt;
    loop.burst(o.missed);
    await publisher.drain();
    const overflowBefore = listenOverflows().overflows;
    const launchAt = performance.now();
    await victim.launch();
    const startMs = performance.now() - launchAt;
    const t0 = nowMicros();
    const downMs = performance.now() - downAt;
    const serverCpu = new CpuSpan(victim.pids);
    const redisCpu = new CpuSpan(victim.redis?.pid === undefined ? [] : [victim.redis.pid]);
    const clientCore0 = coreTicks(Number(CLIENT_CORE));
    const reply = await fleet.catchupWait(o.timeoutMs, t0);
    const { percent: serverCpuPercent } = serverCpu.stop();
    const { percent: redisCpuPercent } = redisCpu.stop();
    const clientCorePercent = corePercent(clientCore0, coreTicks(Number(CLIENT_CORE)));
    const overflows = listenOverflows().overflows - overflowBefore;
    report = await fleet.report();
    publisher.close();
    const catchup = percentilesMs(reply.histogram);
    const clean = report.gaps === 0 && report.duplicates === 0;
    const result: RecoveryResult = {
      arm: spec.name,
      clients: connected.ready,
      missed: o.missed,
      signal: o.signal,
      caughtUp: reply.caughtUp,
      total: reply.total,
      recoveredFraction: clean ? reply.caughtUp / Math.max(1, reply.total) : 0,
      catchup,
      gaps: report.gaps,
      duplicates: report.duplicates,
      recovered: reply.recovered,
      freshStarts: reply.freshStarts,
      listenOverflows: overflows,
      downMs,
      exitMs,
      startMs,
      serverCpuPercent,
      clientCorePercent,
      clientBound: clientCorePercent >= 85,
      redisCpuPercent,
    };
    o.log(
      `${spec.name} M5 ${o.signal} ${connected.ready}×${o.missed}: ${reply.caughtUp}/${reply.total} caught up, ` +
        `outage ${downMs.toFixed(0)} ms (exit ${exitMs.toFixed(0)}, start ${startMs.toFixed(0)}), from listening p50 ${catchup.p50} p99 ${catchup.p99} max ${catchup.max} ms, gaps ${report.gaps}, dups ${report.duplicates}, ` +
        `recovered ${reply.recovered}, fresh ${reply.freshStarts}, listen overflows ${overflows}, ` +
        `server ${serverCpuPercent.toFixed(0)}%, client core ${clientCorePercent.toFixed(0)}% (Redis ${redisCpuPercent.toFixed(0)}%)` +
        (result.clientBound ? ' CLIENT-BOUND' : ''),
    );
    return result;
  } finally {
    await fleet?.close();
    await publisherNode.stop();
    await victim.close();
  }
}
