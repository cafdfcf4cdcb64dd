/**
 * What a Redis outage writes to a gateway's log, and how long the gateway's own loop stalls
 * meanwhile. One gateway process on a private redis-server; SESSIONS sessions, each with one
 * WebSocket client that publishes an event a second and acks what it receives; then Redis
 * is killed (`kill`: connections refused at once) or frozen (`pause`, SIGSTOP: commands time
 * out) for OUTAGE_MS, and brought back. Prints the log lines written from the start of the
 * outage until 10 s after it ended, by message, and the worst delay of a `/healthz` poll
 * every 50 ms over the same span (the gateway writes its log synchronously, so a flood of
 * lines is time its loop is not serving).
 *
 *   npx tsx bench/tools/outage-logs.ts [SESSIONS=2000] [OUTAGE_MS=5000] [kill|pause]
 */
import WebSocket from 'ws';
import { GatewayProcess, processToken } from '../../chaos/toolkit/gateway-process.ts';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';

const [sessionsArg, outageArg, modeArg] = process.argv.slice(2);
const SESSIONS = Number(sessionsArg ?? 2000);
const OUTAGE_MS = Number(outageArg ?? 5000);
const MODE = modeArg ?? 'kill';
const AFTER_MS = 10_000;
if (MODE !== 'kill' && MODE !== 'pause') throw new Error('mode: kill or pause');

const redis = await RedisServer.start({ aof: false });
const gw = await GatewayProcess.start({
  REDIS_URL: redis.url,
  LOG_LEVEL: 'info',
  REDIS_COMMAND_TIMEOUT_MS: '1000',
});
const owner = await processToken('owner', 'user');
const agent = await processToken('bot', 'agent');

let pubacks = 0;
let nacks = 0;
const sockets: WebSocket[] = [];
const wsUrl = `ws://127.0.0.1:${gw.port}/v1/realtime`;
for (let i = 0; i < SESSIONS; i++) {
  const sessionId = await gw.createSession(owner);
  const ws = new WebSocket(wsUrl, ['lifeos.v1.json']);
  sockets.push(ws);
  let n = 0;
  ws.on('open', () => {
    ws.send(JSON.stringify({ op: 'hello', sessionId, token: agent, after: 'latest' }));
    const timer = setInterval(() => {
      if (ws.readyState !== WebSocket.OPEN) return;
      ws.send(
        JSON.stringify({
          op: 'pub',
          id: `${sessionId}-${++n}`,
          type: 'transcript.partial',
          payload: { segmentId: `g${n}`, revision: 0, text: 'x'.repeat(80) },
        }),
      );
    }, 1000);
    timer.unref();
    ws.on('close', () => clearInterval(timer));
  });
  ws.on('message', (data) => {
    const frame = JSON.parse((data as Buffer).toString()) as { op: string; seq?: number };
    if (frame.op === 'ev') ws.send(JSON.stringify({ op: 'ack', seq: frame.seq }));
    else if (frame.op === 'puback') pubacks++;
    else if (frame.op === 'nack') nacks++;
  });
}
await new Promise((r) => setTimeout(r, 5000));
console.log(`${SESSIONS} sessions up: ${pubacks} pubacks, ${nacks} nacks in the warm-up`);

let worstPollMs = 0;
let polling = true;
const poll = (async () => {
  while (polling) {
    const started = performance.now();
    await gw.http('GET', '/healthz', { timeoutMs: 30_000 }).catch(() => undefined);
    worstPollMs = Math.max(worstPollMs, performance.now() - started);
    await new Promise((r) => setTimeout(r, 50));
  }
})();

const before = gw.logs.length;
const bytesOf = (from: number) =>
  gw.logs.slice(from).reduce((sum, l) => sum + JSON.stringify(l).length + 1, 0);
if (MODE === 'kill') await redis.kill();
else redis.pause();
await new Promise((r) => setTimeout(r, OUTAGE_MS));
if (MODE === 'kill') await redis.restart();
else redis.resume();
await new Promise((r) => setTimeout(r, AFTER_MS));
polling = false;
await poll;

const lines = gw.logs.slice(before);
const byMsg = new Map<string, number>();
for (const line of lines) {
  const key = `${line.level ?? ''} ${line.msg ?? ''}`;
  byMsg.set(key, (byMsg.get(key) ?? 0) + 1);
}
console.log(
  `${MODE} ${OUTAGE_MS} ms, ${SESSIONS} sessions: ${lines.length} log lines (${Math.round(bytesOf(before) / 1024)} KiB) ` +
    `from the outage to ${AFTER_MS / 1000} s after; worst /healthz poll ${Math.round(worstPollMs)} ms`,
);
for (const [msg, count] of [...byMsg].sort((a, b) => b[1] - a[1]))
  console.log(`  ${String(count).padStart(7)}  ${msg}`);
for (const line of lines.filter((l) => 'suppressed' in l))
  console.log(
    `  throttled: ${line.msg ?? ''} ${JSON.stringify({ suppressed: line['suppressed'], lastErr: line['lastErr'] })}`,
  );
console.log(`pubacks ${pubacks}, nacks ${nacks}`);

for (const ws of sockets) ws.terminate();
await gw.stop();
await redis.stop();
