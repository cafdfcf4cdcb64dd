/** Linux /proc readings for the benchmark: a process's CPU time and RSS, and the machine. */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

let clockTicks: number | undefined;

/** Clock ticks per second (`getconf CLK_TCK`), the unit of /proc CPU times. */
export function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** utime + stime of `pid` in seconds; NaN when unreadable (not Linux, process gone). */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) may contain spaces: fields after the last ')'
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond();
  } catch {
    return Number.NaN;
  }
}

/** Resident set size (`VmRSS`) and its peak (`VmHWM`) of `pid`, in bytes. */
export function memory(pid: number): { rss: number; hwm: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string): number => {
      const match = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status);
      return match ? Number(match[1]) * 1024 : Number.NaN;
    };
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return { rss: Number.NaN, hwm: Number.NaN };
  }
}

/** CPU share of one core used by `pid` between two readings. */
export class CpuMeter {
  readonly #pid: number;
  #cpu: number;
  #at: number;

  constructor(pid: number) {
    this.#pid = pid;
    this.#cpu = cpuSeconds(pid);
    this.#at = performance.now();
  }

  /** Percent of one core since construction or the last reset. */
  percent(): number {
    const wall = (performance.now() - this.#at) / 1000;
    return wall > 0 ? ((cpuSeconds(this.#pid) - this.#cpu) / wall) * 100 : Number.NaN;
  }

  reset(): void {
    this.#cpu = cpuSeconds(this.#pid);
    this.#at = performance.now();
  }
}

export interface MachineInfo {
  nproc: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  kernel: string;
  openFilesLimit: string;
}

export function machineInfo(): MachineInfo {
  let cpuModel = os.cpus()[0]?.model ?? 'unknown';
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (match) cpuModel = match[1]!.trim();
  } catch {
    /* keep os.cpus() */
  }
  let openFilesLimit = 'unknown';
  try {
    const match = /^Max open files\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (match) openFilesLimit = match[1]!;
  } catch {
    /* not Linux */
  }
  return {
    nproc: os.availableParallelism(),
    cpuModel,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    kernel: os.release(),
    openFilesLimit,
  };
}

/** Machine-wide CPU counters from /proc/stat (all cores), in clock ticks. */
export interface MachineCpu {
  busy: number;
  steal: number;
  total: number;
}

export function machineCpu(): MachineCpu {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const [, ...values] = line.trim().split(/\s+/);
    const n = values.map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = n;
    const total = user + nice + system + idle + iowait + irq + softirq + steal;
    return { busy: user + nice + system + irq + softirq, steal, total };
  } catch {
    return { busy: Number.NaN, steal: Number.NaN, total: Number.NaN };
  }
}

/** Busy and steal share of the whole machine between two readings, in percent of all cores. */
export function machineCpuPercent(from: MachineCpu, to: MachineCpu): { busy: number; steal: number } {
  const total = to.total - from.total;
  if (!(total > 0)) return { busy: Number.NaN, steal: Number.NaN };
  return { busy: ((to.busy - from.busy) / total) * 100, steal: ((to.steal - from.steal) / total) * 100 };
}

/**
 * Which gateway code was measured: the git HEAD, whether src/ has uncommitted changes, and
 * a digest of every file under src/ (so two runs on the same working tree can be matched).
 */
export function codeVersion(repoRoot: string): { head: string; srcDirty: boolean; srcDigest: string } {
  const git = (...args: string[]): string => {
    try {
      return execFileSync('git', args, {
        cwd: repoRoot,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      }).trim();
    } catch {
      return '';
    }
  };
  const hash = createHash('sha256');
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) =>
      a.name < b.name ? -1 : 1,
    )) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile())
        hash.update(path.relative(repoRoot, full)).update('\0').update(readFileSync(full));
    }
  };
  try {
    walk(path.join(repoRoot, 'src'));
  } catch {
    /* no src/ */
  }
  return {
    head: git('rev-parse', '--short', 'HEAD') || 'unknown',
    srcDirty: git('status', '--porcelain', '--', 'src') !== '',
    srcDigest: hash.digest('hex').slice(0, 12),
  };
}
