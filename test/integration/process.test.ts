import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { JwtVerifier } from '../../src/auth/jwt.ts';
import { subscribe } from '../helpers/ws-client.ts';

const SECRET = 'process-test-secret-process-test-secret-0123';
const MAIN = new URL('../../src/main.ts', import.meta.url).pathname;

interface Started {
  child: ChildProcess;
  port: number;
  lines: Record<string, unknown>[];
}

/** Runs the real entry point (`node --import tsx src/main.ts`) and waits for "listening". */
async function startProcess(env: Record<string, string>): Promise<Started> {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
    env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Record<string, unknown>[] = [];
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no listening line')), 15_000);
    createInterface({ input: child.stdout }).on('line', (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      lines.push(entry);
      if (entry.msg === 'listening') {
        clearTimeout(timer);
        resolve(entry.port as number);
      }
    });
    child.once('exit', (code) => reject(new Error(`exited early with ${String(code)}`)));
  });
  return { child, port, lines };
}

/** A client of a new session, subscribed over the process's port. */
async function subscribedClient(port: number) {
  const token = await new JwtVerifier(SECRET).sign({ sub: 'alice', tid: 'acme', role: 'user' });
  const created = await fetch(`http://127.0.0.1:${port}/v1/call/sessions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
  });
  const { id } = (await created.json()) as { id: string };
  return (await subscribe(`ws://127.0.0.1:${port}/v1/realtime`, { sessionId: id, token })).client;
}

async function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const [code] = (await once(child, 'exit')) as [number | null];
  return code;
}

describe('the gateway process', () => {
  it('logs one JSON "listening" line with the bound port, reports native uWS, and drains on SIGTERM with 1001', async () => {
    const { child, port, lines } = await startProcess({ AUTH_JWT_SECRET: SECRET });
    try {
      assert.ok(port > 0);
      const listening = lines.find((l) => l.msg === 'listening')!;
      assert.equal(listening.transport, 'native');
      const health = (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as Record<
        string,
        unknown
      >;
      assert.equal(health.transport, 'native');
      assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200);
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      assert.match(metrics, /lifeos_transport_info\{transport="native",node="[^"]+"\} 1/);
      assert.match(metrics, /nodejs_eventloop_lag_seconds/);

      const client = await subscribedClient(port);
      child.kill('SIGTERM');
      assert.equal(await client.closeCode(), 1001);
      assert.equal(await exitOf(child), 0);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('a second SIGTERM during the drain changes nothing: 1001 for its clients, exit 0', async () => {
    const { child, port, lines } = await startProcess({ AUTH_JWT_SECRET: SECRET });
    try {
      const client = await subscribedClient(port);
      child.kill('SIGTERM');
      for (let i = 0; i < 500 && !lines.some((l) => l.msg === 'shutdown requested'); i++) {
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      child.kill('SIGTERM'); // the first one's handler has run: this one meets whatever is left
      assert.equal(await client.closeCode(), 1001);
      assert.equal(await exitOf(child), 0);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('warns loudly when it generates a development secret', async () => {
    const { child, lines } = await startProcess({});
    child.kill('SIGTERM');
    assert.equal(await exitOf(child), 0);
    assert.ok(lines.some((l) => l.level === 'warn' && /AUTH_JWT_SECRET is not set/.test(String(l.msg))));
  });

  it('exits 1 with every problem listed on bad configuration', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
      env: { PATH: process.env.PATH, PORT: 'x', MAX_IN_FLIGHT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    assert.equal(await exitOf(child), 1);
    assert.match(stderr, /PORT/);
    assert.match(stderr, /MAX_IN_FLIGHT/);
  });

  it('refuses to run with a generated secret when NODE_ENV=production', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
      env: { PATH: process.env.PATH, NODE_ENV: 'production', PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    assert.equal(await exitOf(child), 1);
    assert.match(stderr, /AUTH_JWT_SECRET/);
  });
});
