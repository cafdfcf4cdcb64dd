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
 * A full run (no paths given) then runs test/protocol again with TEST_ENGINE=redis, so
 * the protocol suite holds on both engines, and ends with one `tests: N passed, N failed`.
 *
 * Environment: TEST_CONCURRENCY (default 2), TEST_TIMEOUT_MS (per-test and per-file timeout, default 300000: a guard
 * against hangs, not a performance bound; node:test applies it to each file as a whole too).
 * TEST_ENGINES=memory skips the redis pass.
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

/**
 * One `node --test` run. Output passes through untouched; its `pass`/`fail` summary
 * lines (TAP `# pass N` or spec `ℹ pass N`) are counted so several runs can be totalled.
 */
function run(
  testFiles: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; pass: number; fail: number }> {
  const nodeArgs = [
    '--test',
    `--test-concurrency=${positiveInt('TEST_CONCURRENCY', 2)}`,
    `--test-timeout=${positiveInt('TEST_TIMEOUT_MS', 300_000)}`,
    '--import',
    'tsx',
    ...flags,
    ...testFiles,
  ];
  const child = spawn(process.execPath, nodeArgs, { stdio: ['ignore', 'pipe', 'inherit'], env });
  current = child;
  const counts = { pass: 0, fail: 0 };
  let tail = '';
  child.stdout.on('data', (chunk: Buffer) => {
    process.stdout.write(chunk);
    const lines = (tail + chunk.toString()).split('\n');
    tail = lines.pop() ?? '';
    for (const line of lines) {
      const m = /^(?:# |\u2139 )(pass|fail|cancelled) (\d+)\s*$/.exec(line);
      // A cancelled test (a file that timed out) is a failure.
      if (m) counts[m[1] === 'pass' ? 'pass' : 'fail'] += Number(m[2]);
    }
  });
  return new Promise((resolve) => {
    child.on('error', (err) => {
      console.error('run-tests: failed to start node --test:', err);
      resolve({ code: 1, ...counts });
    });
    child.on('exit', (code, signal) => {
      if (signal !== null) console.error(`run-tests: node --test was killed by ${signal}`);
      resolve({ code: signal !== null ? 1 : (code ?? 1), ...counts });
    });
  });
}

let current: ReturnType<typeof spawn> | undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => current?.kill(signal));
}

// The default run also holds the protocol suite to the redis engine (TEST_ENGINE=redis
// makes every test gateway use a private redis-server). TEST_ENGINES=memory skips it.
const runs: { files: string[]; env: NodeJS.ProcessEnv }[] = [{ files: unique, env: process.env }];
const protocolFiles = unique.filter((f) => f.split(path.sep).includes('protocol'));
if (roots.length === 0 && process.env.TEST_ENGINES !== 'memory' && protocolFiles.length > 0) {
  runs.push({ files: protocolFiles, env: { ...process.env, TEST_ENGINE: 'redis' } });
}

let pass = 0;
let fail = 0;
let exitCode = 0;
for (const [i, r] of runs.entries()) {
  if (i > 0)
    console.log(`\n# run-tests: the protocol suite again, on the redis engine (${r.files.length} files)`);
  const result = await run(r.files, r.env);
  pass += result.pass;
  fail += result.fail;
  if (result.code !== 0) exitCode = result.code;
}
if (runs.length > 1) console.log(`\ntests: ${pass} passed, ${fail} failed`);
process.exit(exitCode);
