import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { get } from 'node:http';
import { createServer, type Server } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { GatewayProcess } from '../../chaos/toolkit/gateway-process.ts';
import { freePort } from '../../chaos/toolkit/ports.ts';
import { startGateway } from '../../src/app.ts';
import { loadConfig } from '../../src/config/load.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { foreignListeners, PortInUseError } from '../../src/transport/port.ts';
import { Supervisor } from '../../src/supervisor/supervisor.ts';

/**
 * `PORT_SHARING`: uSockets sets SO_REUSEPORT on every listen socket bound to a given port,
 * so without a check a second gateway on a taken port would join it and take part of its
 * connections. Real processes: gateways (`src/main.ts`), a primary, and a bare uWS
 * listener standing in for "another gateway" where only its socket matters.
 */
const LISTENER = new URL('../helpers/reuseport-listener.ts', import.meta.url).pathname;

const children: ChildProcess[] = [];
const servers: Server[] = [];
after(() => {
  for (const child of children) child.kill('SIGKILL');
  for (const server of servers) server.close();
});

/** The bare listener on 127.0.0.1:`port`, resolved once it listens. */
async function bareListener(port: number, node = 'foreign'): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', LISTENER], {
    env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: String(port), NODE_ID: node },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('listening')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`listener exited ${String(code)}: ${err}`)));
  });
  return child;
}

/** A plain Node listener (no SO_REUSEPORT) in this process. */
function nodeListener(host: string, port: number): Promise<Server> {
  const server = createServer();
  servers.push(server);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => resolve(server));
  });
}

/** GET /healthz on a fresh TCP connection, so the kernel picks a listener each time. */
function healthNode(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: '/healthz', agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve((JSON.parse(body) as { node: string }).node));
    }).on('error', reject);
  });
}

async function nodesAnswering(port: number, tries = 40): Promise<string[]> {
  const seen = new Set<string>();
  for (let i = 0; i < tries; i++) seen.add(await healthNode(port));
  return [...seen].sort();
}

