import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { FaultProxy, type FaultProxyOptions } from '../../chaos/toolkit/fault-proxy.ts';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { RespClient } from '../../chaos/toolkit/resp.ts';

/**
 * The fault proxy against plain node:net servers (and one real redis-server). Timing
 * assertions are lower bounds only: a loaded machine makes things slower, never faster.
 */

/** A server that records what it receives; `reply` decides what it sends back (default: echo). */
interface TestServer {
  port: number;
  /** Accepted sockets, in order. */
  sockets: Socket[];
  /** Each received chunk, as the reader saw it. */
  chunks: Buffer[];
  received(): Buffer;
  close(): Promise<void>;
}

async function startServer(
  t: TestContext,
  onSocket: (socket: Socket, server: TestServer) => void = (socket) => socket.pipe(socket),
): Promise<TestServer> {
  const srv: Server = createServer();
  const state: TestServer = {
    port: 0,
    sockets: [],
    chunks: [],
    received: () => Buffer.concat(state.chunks),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of state.sockets) s.destroy();
        srv.close(() => resolve());
      }),
  };
  srv.on('connection', (socket) => {
    socket.on('error', () => {});
    state.sockets.push(socket);
    socket.on('data', (chunk: Buffer) => state.chunks.push(chunk));
    onSocket(socket, state);
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  state.port = (srv.address() as { port: number }).port;
  t.after(() => state.close());
  return state;
}

async function startProxy(
  t: TestContext,
  port: number,
  options: Partial<FaultProxyOptions> = {},
): Promise<FaultProxy> {
  const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port }, ...options });
  t.after(() => proxy.close());
  return proxy;
}

/** A connected client that records everything that happens to it. */
interface TestClient {
  socket: Socket;
  data(): Buffer;
  ended: boolean;
  closed: boolean;
  error: NodeJS.ErrnoException | undefined;
}

async function connectClient(t: TestContext, port: number): Promise<TestClient> {
  const socket = connect({ host: '127.0.0.1', port, noDelay: true });
  const chunks: Buffer[] = [];
  const client: TestClient = {
    socket,
    data: () => Buffer.concat(chunks),
    ended: false,
    closed: false,
    error: undefined,
  };
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('end', () => (client.ended = true));
  socket.on('close', () => (client.closed = true));
  socket.on('error', (err) => (client.error = err));
  t.after(() => socket.destroy());
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return client;
}

