import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * A free TCP port on 127.0.0.1 for a server that will be killed and restarted on the same
 * port (a gateway node, a redis-server). It is drawn below the kernel's ephemeral range:
 * a port the kernel hands out as the source port of outgoing connections can be taken by
 * any client socket in the moment between a kill and the restart, and the restart then
 * fails with "address in use".
 */
export async function freePort(): Promise<number> {
  const low = Math.min(ephemeralLow(), 32768);
  const floor = Math.max(1024, low - 12000);
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = floor + Math.floor(Math.random() * (low - floor));
    if (await canListen(port)) return port;
  }
  throw new Error(`no free port in [${floor}, ${low})`);
}

function ephemeralLow(): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    const n = Number(low);
    return Number.isInteger(n) && n > 2048 ? n : 32768;
  } catch {
    return 32768;
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}
