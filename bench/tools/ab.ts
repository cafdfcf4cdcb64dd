/**
 * A/B of two builds of a per-event cost tool (pipeline-cost, engine-cost) on a noisy VM:
 * runs them alternately, pair after pair, and reports the median of each pair's ratio
 * B/A. These VMs change speed by half within minutes, which swamps a 10 % change between
 * two runs made far apart; a pair's two runs are seconds apart, so their ratio mostly
 * cancels it.
 *
 *   npx tsx bench/tools/ab.ts A.mjs B.mjs [--pairs 8] -- TOOL ARGS…
 *
 * A.mjs and B.mjs are bundles of the same tool from the two versions of the code, e.g.
 *   git stash && npx esbuild bench/tools/pipeline-cost.ts --bundle --platform=node \
 *     --format=esm --packages=external --outfile=/tmp/ab/A.mjs && git stash pop
 * (with node_modules reachable from /tmp/ab). Each run's first line matching
 * `median <number> µs` is its value. Which build goes first alternates from pair to pair.
 */
import { execFileSync } from 'node:child_process';
import { dirname } from 'node:path';

const argv = process.argv.slice(2);
const dashes = argv.indexOf('--');
const own = dashes >= 0 ? argv.slice(0, dashes) : argv;
const toolArgs = dashes >= 0 ? argv.slice(dashes + 1) : [];
const pairsAt = own.indexOf('--pairs');
const pairs = pairsAt >= 0 ? Number(own.splice(pairsAt, 2)[1]) : 8;
const [a, b] = own;
if (!a || !b || !Number.isInteger(pairs) || pairs < 1) {
  console.error('usage: ab.ts A.mjs B.mjs [--pairs N] -- TOOL ARGS');
  process.exit(2);
}

function run(bundle: string): number {
  const out = execFileSync(process.execPath, [bundle, ...toolArgs], {
    cwd: dirname(bundle),
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const match = /median ([\d.]+) µs/.exec(out);
  if (!match) throw new Error(`no "median … µs" in the output of ${bundle}:\n${out}`);
  return Number(match[1]);
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((x, y) => x - y);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

const ratios: number[] = [];
const as: number[] = [];
const bs: number[] = [];
for (let i = 0; i < pairs; i++) {
  const first = i % 2 === 0 ? 'A' : 'B';
  const x = first === 'A' ? run(a) : run(b);
  const y = first === 'A' ? run(b) : run(a);
  const [va, vb] = first === 'A' ? [x, y] : [y, x];
  as.push(va);
  bs.push(vb);
  ratios.push(vb / va);
  console.log(`pair ${i + 1}: A ${va.toFixed(2)}  B ${vb.toFixed(2)}  B/A ${(vb / va).toFixed(3)}`);
}
const sorted = [...ratios].sort((x, y) => x - y);
console.log(
  `B/A median ${median(ratios).toFixed(3)} (range ${sorted[0]!.toFixed(3)}–${sorted.at(-1)!.toFixed(3)}, ` +
    `${ratios.filter((r) => r < 1).length} of ${pairs} pairs below 1); A median ${median(as).toFixed(2)} µs, B ${median(bs).toFixed(2)} µs`,
);
