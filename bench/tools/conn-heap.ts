/**
 * `npm run bench:conn-heap -- [N]` (default 4,000): where the gateway's memory per idle
 * connection goes, by object kind. It starts a gateway process on the redis engine (a
 * private redis-server), holds 200 connections, takes a heap snapshot, holds N more, takes
 * another, and prints the difference per connection: what each connection costs in JS
 * heap, by constructor. It measures; it asserts nothing. RSS per connection, which also
 * holds uWS's native per-socket memory, is what `bench:compare`'s capacity ramp reports.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { JwtVerifier } from '../../src/auth/jwt.ts';

const N = Number(process.argv[2] ?? 4000);
const WARM = 200;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  nodes: number[];
  strings: string[];
}

/** Self size and count per object kind ("type name"; strings and code by type only). */
function byKind(file: string): Map<string, { bytes: number; count: number }> {
  const s = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = s.snapshot.meta.node_fields;
  const types = s.snapshot.meta.node_types[0];
  const [ti, ni, si, w] = [
    fields.indexOf('type'),
    fields.indexOf('name'),
    fields.indexOf('self_size'),
    fields.length,
  ];
  const out = new Map<string, { bytes: number; count: number }>();
  for (let i = 0; i < s.nodes.length; i += w) {
    const type = types[s.nodes[i + ti]!]!;
    const named = type === 'object' || type === 'closure' || type === 'hidden' || type === 'array';
    const key = named ? `${type} ${s.strings[s.nodes[i + ni]!]!.slice(0, 50)}` : type;
    const e = out.get(key) ?? { bytes: 0, count: 0 };
    e.bytes += s.nodes[i + si]!;
    e.count++;
    out.set(key, e);
  }
  return out;
}

async function startGateway(
  dir: string,
  redisUrl: string,
  secret: string,
): Promise<{ child: ChildProcess; port: number }> {
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const child = spawn(
    process.execPath,
    [
      '--expose-gc',
      '--heapsnapshot-signal=SIGUSR1',
      `--diagnostic-dir=${dir}`,
      '--import',
      'tsx',
      'src/main.ts',
    ],
    {
      env: {
        ...process.env,
        HOST: '127.0.0.1',
        PORT: String(port),
        REDIS_URL: redisUrl,
        AUTH_JWT_SECRET: secret,
        LOG_LEVEL: 'info',
        NODE_ID: 'conn-heap',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`gateway exited (${String(code)})`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.includes('"msg":"listening"')) resolve();
    });
  });
  return { child, port };
}

/** Takes a heap snapshot of `pid` into `dir` (after the snapshot's own GC) and returns its path. */
async function snapshot(pid: number, dir: string): Promise<string> {
  const before = new Set(readdirSync(dir));
  process.kill(pid, 'SIGUSR1');
  for (;;) {
    await sleep(500);
    const name = readdirSync(dir).find((f) => !before.has(f) && f.endsWith('.heapsnapshot'));
    if (!name) continue;
    const file = path.join(dir, name);
    const size = statSync(file).size;
    await sleep(1000);
    if (size > 0 && statSync(file).size === size) return file;
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'conn-heap-'));
  const secret = randomBytes(32).toString('hex');
  const redis = await RedisServer.start({ aof: true, appendfsync: 'everysec' });
  const { child, port } = await startGateway(dir, redis.url, secret);
  const sockets: WebSocket[] = [];
  try {
    const jwt = new JwtVerifier(secret);
    const owner = await jwt.sign({ sub: 'owner', tid: 't1', role: 'user' });
    const res = await fetch(`http://127.0.0.1:${port}/v1/call/sessions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${owner}` },
    });
    const { id: sessionId } = (await res.json()) as { id: string };
    const tokens = await Promise.all(
      Array.from({ length: 50 }, (_, i) => jwt.sign({ sub: `agent-${i}`, tid: 't1', role: 'agent' })),
    );
    // Hold `n` more connections (welcomed), 100 handshakes in flight.
    const hold = async (n: number): Promise<void> => {
      let started = 0;
      let welcomed = 0;
      await new Promise<void>((resolve, reject) => {
        const next = (): void => {
          if (started >= n) return;
          const i = started++;
          const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/realtime`, ['lifeos.v1.json']);
          ws.once('open', () =>
            ws.send(
              JSON.stringify({ op: 'hello', sessionId, token: tokens[i % tokens.length], after: 'latest' }),
            ),
          );
          ws.on('message', (data: Buffer) => {
            if ((JSON.parse(data.toString()) as { op: string }).op !== 'welcome') return;
            sockets.push(ws);
            if (++welcomed === n) resolve();
            next();
          });
          ws.once('error', reject);
        };
        for (let k = 0; k < 100; k++) next();
      });
    };
    await hold(WARM); // so that what is made once (code, shapes, tables) is in both snapshots
    const a = byKind(await snapshot(child.pid!, dir));
    await hold(N);
    const b = byKind(await snapshot(child.pid!, dir));
    let total = 0;
    const rows: { key: string; bytes: number; count: number }[] = [];
    for (const [key, e] of b) {
      const was = a.get(key) ?? { bytes: 0, count: 0 };
      const bytes = (e.bytes - was.bytes) / N;
      total += bytes;
      rows.push({ key, bytes, count: (e.count - was.count) / N });
    }
    rows.sort((x, y) => y.bytes - x.bytes);
    console.log(`JS heap per idle connection (${N} connections, one session): ${total.toFixed(0)} B`);
    console.log('| bytes / conn | objects / conn | kind |\n| ---: | ---: | --- |');
    for (const r of rows.slice(0, 15))
      console.log(`| ${r.bytes.toFixed(1)} | ${r.count.toFixed(2)} | ${r.key} |`);
    console.log('("code" moves with the JIT, not with connections.)');
  } finally {
    for (const ws of sockets) ws.terminate();
    child.kill('SIGTERM');
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
process.exit(0);
