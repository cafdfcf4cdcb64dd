import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterEach, describe, it } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

/**
 * LISTEN_SOCKETS: the gateway opens several SO_REUSEPORT listen sockets on its port, so a
 * burst of connections that arrives while the event loop is busy queues in the kernel
 * instead of being dropped. Linux only: it reads /proc/net/tcp.
 */

/** The LISTEN sockets on 127.0.0.1:port, from /proc/net/tcp: each one's accept queue length. */
function listenQueues(port: number): number[] {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const queues: number[] = [];
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    // sl local rem st tx_queue:rx_queue …; a LISTEN socket (0A) shows its queue as rx_queue.
    if (f[1] === local && f[3] === '0A') queues.push(parseInt(f[4]!.split(':')[1]!, 16));
  }
  return queues;
}

/**
 * Opens `count` connections from a child process while this process, and with it the
 * gateway's event loop, is blocked in spawnSync: nothing is accepted meanwhile, as in a
 * long loop turn. Returns how many connected within 900 ms, before TCP would resend a
 * dropped SYN (1 s), and the listen queues, read before this process's loop runs again:
 * the connections the child closed on exit are still queued, unaccepted.
 */
function burst(port: number, count: number): { connected: number; queued: number[] } {
  const child = `
    const net = require('node:net');
    let connected = 0;
    for (let i = 0; i < ${count}; i++) {
      net.connect({ host: '127.0.0.1', port: ${port} }, () => ++connected === ${count} && done()).on('error', () => {});
    }
    const timer = setTimeout(done, 900);
    function done() {
      clearTimeout(timer);
      process.stdout.write(String(connected));
      process.exit(0);
    }
  `;
  const run = spawnSync(process.execPath, ['-e', child], { encoding: 'utf8', timeout: 20_000 });
  const queued = listenQueues(port);
  assert.equal(run.status, 0, run.stderr);
  return { connected: Number(run.stdout), queued };
}

describe('listen sockets', { skip: process.platform !== 'linux' && 'reads /proc/net/tcp' }, () => {
  let gw: TestGateway | undefined;
  afterEach(async () => {
    await gw?.stop();
    gw = undefined;
  });

  it('opens LISTEN_SOCKETS sockets on one port (port 0 too), and closes them all on shutdown', async () => {
    gw = await startTestGateway({ LISTEN_SOCKETS: '4' });
    const port = gw.gateway.port;
    assert.deepEqual(listenQueues(port), [0, 0, 0, 0]);
    assert.equal((await gw.http('GET', '/healthz')).status, 200);
    await gw.stop();
    gw = undefined;
    assert.deepEqual(listenQueues(port), []);
  });

  it('a burst larger than one backlog, while the loop is busy, is queued, not dropped', async () => {
    gw = await startTestGateway({ LISTEN_SOCKETS: '4' });
    const { connected, queued } = burst(gw.gateway.port, 1200);
    assert.equal(connected, 1200);
    assert.equal(queued.length, 4);
    assert.equal(
      queued.reduce((a, b) => a + b, 0),
      1200,
    );
    // The gateway accepts them once the loop runs again, and goes on serving.
    assert.equal((await gw.http('GET', '/healthz')).status, 200);
  });

  it('control: with one listen socket the same burst overflows its queue', async () => {
    gw = await startTestGateway({ LISTEN_SOCKETS: '1' });
    const { connected, queued } = burst(gw.gateway.port, 1200);
    // Linux lets backlog + 1 handshakes wait; the SYNs beyond are dropped.
    assert.deepEqual(queued, [513]);
    assert.equal(connected, 513);
    assert.equal((await gw.http('GET', '/healthz')).status, 200);
  });
});
