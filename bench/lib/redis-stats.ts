/** Redis's own per-command counters (`INFO commandstats`), for the bench and its tools. */

export type CommandStats = Record<string, { calls: number; usec: number }>;

/** `cmdstat_xadd:calls=3,usec=10,…` lines, by command (`config|resetstat` for subcommands). */
export function parseCommandStats(info: string): CommandStats {
  const stats: CommandStats = {};
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
    stats[m[1]!] = { calls: Number(m[2]), usec: Number(m[3]) };
  }
  return stats;
}

/** What changed from `from` to `to`; commands that did not run in between are left out. */
export function commandStatsDelta(from: CommandStats, to: CommandStats): CommandStats {
  const delta: CommandStats = {};
  for (const [name, now] of Object.entries(to)) {
    const calls = now.calls - (from[name]?.calls ?? 0);
    if (calls > 0) delta[name] = { calls, usec: now.usec - (from[name]?.usec ?? 0) };
  }
  return delta;
}
