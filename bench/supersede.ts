/**
 * How promptly a node closes a connection that another node's resume superseded:
 * `npm run bench:supersede [-- --rounds 200]`. Two gateway nodes (in this process, each
 * with its own Redis connections) on a private redis-server; each round subscribes on A,
 * resumes the same subscriber on B, and times B's `welcome` → A's 4009 close.
 * Prints p50/p99/max; no assertions (a benchmark, not a test).
 */
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { RedisServer } from '../chaos/toolkit/redis-server.ts';
import { startTestGateway } from '../test/helpers/gateway.ts';
import { TestClient, subscribe } from '../test/helpers/ws-client.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '200' } } });
const rounds = Number(values.rounds);

const redis = await RedisServer.start({ aof: true, appendfsync: 'everysec' });
const env = { REDIS_URL: redis.url, REDIS_KEY_PREFIX: 'bench-supersede:' };
const [a, b] = await Promise.all([
  startTestGateway({ ...env, NODE_ID: 'a' }),
  startTestGateway({ ...env, NODE_ID: 'b' }),
]);
try {
  const owner = await a.token('alice');
  const sessionId = await a.createSession(owner);
  const samples: number[] = [];
  const fromHello: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const { client: onA, welcome } = await subscribe(a.wsUrl, { sessionId, token: owner });
    const onB = await TestClient.connect(b.wsUrl);
    const sent = performance.now();
    onB.send({ op: 'hello', sessionId, resume: { token: welcome.resumeToken } });
    const closed = onA.closed.then(() => performance.now());
    await onB.op('welcome');
    const welcomed = performance.now();
    const code = await onA.closeCode();
    const closedAt = await closed;
    samples.push(closedAt - welcomed);
    fromHello.push(closedAt - sent);
    if (code !== 4009) throw new Error(`round ${i}: A closed with ${code}, expected 4009`);
    onB.close();
  }
  const report = (name: string, xs: number[]): string => {
    xs.sort((x, y) => x - y);
    const at = (q: number) => xs[Math.min(xs.length - 1, Math.floor(q * xs.length))]!.toFixed(2);
    return `${name}: p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${xs.at(-1)!.toFixed(2)} ms`;
  };
  console.log(`supersede across nodes, ${rounds} rounds (negative: A closed before B's welcome arrived)`);
  console.log(`  ${report("B's welcome → A's 4009", samples)}`);
  console.log(`  ${report("resume hello sent to B → A's 4009", fromHello)}`);
} finally {
  await Promise.allSettled([a.stop(), b.stop()]);
  await redis.stop();
}
