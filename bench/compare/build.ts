/**
 * The arm servers run from built JavaScript, as the gateway runs in production, not
 * through tsx: under tsx the gateway took 1.3 s from spawn to listening, transpiling ~100
 * modules (0.5 s from tsc's output, 0.2 s from the bundle), and M5's outage included that.
 * Every arm runs this way, with the same flags and no loader hook. The gateway arms run the
 * bundle that `npm run build` makes for the image (scripts/build-gateway.ts); the other
 * arms' scripts are compiled by tsc.
 *
 * One build per source digest (src/, the arm scripts, the tsconfigs, the bundler, the
 * lockfile), kept in `.bench-build/<digest>` at the repository root so node_modules
 * resolve as from the sources. Test files run concurrently and may each ask for it: each
 * builds into a private directory and renames it into place; the first rename wins and
 * the others discard theirs, so nobody ever sees a half-written build.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { bundleGateway } from '../../scripts/build-gateway.ts';
import { repoRoot } from '../lib/repo-root.ts';

/**
 * What the build is made from, relative to the repository root: src/, which the gateway's
 * bundle holds, and the arm scripts, which tsc compiles (tsconfig.bench.json includes
 * those alone: no arm imports src/).
 */
const SOURCES = ['src', 'bench/compare/arms'];
/** What else decides the output: the compiler options, the bundler, and the lockfile (the tools' versions, the bundled packages). */
const CONFIGS = ['tsconfig.json', 'tsconfig.bench.json', 'scripts/build-gateway.ts', 'package-lock.json'];
const BUILDS_DIR = path.join(repoRoot, '.bench-build');
/** Builds of other digests older than this are removed when a new one is made. */
const STALE_MS = 24 * 3600 * 1000;

export interface ArmsBuild {
  /** First 16 hex digits of the sources' SHA-256. */
  digest: string;
  dir: string;
  /** The compiled path of a source file, e.g. `bench/compare/arms/uws.ts` → `<dir>/bench/compare/arms/uws.js`. */
  js(source: string): string;
  /** The gateway's bundle entry, `<dir>/gateway/main.js`. */
  gateway: string;
}

let pending: Promise<ArmsBuild> | undefined;

/** The build of the current sources, compiled once per digest (once per process at most). */
export function armsBuild(): Promise<ArmsBuild> {
  pending ??= buildInto(BUILDS_DIR).catch((err: unknown) => {
    pending = undefined;
    throw err;
  });
  return pending;
}

/** Compiles the current sources into `buildsDir/<digest>`, unless a build is there already. */
export async function buildInto(buildsDir: string): Promise<ArmsBuild> {
  const digest = sourceDigest();
  const dir = path.join(buildsDir, digest);
  const build: ArmsBuild = {
    digest,
    dir,
    js: (source) => path.join(dir, source.replace(/\.ts$/, '.js')),
    gateway: path.join(dir, 'gateway/main.js'),
  };
  if (existsSync(build.gateway)) return build;
  const scratch = `${dir}.tmp-${process.pid}-${Date.now()}`;
  try {
    await tsc(scratch);
    await bundleGateway(path.join(scratch, 'gateway'));
    try {
      renameSync(scratch, dir);
    } catch (err) {
      // another process renamed its copy first: same digest, same output
      if (!existsSync(build.gateway)) throw err;
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  pruneStale(buildsDir, digest);
  return build;
}

function tsc(outDir: string): Promise<void> {
  const bin = path.join(repoRoot, 'node_modules/typescript/bin/tsc');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, '-p', 'tsconfig.bench.json', '--outDir', outDir], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0
        ? resolve()
        : reject(new Error(`tsc -p tsconfig.bench.json failed (${String(code)}):\n${output}`)),
    );
  });
}

/** SHA-256 over every source's path and bytes, in a fixed order. */
export function sourceDigest(): string {
  const hash = createHash('sha256');
  const files = [...CONFIGS, ...SOURCES.flatMap((dir) => walk(dir))].sort();
  for (const file of files) {
    hash
      .update(file)
      .update('\0')
      .update(readFileSync(path.join(repoRoot, file)))
      .update('\0');
  }
  return hash.digest('hex').slice(0, 16);
}

function walk(dir: string): string[] {
  return readdirSync(path.join(repoRoot, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => path.relative(repoRoot, path.join(e.parentPath, e.name)));
}

function pruneStale(buildsDir: string, keep: string): void {
  const now = Date.now();
  for (const name of readdirSync(buildsDir)) {
    if (name === keep) continue;
    const entry = path.join(buildsDir, name);
    try {
      if (now - statSync(entry).mtimeMs > STALE_MS) rmSync(entry, { recursive: true, force: true });
    } catch {
      /* removed meanwhile by another process */
    }
  }
}
