/**
 * Test entry point: `npm test [-- [--node-test-flag ...] [path ...]]`.
 *
 * Node 20's `node --test` does not expand glob patterns (that arrived in Node 21), so this
 * script collects every `*.test.ts` under the given roots (default: `test/`) recursively and
 * hands the explicit, sorted list to the built-in runner with tsx as the loader. The runner's
 * own reporter output (including its closing `# pass N` / `# fail N` summary) is passed through
 * untouched and its exit code becomes ours.
 *
 *   npm test                                  # everything under test/
 *   npm test -- test/unit                     # one folder
 *   npm test -- --test-name-pattern=resume    # extra flags go to `node --test`
 *
 * Environment: TEST_CONCURRENCY (default 2), TEST_TIMEOUT_MS (per-test timeout, default 120000).
 */
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const TEST_SUFFIX = '.test.ts';
const SKIP_DIRS = new Set(['node_modules', 'dist', '.git']);

function collect(root: string, out: string[]): void {
  let stats;
  try {
    stats = statSync(root);
  } catch {
    throw new Error(`run-tests: no such file or directory: ${root}`);
  }
  if (stats.isFile()) {
    out.push(root);
    return;
  }
  for (const entry of readdirSync(root, { withFileTypes: true })) {
    const full = path.join(root, entry.name);
    if (entry.isDirectory()) {
      if (!SKIP_DIRS.has(entry.name)) collect(full, out);
    } else if (entry.isFile() && entry.name.endsWith(TEST_SUFFIX)) {
      out.push(full);
    }
  }
}

function positiveInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`run-tests: ${name} must be a positive integer`);
  return n;
}

const args = process.argv.slice(2);
const flags = args.filter((a) => a.startsWith('-'));
const roots = args.filter((a) => !a.startsWith('-'));

const files: string[] = [];
for (const root of roots.length > 0 ? roots : ['test']) collect(root, files);
const unique = [...new Set(files)].sort();

if (unique.length === 0) {
  console.error(`run-tests: no *${TEST_SUFFIX} files found under ${roots.join(', ') || 'test'}`);
  process.exit(1);
}

const nodeArgs = [
  '--test',
  `--test-concurrency=${positiveInt('TEST_CONCURRENCY', 2)}`,
  `--test-timeout=${positiveInt('TEST_TIMEOUT_MS', 120_000)}`,
  '--import',
  'tsx',
  ...flags,
  ...unique,
];

const child = spawn(process.execPath, nodeArgs, { stdio: 'inherit' });

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => child.kill(signal));
}

child.on('error', (err) => {
  console.error('run-tests: failed to start node --test:', err);
  process.exit(1);
});

child.on('exit', (code, signal) => {
  if (signal !== null) {
    console.error(`run-tests: node --test was killed by ${signal}`);
    process.exit(1);
  }
  process.exit(code ?? 1);
});