describe('PORT_SHARING', () => {
  it('refuse (the default): a second gateway on a port a gateway listens on exits 1 with the reason, and the first keeps the port to itself', async () => {
    const port = await freePort();
    const first = await GatewayProcess.start({ PORT: String(port), NODE_ID: 'first' });
    try {
      await assert.rejects(GatewayProcess.start({ PORT: String(port), NODE_ID: 'second' }), (err: Error) => {
        assert.match(err.message, /exited \(\{"code":1,/);
        assert.match(
          err.message,
          new RegExp(`PORT: 127\\.0\\.0\\.1:${port} is already in use \\(EADDRINUSE\\)`),
        );
        return true;
      });
      assert.deepEqual(await nodesAnswering(port), ['first']);
    } finally {
      await first.stop();
    }
  });

  it('allow: the second gateway joins the port and the kernel splits connections between the two (what refuse prevents)', async () => {
    const port = await freePort();
    const first = await GatewayProcess.start({ PORT: String(port), NODE_ID: 'first' });
    const second = await GatewayProcess.start({
      PORT: String(port),
      NODE_ID: 'second',
      PORT_SHARING: 'allow',
    });
    try {
      assert.deepEqual(await nodesAnswering(port), ['first', 'second']);
    } finally {
      await Promise.all([first.stop(), second.stop()]);
    }
  });

  it('refuse: a WORKERS primary checks the port before it forks (Redis is never reached)', async () => {
    const port = await freePort();
    await bareListener(port);
    await assert.rejects(
      GatewayProcess.start({ PORT: String(port), WORKERS: '2', REDIS_URL: 'redis://127.0.0.1:1' }),
      (err: Error) => {
        assert.match(err.message, /exited \(\{"code":1,/);
        assert.match(err.message, /is already in use \(EADDRINUSE\)/);
        return true;
      },
    );
  });

  it('refuse does not mistake a listener on another address of the same port for a sharer', async () => {
    const port = await freePort();
    await nodeListener('::1', port);
    const gw = await GatewayProcess.start({ PORT: String(port), NODE_ID: 'v4' });
    try {
      assert.deepEqual(await nodesAnswering(port, 5), ['v4']);
    } finally {
      await gw.stop();
    }
  });
});

describe('the gateway’s own check once it listens', () => {
  // In this process there is no probe before the listen (main.ts makes it), so the port
  // can be taken beforehand: as if another gateway had bound it between probe and listen.
  function gateway(port: number, refuseSharedPort: boolean): ReturnType<typeof startGateway> {
    const { config } = loadConfig({
      HOST: '127.0.0.1',
      PORT: String(port),
      AUTH_JWT_SECRET: 'port-sharing-secret-port-sharing-secret-0123',
      NODE_ID: 'own',
    });
    return startGateway({ config, logger: silentLogger(), refuseSharedPort });
  }

  it('rejects with PortInUseError, serving nothing, when another process’s socket shares the port', async () => {
    const port = await freePort();
    await bareListener(port);
    await assert.rejects(gateway(port, true), (err: Error) => {
      assert.ok(err instanceof PortInUseError, String(err));
      assert.match(err.message, /another listen socket appeared beside ours/);
      return true;
    });
    assert.deepEqual(await nodesAnswering(port, 20), ['foreign'], 'its listen sockets are closed');
  });

  it('control: without the check it joins the port', async () => {
    const port = await freePort();
    await bareListener(port);
    const gw = await gateway(port, false);
    try {
      assert.deepEqual(await nodesAnswering(port, 60), ['foreign', 'own']);
    } finally {
      await gw.shutdown();
    }
  });
});

describe('the supervisor’s check once every worker listens', () => {
  /** A supervisor of two bare listeners on `port`, with its log lines. */
  function supervise(port: number, refuseSharedPort: boolean): { supervisor: Supervisor; lines: string[] } {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const supervisor = new Supervisor({
      workers: 2,
      entry: LISTENER,
      execArgv: ['--import', 'tsx'],
      env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: String(port) },
      nodeIdBase: 'sv',
      host: '127.0.0.1',
      port,
      shutdownTimeoutMs: 5000,
      refuseSharedPort,
      logger: pino({ level: 'info' }, sink),
    });
    return { supervisor, lines };
  }

  it('drains and exits 1 when a listen socket none of its workers holds shares the port', async () => {
    // Taken before the workers start, as if between the primary's probe and their binds.
    const port = await freePort();
    await bareListener(port);
    const { supervisor, lines } = supervise(port, true);
    assert.equal(await supervisor.run(), 1);
    const refusal = lines.map(
      (l) => JSON.parse(l) as { level: number; msg: string; foreignSockets?: number },
    );
    const error = refusal.find((l) => l.level === 50);
    assert.ok(error, `no error line in ${JSON.stringify(refusal)}`);
    assert.match(error.msg, /is already in use \(another listen socket appeared beside the workers\)/);
    assert.equal(error.foreignSockets, 1);
  });

  it('a worker restarted while another process has joined the port logs an error, and the workers keep serving', async () => {
    const port = await freePort();
    const { supervisor, lines } = supervise(port, true);
    const done = supervisor.run();
    let exited = false;
    void done.then(() => (exited = true));
    const listening = async (restarts: number): Promise<void> => {
      const deadline = Date.now() + 20_000;
      while (
        !supervisor.workers().every((w) => w.listening && w.restarts === (w.index === 0 ? restarts : 0))
      ) {
        assert.ok(Date.now() < deadline, 'workers did not listen');
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await listening(0);
    await bareListener(port); // the intruder: it joins a port the workers already hold
    process.kill(supervisor.workers()[0]!.pid!, 'SIGKILL');
    await listening(1);
    const errors = lines
      .map((l) => JSON.parse(l) as { level: number; msg: string; foreignSockets?: number })
      .filter((l) => l.level === 50);
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.match(errors[0]!.msg, /another process listens on 127\.0\.0\.1:\d+ beside the workers/);
    assert.equal(errors[0]!.foreignSockets, 1);
    assert.equal(exited, false, 'the workers keep the port');
    supervisor.stop('test');
    assert.equal(await done, 0);
  });

  it('control: with the check off the same start succeeds and the three listeners share the port', async () => {
    const port = await freePort();
    await bareListener(port);
    const { supervisor } = supervise(port, false);
    const done = supervisor.run();
    const deadline = Date.now() + 20_000;
    while (!supervisor.workers().every((w) => w.listening)) {
      assert.ok(Date.now() < deadline, 'workers did not listen');
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(await nodesAnswering(port, 60), ['foreign', 'sv-w0', 'sv-w1']);
    supervisor.stop('test');
    assert.equal(await done, 0);
  });
});

describe('foreignListeners', () => {
  it('names the listen sockets on the port that the given processes do not hold and that could take their connections', async () => {
    const port = await freePort();
    const v4 = await bareListener(port);
    // This process: a listener on ::1, the same port, another address family.
    await nodeListener('::1', port);

    assert.equal(foreignListeners(port, [])?.length, 2, 'no process given: every listener counts');
    assert.deepEqual(foreignListeners(port, [v4.pid!, process.pid]), [], 'both held');
    // ::1 cannot take 127.0.0.1's connections, nor the other way round.
    assert.deepEqual(foreignListeners(port, [v4.pid!]), []);
    assert.deepEqual(foreignListeners(port, [process.pid]), []);

    // A second listener on 127.0.0.1 (SO_REUSEPORT) shares the first's connections.
    const other = await bareListener(port, 'other');
    assert.equal(foreignListeners(port, [v4.pid!])?.length, 1);
    assert.deepEqual(foreignListeners(port, [v4.pid!, other.pid!]), []);
    // A process that is gone holds nothing.
    assert.equal(foreignListeners(port, [v4.pid!, 2 ** 22 + 1])?.length, 1);
  });
});
