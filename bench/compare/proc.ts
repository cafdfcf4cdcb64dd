/**
 * /proc readings for bench:compare: a process's user and system CPU separately (on
 * loopback the kernel's send path is charged to the sender, so user CPU is reported
 * beside the total), one core's busy share, and the kernel's listen-queue overflows.
 */
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { ticksPerSecond as ticks } from '../lib/proc.ts';

export interface ProcCpu {
  user: number;
  system: number;
}

/** utime and stime of `pid` in seconds; NaN when the process is gone. */
export function procCpu(pid: number): ProcCpu {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(fields[11]) / ticks(), system: Number(fields[12]) / ticks() };
  } catch {
    return { user: Number.NaN, system: Number.NaN };
  }
}

/** CPU used by a set of processes between `start()` and `stop()`, in seconds. */
export class CpuSpan {
  readonly #pids: number[];
  readonly #from: ProcCpu[];
  readonly #at = performance.now();

  constructor(pids: number[]) {
    this.#pids = pids;
    this.#from = pids.map(procCpu);
  }

  stop(): { user: number; system: number; total: number; wallS: number; percent: number } {
    let user = 0;
    let system = 0;
    this.#pids.forEach((pid, i) => {
      const now = procCpu(pid);
      user += now.user - this.#from[i]!.user;
      system += now.system - this.#from[i]!.system;
    });
    const wallS = (performance.now() - this.#at) / 1000;
    return { user, system, total: user + system, wallS, percent: ((user + system) / wallS) * 100 };
  }
}

/** Busy and total ticks of one core (`cpuN` line of /proc/stat). */
export function coreTicks(core: number): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`cpu${core} `));
  if (!line) return { busy: Number.NaN, total: Number.NaN };
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = line
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  return {
    busy: user + nice + system + irq + softirq + steal,
    total: user + nice + system + idle + iowait + irq + softirq + steal,
  };
}

export function corePercent(
  from: { busy: number; total: number },
  to: { busy: number; total: number },
): number {
  const total = to.total - from.total;
  return total > 0 ? ((to.busy - from.busy) / total) * 100 : Number.NaN;
}

/** TcpExt ListenOverflows and ListenDrops (machine-wide counters). */
export function listenOverflows(): { overflows: number; drops: number } {
  try {
    const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n');
    for (let i = 0; i + 1 < lines.length; i += 2) {
      if (!lines[i]!.startsWith('TcpExt:')) continue;
      const keys = lines[i]!.split(/\s+/);
      const values = lines[i + 1]!.split(/\s+/).map(Number);
      const get = (k: string): number => values[keys.indexOf(k)] ?? Number.NaN;
      return { overflows: get('ListenOverflows'), drops: get('ListenDrops') };
    }
  } catch {
    /* not Linux */
  }
  return { overflows: Number.NaN, drops: Number.NaN };
}

/** VmRSS of `pid` in bytes. */
export function rssBytes(pid: number): number {
  return statusBytes(pid, 'VmRSS');
}

/**
 * RssAnon of `pid` in bytes: private memory only. VmRSS also counts file-backed pages
 * (the node binary's code, faulted in the first time a path such as JWT verification
 * runs), which are shared and bounded, not a cost per connection.
 */
export function rssAnonBytes(pid: number): number {
  return statusBytes(pid, 'RssAnon');
}

function statusBytes(pid: number, field: string): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** Pins `pid` and all its threads to `cores` (e.g. "0"). */
export function pin(pid: number, cores: string): void {
  execFileSync('taskset', ['-a', '-pc', cores, String(pid)], { stdio: 'ignore' });
}
