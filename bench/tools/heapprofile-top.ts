/**
 * `npx tsx bench/tools/heapprofile-top.ts FILE.heapprofile [N] [DEPTH]`: where a process
 * allocates, from a V8 sampling heap profile (bench:compare's BENCH_ALLOC_PROF). Prints the
 * top N allocating functions by bytes, then the top N call paths (DEPTH frames, innermost
 * first), so "who calls the allocator" is visible without a browser.
 */
import { readFileSync } from 'node:fs';

interface Node {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: Node[];
}

const [file, nArg, depthArg] = process.argv.slice(2);
if (!file) {
  console.error('usage: heapprofile-top FILE.heapprofile [N] [DEPTH]');
  process.exit(2);
}
const top = Number(nArg ?? 25);
const depth = Number(depthArg ?? 4);
const root = (JSON.parse(readFileSync(file, 'utf8')) as { head: Node }).head;

const name = (n: Node): string => {
  const url = n.callFrame.url.replace(/^file:\/\//, '').replace(process.cwd() + '/', '');
  const short = url.split('/').slice(-2).join('/');
  return `${n.callFrame.functionName || '(anonymous)'}${short ? ` ${short}` : ''}`;
};

const self = new Map<string, number>();
const paths = new Map<string, number>();
let total = 0;
const walk = (n: Node, stack: string[]): void => {
  const here = [name(n), ...stack];
  if (n.selfSize > 0) {
    total += n.selfSize;
    self.set(here[0]!, (self.get(here[0]!) ?? 0) + n.selfSize);
    const path = here.slice(0, depth).join(' ← ');
    paths.set(path, (paths.get(path) ?? 0) + n.selfSize);
  }
  for (const c of n.children) walk(c, here);
};
walk(root, []);

const print = (title: string, m: Map<string, number>): void => {
  console.log(`\n${title} (of ${(total / 2 ** 20).toFixed(0)} MiB sampled)`);
  for (const [k, bytes] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(
      `${((bytes / total) * 100).toFixed(1).padStart(5)}%  ${(bytes / 2 ** 20).toFixed(1).padStart(8)} MiB  ${k}`,
    );
  }
};
print('allocated by function', self);
print(`allocated by call path (${depth} frames, innermost first)`, paths);