async function waitFor(what: string, condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** mulberry32: a tiny seeded PRNG, so jitter is the same on every run. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let r = Math.imul(a ^ (a >>> 15), a | 1);
    r ^= r + Math.imul(r ^ (r >>> 7), r | 61);
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

function pattern(size: number): Buffer {
  const buf = Buffer.alloc(size);
  for (let i = 0; i < size; i++) buf[i] = i % 251;
  return buf;
}

test('forwards both ways, passes FIN on, and counts bytes and connections', async (t) => {
  const server = await startServer(t);
  const proxy = await startProxy(t, server.port, { name: 'gw-a' });
  assert.equal(proxy.url, `127.0.0.1:${proxy.port}`);
  const client = await connectClient(t, proxy.port);
  client.socket.write('hello');
  await waitFor('echo', () => client.data().toString() === 'hello');
  assert.equal(proxy.connectionCount, 1);

  client.socket.end();
  await waitFor('FIN back from the echo server', () => client.ended);
  await waitFor('connection gone', () => proxy.connectionCount === 0);
  const stats = proxy.stats();
  assert.equal(stats.bytesUp, 5);
  assert.equal(stats.bytesDown, 5);
  assert.equal(stats.connectionsAccepted, 1);
  assert.equal(stats.resets, 0);
});

test('latency delays each direction; jitter never reorders bytes', async (t) => {
  const server = await startServer(t);
  const proxy = await startProxy(t, server.port, { random: seeded(42) });
  const client = await connectClient(t, proxy.port);

  proxy.setFaults({ latencyMs: 100 });
  let start = performance.now();
  client.socket.write('ping');
  await waitFor('echo', () => client.data().length === 4);
  assert.ok(performance.now() - start >= 200, 'round trip is at least 100 ms each way');

  proxy.setFaults({ latencyMs: 100 }, 'down');
  start = performance.now();
  client.socket.write('pong');
  await waitFor('echo', () => client.data().length === 8);
  assert.ok(performance.now() - start >= 100, 'down only: at least 100 ms');

  proxy.setFaults({ latencyMs: 1, jitterMs: 30 });
  const sent: string[] = [];
  for (let i = 0; i < 200; i++) {
    sent.push(`<${i}>`);
    client.socket.write(`<${i}>`);
    if (i % 20 === 0) await sleep(2); // separate chunks, each with its own jitter
  }
  const expected = 'pingpong' + sent.join('');
  await waitFor('all jittered bytes', () => client.data().length === Buffer.byteLength(expected));
  assert.equal(client.data().toString(), expected);
});

test('sliceBytes delivers a chunk as several writes of at most N bytes, in order', async (t) => {
  const server = await startServer(t, () => {}); // records, never replies
  const proxy = await startProxy(t, server.port);
  proxy.setFaults({ sliceBytes: 100 }, 'up');
  const client = await connectClient(t, proxy.port);
  // first let the target accept and start reading: a reader that starts late finds
  // several slices waiting and reads them as one
  client.socket.write('>');
  await waitFor('target reading', () => server.chunks.length === 1);
  server.chunks.length = 0;
  const payload = pattern(1000);
  client.socket.write(payload);
  await waitFor('all bytes', () => server.received().length === payload.length);
  assert.ok(server.chunks.length >= 3, `expected several chunks, got ${server.chunks.length}`);
  for (const chunk of server.chunks) assert.ok(chunk.length <= 100, `chunk of ${chunk.length} bytes`);
  assert.deepEqual(server.received(), payload);
});

test('bandwidth: 200 KB at 100 KB/s takes at least ~1.5 s', async (t) => {
  const server = await startServer(t, () => {});
  const proxy = await startProxy(t, server.port);
  proxy.setFaults({ bandwidthBytesPerSec: 100_000 }, 'up');
  const client = await connectClient(t, proxy.port);
  const payload = pattern(200_000);
  const start = performance.now();
  client.socket.write(payload);
  await waitFor('all bytes', () => server.received().length === payload.length, 10_000);
  const elapsed = performance.now() - start;
  assert.ok(elapsed >= 1500, `took only ${Math.round(elapsed)} ms`);
  assert.deepEqual(server.received(), payload);
  assert.equal(proxy.stats().bytesUp, payload.length);
});

test('blackhole: nothing crosses, nothing closes; heal forwards new data and held FINs', async (t) => {
  const server = await startServer(t, (socket) => {
    socket.on('data', (chunk) => socket.write(chunk));
    socket.on('end', () => socket.end());
  });
  const proxy = await startProxy(t, server.port);
  const client = await connectClient(t, proxy.port);
  client.socket.write('a');
  await waitFor('echo', () => client.data().toString() === 'a');

  proxy.blackhole();
  client.socket.write('lost');
  const late = await connectClient(t, proxy.port); // accepted, and blackholed too
  late.socket.write('also lost');
  await sleep(150);
  client.socket.end(); // a FIN must not cross either
  await sleep(150);
  assert.equal(server.received().toString(), 'a');
  assert.equal(client.data().toString(), 'a');
  for (const c of [client, late]) assert.ok(!c.ended && !c.closed && !c.error, 'client side stays open');
  assert.ok(
    server.sockets.every((s) => !s.readableEnded && !s.destroyed),
    'target side stays open',
  );
  assert.equal(proxy.connectionCount, 2);

  proxy.heal();
  late.socket.write('b');
  await waitFor('echo after heal', () => late.data().toString() === 'b');
  await waitFor('held FIN delivered, and the echo server FIN back', () => client.ended);
  assert.equal(server.received().toString(), 'ab');
  assert.ok(proxy.stats().droppedBytes >= 'lostalso lost'.length);
});

test("blackhole('stall') holds data and delivers it after heal", async (t) => {
  const server = await startServer(t);
  const proxy = await startProxy(t, server.port);
  const client = await connectClient(t, proxy.port);
  proxy.blackhole('stall');
  client.socket.write('held');
  await sleep(150);
  assert.equal(client.data().length, 0);
  assert.ok(!client.closed);
  proxy.heal();
  await waitFor('late echo', () => client.data().toString() === 'held');
});

test('resetAll: both sides see a reset', async (t) => {
  const server = await startServer(t);
  const proxy = await startProxy(t, server.port);
  const client = await connectClient(t, proxy.port);
  client.socket.write('x');
  await waitFor('echo', () => client.data().length === 1);
  let serverError: NodeJS.ErrnoException | undefined;
  server.sockets[0]!.on('error', (err) => (serverError = err));

  proxy.resetAll();
  await waitFor('client closed', () => client.closed);
  assert.equal(client.error?.code, 'ECONNRESET');
  await waitFor('target side closed', () => server.sockets[0]!.destroyed);
  assert.equal(serverError?.code, 'ECONNRESET');
  assert.equal(proxy.stats().resets, 2);
  await waitFor('connection gone', () => proxy.connectionCount === 0);
});

test('an RST from the target is passed on as an RST', async (t) => {
  const server = await startServer(t, (socket) => socket.on('data', () => socket.resetAndDestroy()));
  const proxy = await startProxy(t, server.port);
  const client = await connectClient(t, proxy.port);
  client.socket.write('x');
  await waitFor('client closed', () => client.closed);
  assert.equal(client.error?.code, 'ECONNRESET');
});

test('refuse: new connections are reset while on, proxied again when off', async (t) => {
  const server = await startServer(t);
  const proxy = await startProxy(t, server.port);
  proxy.refuse(true);
  // the handshake completes, then the RST comes: during connect() or just after it
  const refused = connect({ host: '127.0.0.1', port: proxy.port });
  let received = 0;
  refused.on('data', (d: Buffer) => (received += d.length));
  refused.on('connect', () => refused.write('x'));
  const error = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    let seen: NodeJS.ErrnoException | undefined;
    refused.on('error', (err) => (seen = err));
    refused.on('close', () => resolve(seen));
  });
  assert.equal(error?.code, 'ECONNRESET');
  assert.equal(received, 0);
  assert.equal(server.sockets.length, 0, 'the target never saw it');

  proxy.refuse(false);
  const client = await connectClient(t, proxy.port);
  client.socket.write('y');
  await waitFor('echo', () => client.data().toString() === 'y');
  assert.equal(proxy.stats().connectionsRefused, 1);
});

