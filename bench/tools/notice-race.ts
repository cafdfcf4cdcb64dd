/**
 * How often, on a real Redis, a head notice overtakes a node's first head read of a
 * session (the race session 22 found: the notice was dropped, and the node did not hear
 * of that append until the session's next one). Two gateway processes on a private
 * redis-server and one session: node A takes publishes as fast as a window of WINDOW
 * unanswered ones allows; node B, ROUNDS times, welcomes a fresh subscriber and closes
 * it, so that each hello finds no connection there and its actor reads the head again.
 * Prints B's `lifeos_remote_notices_total{kind="head_during_load"}`: each one a notice
 * that came while B's read was out and announced events the read did not see.
 *
 *   npx tsx bench/tools/notice-race.ts [ROUNDS=2000] [WINDOW=16]
 */
import WebSocket from 'ws';
import { GatewayProcess, processToken } from '../../chaos/toolkit/gateway-process.ts';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { pubFrame } from '../lib/burst-rounds.ts';

const [roundsArg, windowArg] = process.argv.slice(2);
const ROUNDS = Number(roundsArg ?? 2000);
const WINDOW = Number(windowArg ?? 16);

const redis = await RedisServer.start({ aof: false });
const [a, b] = await Promise.all(
  ['a', 'b'].map((name) => GatewayProcess.start({ REDIS_URL: redis.url, NODE_ID: name })),
);
const owner = await processToken('owner', 'user');
const agent = await processToken('bot', 'agent');
const sessionId = await a!.createSession(owner);
const url = (gw: GatewayProcess) => `ws://127.0.0.1:${gw.port}/v1/realtime`;

/** Resolves with the socket once `welcome` arrived (or rejects on close). */
function welcomed(gw: GatewayProcess, onFrame?: (frame: { op: string }) => void): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url(gw), ['lifeos.v1.json']);
    ws.on('open', () => ws.send(JSON.stringify({ op: 'hello', sessionId, token: agent, after: 'latest' })));
    ws.on('message', (data) => {
      const frame = JSON.parse((data as Buffer).toString()) as { op: string };
      if (frame.op === 'welcome') resolve(ws);
      onFrame?.(frame);
    });
    ws.on('close', (code) => reject(new Error(`closed ${code} before welcome`)));
  });
}

// The publisher on A: WINDOW publishes out at all times, the next one sent on each answer.
let published = 0;
let publishing = true;
const send = (): void => {
  if (!publishing) return;
  publisher.send(pubFrame(++published));
};
const publisher = await welcomed(a!, (frame) => {
  if (frame.op === 'puback' || frame.op === 'nack') send();
});
for (let i = 0; i < WINDOW; i++) send();

const started = performance.now();
for (let round = 0; round < ROUNDS; round++) {
  const ws = await welcomed(b!);
  await new Promise<void>((resolve) => {
    ws.on('close', () => resolve());
    ws.close(1000);
  });
}
const seconds = (performance.now() - started) / 1000;
publishing = false;

const metrics = await b!.http('GET', '/metrics');
const text = String(metrics.body);
const count = (kind: string): number =>
  Number(new RegExp(`lifeos_remote_notices_total\\{kind="${kind}"[^}]*\\} (\\d+)`).exec(text)?.[1] ?? 0);
console.log(
  `${ROUNDS} reloads on node B in ${seconds.toFixed(1)} s while node A stored ${published - WINDOW} events`,
);
console.log(
  `notices that overtook B's head read (head_during_load): ${count('head_during_load')}; head notices applied on B: ${count('head')}`,
);

publisher.close();
await Promise.all([a!.stop(), b!.stop()]);
await redis.stop();
