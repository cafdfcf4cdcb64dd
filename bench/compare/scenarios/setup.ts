/**
 * What every scenario needs from an arm before clients connect: its topics (for G, real
 * call sessions created over HTTP), tokens, and a publisher connection.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { JwtVerifier } from '../../../src/auth/jwt.ts';
import { httpJson } from '../../../chaos/toolkit/http.ts';
import type { Fleet } from '../loadgen/fleet.ts';
import type { ArmServer } from '../servers.ts';
import { JWT_SECRET } from '../servers.ts';
import type { ArmClient, Publisher } from '../types.ts';

const jwt = new JwtVerifier(JWT_SECRET);

export interface ArmSetup {
  topics: string[];
  /** G: the subscribers' token. */
  token?: string;
  publisherToken?: string;
}

/** Creates `count` topics; for G, `count` call sessions owned by one bench user. */
export async function createTopics(server: ArmServer, count: number): Promise<ArmSetup> {
  if (server.spec.kind !== 'gateway') {
    return { topics: Array.from({ length: count }, (_, i) => `topic-${i}`) };
  }
  const owner = await jwt.sign({ sub: 'bench-owner', tid: 'bench', role: 'user' }, 24 * 3600);
  const token = await jwt.sign({ sub: 'bench-subscriber', tid: 'bench', role: 'agent' }, 24 * 3600);
  const publisherToken = await jwt.sign({ sub: 'bench-publisher', tid: 'bench', role: 'agent' }, 24 * 3600);
  const topics: string[] = [];
  const batch = 50;
  for (let i = 0; i < count; i += batch) {
    const created = await Promise.all(
      Array.from({ length: Math.min(batch, count - i) }, async () => {
        const res = await httpJson(server.httpUrl, 'POST', '/v1/call/sessions', { token: owner, body: {} });
        if (res.status !== 201) throw new Error(`create session: ${res.status} ${JSON.stringify(res.body)}`);
        return (res.body as { id: string }).id;
      }),
    );
    topics.push(...created);
  }
  return { topics, token, publisherToken };
}

export async function connectPublisher(
  arm: ArmClient,
  server: ArmServer,
  setup: ArmSetup,
): Promise<Publisher> {
  return arm.publisher({
    url: server.url,
    topics: setup.topics,
    ...(setup.publisherToken !== undefined ? { token: setup.publisherToken } : {}),
  });
}

export async function loadArmClient(kind: ArmClient['kind']): Promise<ArmClient> {
  return ((await import(`../client/${kind}.ts`)) as { default: ArmClient }).default;
}

/** 127.0.0.2 … 127.0.0.(1+n): source addresses for the load generator. */
export function sourceAddresses(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `127.0.0.${i + 2}`);
}

export interface Baseline {
  /** Server RSS after a GC before the warm-up, and after it (bytes). */
  cold: number;
  rss: number;
  rssAnon: number;
  /** Handshakes the warm-up completed, and how many failed. */
  warmup: number;
  failed: number;
}

/**
 * The memory baseline that per-connection readings (M3, M4) count from, the same for
 * every arm: `count` handshakes per server process (under WORKERS the kernel spreads them
 * over the processes) spread over the topics, each client closing once it is ready, then
 * a GC. A process's first burst of work grows its heap once, whatever it holds
 * afterwards (V8's young generation went 9 → 31 MB in G's first 5,000 handshakes and
 * stayed there), and that is not the cost of an idle connection. `cold` is kept for the
 * record.
 */
export async function warmBaseline(
  server: ArmServer,
  fleet: Fleet,
  topics: readonly string[],
  count: number,
  concurrency: number,
): Promise<Baseline> {
  await server.gc();
  const cold = server.rss;
  const total = count * (server.spec.workers ?? 1);
  const churned = await fleet.churn(topics, Math.max(1, Math.ceil(total / topics.length)), concurrency);
  await sleep(500); // the last closes reach the server
  await server.gc();
  return { cold, rss: server.rss, rssAnon: server.rssAnon, warmup: churned.ready, failed: churned.failed };
}
