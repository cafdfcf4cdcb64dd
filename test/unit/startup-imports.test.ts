/**
 * What a start loads before it listens. The LiveKit SDK and the Redis client are loaded
 * only when configured (dynamic `import()`), so no static import chain from the entry
 * point may reach them. The LiveKit SDK and its protobuf tables were a fifth of a start
 * (655 → 535 ms from spawn to `listening`, session 15), and a restart's outage is what
 * every client's reconnect waits for.
 *
 * The import graph is read from the sources: `import … from` and `export … from`
 * statements, without `import type` (erased) and without `import()` (loaded on demand).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

const src = fileURLToPath(new URL('../../src', import.meta.url));

const STATIC_IMPORT = /^\s*(?:import|export)\s+(?!type\b)(?:[^;'"]*?\sfrom\s+)?['"]([^'"]+)['"]/gm;

/** `@scope/name/sub` → `@scope/name`, `name/sub` → `name`. */
const packageName = (spec: string): string =>
  spec
    .split('/')
    .slice(0, spec.startsWith('@') ? 2 : 1)
    .join('/');

/** The packages static import chains from `entries` reach, and the source files on the way. */
function staticReach(...entries: string[]): { packages: Set<string>; files: Set<string> } {
  const packages = new Set<string>();
  const files = new Set<string>();
  const visit = (file: string): void => {
    if (files.has(file)) return;
    files.add(file);
    for (const [, spec] of readFileSync(file, 'utf8').matchAll(STATIC_IMPORT)) {
      if (spec!.startsWith('.')) visit(resolve(dirname(file), spec!));
      else if (!spec!.startsWith('node:')) packages.add(packageName(spec!));
    }
  };
  for (const entry of entries) visit(resolve(src, entry));
  return { packages, files };
}

describe('what a start loads', () => {
  it('reaches neither the LiveKit SDK nor ioredis through static imports from the entry point', () => {
    // main.ts imports app.ts on demand too, but every gateway start does.
    const { packages, files } = staticReach('main.ts', 'app.ts');
    assert.ok(files.size > 1, 'the walk follows relative imports');
    assert.ok(packages.has('pino'), 'the walk finds packages');
    assert.equal(packages.has('livekit-server-sdk'), false);
    assert.equal(packages.has('ioredis'), false);
  });

  it('does reach them from the modules that load them on demand (the check can fail)', () => {
    assert.ok(staticReach('livekit/setup.ts').packages.has('livekit-server-sdk'));
    assert.ok(staticReach('engine/redis/redis-engine.ts').packages.has('ioredis'));
  });
});