test('refuseFrom: connections from the listed source addresses are reset and refused, the rest pass', async (t) => {
  const server = await startServer(t);
  const proxy = await startProxy(t, server.port);
  /** A connection from `localAddress` that echoes one byte; resolves how it ended. */
  const from = async (localAddress: string): Promise<{ socket: Socket; echoed: Promise<boolean> }> => {
    const socket = connect({ host: '127.0.0.1', port: proxy.port, localAddress, noDelay: true });
    socket.on('error', () => {});
    t.after(() => socket.destroy());
    const echoed = new Promise<boolean>((resolve) => {
      socket.once('data', () => resolve(true));
      socket.once('close', () => resolve(false));
    });
    socket.once('connect', () => socket.write('x'));
    return { socket, echoed };
  };
  const peer = await from('127.0.0.101');
  const other = await from('127.0.0.102');
  assert.equal(await peer.echoed, true);
  assert.equal(await other.echoed, true);

  proxy.refuseFrom(['127.0.0.101']);
  await waitFor('the open connection from .101 reset', () => peer.socket.destroyed);
  assert.equal(other.socket.destroyed, false, 'the one from .102 stays open');
  other.socket.write('y');
  await waitFor('.102 still forwarded', () => server.received().toString() === 'xxy');
  assert.equal(await (await from('127.0.0.101')).echoed, false, 'a new one from .101 is refused');
  assert.equal(await (await from('127.0.0.102')).echoed, true);

  proxy.refuseFrom([]);
  assert.equal(await (await from('127.0.0.101')).echoed, true, 'let in again');
  assert.equal(proxy.stats().connectionsRefused, 1);
});

