import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * Binds port 0 on `host`, reads the port the OS picked, and releases it, so every worker
 * can listen on the same one (each worker binding port 0 itself would get a different
 * port). Another process could take the port in between: a worker then fails to start,
 * or, should it be a gateway sharing the port, the primary's check finds it once every
 * worker listens (`foreignListeners`). Either way the primary exits 1.
 */
export function pickFreePort(host: string): Promise<number> {
  return bindAndRelease(host, 0);
}

/**
 * Binds `host:port` with Node's own listener and releases it, resolving with the port
 * bound. Node sets SO_REUSEADDR but never SO_REUSEPORT on Linux (Node 20), so the bind
 * fails on any listener there, and a closed predecessor's TIME_WAIT connections do not
 * block it.
 */
function bindAndRelease(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (bound > 0 ? resolve(bound) : reject(new Error(`no free port on ${host}`))));
    });
  });
}

/**
 * Keeps two gateways off one port. uSockets sets SO_REUSEPORT on every listen socket
 * bound to a given port, so a second process of the same user started on a port a
 * gateway already listens on does not fail with "address in use": it joins, and the
 * kernel splits new connections between two nodes that may not even share a secret.
 * Two checks stop that:
 *
 * - before listening, `assertPortFree` binds the port without SO_REUSEPORT (Node's own
 *   listener), which any existing listener refuses;
 * - after listening, `foreignListeners` lists the listen sockets on the port (Linux's
 *   /proc) and names those no process of ours holds that could take our connections.
 *   This closes the gap between the probe and the real bind: two gateways started at
 *   the same moment both see each other, and both refuse (fail closed).
 */

export class PortInUseError extends Error {
  constructor(host: string, port: number, detail: string) {
    super(
      `PORT: ${host}:${port} is already in use (${detail}). Another process listens there; ` +
        'a second gateway on the same port would share it through SO_REUSEPORT and take part of its connections. ' +
        'Give each gateway its own port, run one with WORKERS, or set PORT_SHARING=allow for a deliberate handover.',
    );
    this.name = 'PortInUseError';
  }
}

/** Rejects with PortInUseError when something listens on `host:port` now. */
export async function assertPortFree(host: string, port: number): Promise<void> {
  try {
    await bindAndRelease(host, port);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE')
      throw new PortInUseError(host, port, 'EADDRINUSE');
    throw err;
  }
}

/**
 * Inodes of the listen sockets on `port` that none of `pids` holds and that can take
 * connections meant for one of theirs: same address family, and the same address or a
 * wildcard on either side. (A listener on ::1 does not take 127.0.0.1's connections; one on
 * 127.0.0.1 does take them from 0.0.0.0, being the more specific match.) When `pids` hold
 * no listen socket on the port, every other one counts. `undefined` where /proc cannot
 * tell: not Linux, or a process of `pids` whose open files may not be read.
 */
export function foreignListeners(port: number, pids: readonly number[]): number[] | undefined {
  let listening: Listener[];
  try {
    listening = [...listeners('/proc/net/tcp', 4, port), ...listeners('/proc/net/tcp6', 6, port)];
  } catch {
    return undefined;
  }
  const held = new Set<number>();
  for (const pid of pids) {
    const inodes = socketInodes(pid);
    // A process of ours we may not look into: its sockets would all read as foreign.
    if (inodes === undefined) return undefined;
    for (const inode of inodes) held.add(inode);
  }
  const ours = listening.filter((l) => held.has(l.inode));
  return listening
    .filter((l) => !held.has(l.inode) && (ours.length === 0 || ours.some((o) => overlaps(o, l))))
    .map((l) => l.inode);
}

interface Listener {
  family: 4 | 6;
  /** As /proc shows it: hex, all zeros for the wildcard. */
  address: string;
  inode: number;
}

const LISTEN = '0A';

function overlaps(a: Listener, b: Listener): boolean {
  if (a.family !== b.family) return false;
  return a.address === b.address || /^0+$/.test(a.address) || /^0+$/.test(b.address);
}

/** The rows of /proc/net/tcp{,6} in state LISTEN on `port`. */
function listeners(file: string, family: 4 | 6, port: number): Listener[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    // No IPv6 in this kernel: nothing listens there.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && family === 6) return [];
    throw err;
  }
  const rows: Listener[] = [];
  for (const line of text.split('\n').slice(1)) {
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …
    const fields = line.trim().split(/\s+/);
    if (fields.length < 10 || fields[3] !== LISTEN) continue;
    const [address, hexPort] = fields[1]!.split(':') as [string, string];
    if (parseInt(hexPort, 16) !== port) continue;
    rows.push({ family, address, inode: Number(fields[9]) });
  }
  return rows;
}

/** Socket inodes among the open files of `pid`: none when it is gone, `undefined` when unreadable. */
function socketInodes(pid: number): number[] | undefined {
  const dir = `/proc/${pid}/fd`;
  let fds: string[];
  try {
    fds = readdirSync(dir);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? [] : undefined;
  }
  const inodes: number[] = [];
  for (const fd of fds) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`${dir}/${fd}`));
      if (match) inodes.push(Number(match[1]));
    } catch {
      // closed while we looked
    }
  }
  return inodes;
}
