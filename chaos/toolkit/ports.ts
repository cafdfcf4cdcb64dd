import { mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

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
    if (claim(port) && (await canListen(port))) return port;
  }
  throw new Error(`no free port in [${floor}, ${low})`);
}

/**
 * Ports handed out, one file each, shared by every process of a test run. A free port is
 * not enough: while a killed server is down before its restart, another test process
 * could be handed the same port, and uSockets binds with SO_REUSEPORT, so both gateways
 * would then listen on it and the kernel would split the connections between them (a
 * client of one reaching the other, with a different secret: "invalid token"). A claim
 * expires after CLAIM_TTL_MS, longer than any test run.
 */
const CLAIMS_DIR =
  process.env['LIFEOS_PORT_CLAIMS'] ?? path.join(tmpdir(), `lifeos-ports-${process.getuid?.() ?? 0}`);
const CLAIM_TTL_MS = 60 * 60_000;

function claim(port: number): boolean {
  const file = path.join(CLAIMS_DIR, String(port));
  mkdirSync(CLAIMS_DIR, { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    try {
      if (Date.now() - statSync(file).mtimeMs < CLAIM_TTL_MS) return false;
      unlinkSync(file); // a stale claim of an earlier run
    } catch {
      // another process took or released it meanwhile: try the file once more
    }
  }
  return false;
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