test('an upstream connect failure resets the client', async (t) => {
  const gone = await startServer(t);
  await gone.close(); // a port nobody listens on
  const proxy = await startProxy(t, gone.port);
  const client = await connectClient(t, proxy.port);
  await waitFor('client closed', () => client.closed);
  assert.equal(client.error?.code, 'ECONNRESET');
  assert.equal(proxy.stats().connectFailures, 1);
});

test('retarget: new connections go to the new target, open ones stay', async (t) => {
  const tagged = (tag: string) => (socket: Socket) => socket.on('data', (d) => socket.write(tag + String(d)));
  const a = await startServer(t, tagged('A:'));
  const b = await startServer(t, tagged('B:'));
  const proxy = await startProxy(t, a.port);
  const first = await connectClient(t, proxy.port);
  first.socket.write('1');
  await waitFor('reply from A', () => first.data().toString() === 'A:1');

  proxy.retarget({ host: '127.0.0.1', port: b.port });
  assert.equal(proxy.target.port, b.port);
  const second = await connectClient(t, proxy.port);
  second.socket.write('2');
  first.socket.write('3');
  await waitFor('reply from B', () => second.data().toString() === 'B:2');
  await waitFor('first still on A', () => first.data().toString() === 'A:1A:3');
});

test('closeAll({ slowMs }): FIN to the client first, to the target slowMs later', async (t) => {
  const server = await startServer(t, () => {});
  const proxy = await startProxy(t, server.port);
  const client = await connectClient(t, proxy.port);
  client.socket.write('x');
  await waitFor('connected through', () => server.sockets.length === 1);
  let clientEndAt = 0;
  let targetEndAt = 0;
  client.socket.on('end', () => (clientEndAt = performance.now()));
  server.sockets[0]!.on('end', () => (targetEndAt = performance.now()));

  const start = performance.now();
  await proxy.closeAll({ slowMs: 200 });
  await waitFor('both ends', () => clientEndAt > 0 && targetEndAt > 0);
  assert.ok(clientEndAt < targetEndAt, 'client side first');
  // a few ms of slack: Node timers may fire marginally early against performance.now()
  assert.ok(targetEndAt - start >= 195, `target FIN after ${Math.round(targetEndAt - start)} ms`);
});

test('backpressure: a receiver that never reads bounds the proxy queue', async (t) => {
  const cap = 256 * 1024;
  const server = await startServer(t, (socket) => socket.pause()); // never reads
  const proxy = await startProxy(t, server.port, { maxQueuedBytes: cap });
  const client = await connectClient(t, proxy.port);
  const chunk = Buffer.alloc(64 * 1024, 7);

  // write as fast as the sender is allowed to until it is held back for a while
  const deadline = performance.now() + 5000;
  let blocked = false;
  while (!blocked && performance.now() < deadline) {
    if (client.socket.write(chunk)) continue;
    const drained = new Promise((resolve) => client.socket.once('drain', () => resolve(true)));
    blocked = !(await Promise.race([drained, sleep(300).then(() => false)]));
  }
  assert.ok(blocked, 'the sender was held back');
  const stats = proxy.stats();
  // pausing happens after the chunk that crossed the cap, so allow one read's worth
  assert.ok(stats.peakQueuedBytes <= cap + 64 * 1024, `peak queue ${stats.peakQueuedBytes}`);
  assert.ok(stats.queuedBytesUp <= cap + 64 * 1024);
  assert.ok(stats.peakQueuedBytes > cap / 2, 'the queue did fill: backpressure came from the proxy');
});

test('a real redis-server answers PING through the proxy, sliced and delayed', async (t) => {
  // redis-server is a test dependency (.ci/run installs it): no server is a failure.
  const redis = await RedisServer.start({ aof: false });
  t.after(() => redis.stop());
  const proxy = await startProxy(t, redis.port, { name: 'redis' });
  proxy.setFaults({ latencyMs: 20, sliceBytes: 3 });
  const client = await RespClient.open(proxy.port);
  t.after(() => client.close());
  assert.equal(await client.command('PING'), 'PONG');
  assert.equal(await client.command('SET', 'k', 'a value longer than a slice'), 'OK');
  assert.equal(await client.command('GET', 'k'), 'a value longer than a slice');
});
