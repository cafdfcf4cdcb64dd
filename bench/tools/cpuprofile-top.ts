/**
 * `npx tsx bench/tools/cpuprofile-top.ts FILE.cpuprofile [N]`: the top N functions of a V8
 * CPU profile (node --cpu-prof) by self time and by total (inclusive) time, with their
 * source location — enough to see where a benchmark's server CPU goes without a browser.
 *
 * `--last SECONDS` keeps only the samples of the profile's final SECONDS: a bench run's
 * measurement window, without its startup and connect phases. `--skip-end SECONDS` drops
 * the final SECONDS (a run's teardown, when its clients close) before `--last` counts back.
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const args = process.argv.slice(2);
const lastAt = args.indexOf('--last');
const lastSeconds = lastAt >= 0 ? Number(args.splice(lastAt, 2)[1]) : undefined;
const skipAt = args.indexOf('--skip-end');
const skipSeconds = skipAt >= 0 ? Number(args.splice(skipAt, 2)[1]) : 0;
const [file, nArg] = args;
if (!file || (lastSeconds !== undefined && !(lastSeconds > 0)) || !(skipSeconds >= 0)) {
  console.error('usage: cpuprofile-top FILE.cpuprofile [N] [--last SECONDS] [--skip-end SECONDS]');
  process.exit(2);
}
const top = Number(nArg ?? 30);
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

// Each sample's time from the profile's start; with --last, the earlier ones are skipped.
const sampledUs = profile.timeDeltas.reduce((a, b) => a + b, 0);
const untilUs = sampledUs - skipSeconds * 1e6;
const fromUs = lastSeconds === undefined ? 0 : untilUs - lastSeconds * 1e6;
const selfUs = new Map<number, number>();
let atUs = 0;
profile.samples.forEach((id, i) => {
  const delta = profile.timeDeltas[i] ?? 0;
  atUs += delta;
  if (atUs >= fromUs && atUs <= untilUs) selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
});
const total = [...selfUs.values()].reduce((a, b) => a + b, 0);

const key = (n: Node): string => {
  const url = n.callFrame.url.replace(/^file:\/\//, '').replace(process.cwd() + '/', '');
  return `${n.callFrame.functionName || '(anonymous)'} ${url ? `${url}:${n.callFrame.lineNumber + 1}` : ''}`.trim();
};

const self = new Map<string, number>();
const inclusive = new Map<string, number>();
for (const [id, us] of selfUs) {
  const node = byId.get(id)!;
  self.set(key(node), (self.get(key(node)) ?? 0) + us);
  // every distinct function on the stack gets the sample once
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const k = key(byId.get(cur)!);
    if (seen.has(k)) continue;
    seen.add(k);
    inclusive.set(k, (inclusive.get(k) ?? 0) + us);
  }
}

const print = (title: string, m: Map<string, number>): void => {
  console.log(`\n${title} (of ${(total / 1000).toFixed(0)} ms sampled)`);
  for (const [k, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(
      `${((us / total) * 100).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`,
    );
  }
};
print('self time', self);
print('total time', inclusive);
