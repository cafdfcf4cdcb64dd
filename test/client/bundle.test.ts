/**
 * The SDK builds for browsers: one ES module from any working directory, with no Node
 * built-ins (esbuild's browser platform refuses `node:` imports; the browser type-check
 * has no @types/node).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { buildClientBundle } from '../../client/bundle.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));

describe('client: browser bundle', () => {
  it('builds from any cwd, is cached, and exports the public API', async () => {
    const cwd = process.cwd();
    const elsewhere = mkdtempSync(path.join(tmpdir(), 'lifeos-bundle-'));
    process.chdir(elsewhere);
    let js: string;
    try {
      js = await buildClientBundle();
    } finally {
      process.chdir(cwd);
      rmSync(elsewhere, { recursive: true, force: true });
    }
    assert.equal(await buildClientBundle(), js, 'the same text from the cache');
    assert.doesNotMatch(js, /from\s*["']node:|require\(["']node:/);
    for (const name of [
      'connect',
      'memoryStorage',
      'localStorageStorage',
      'keyValueStorage',
      'backoffDelay',
    ]) {
      assert.match(js, new RegExp(`\\b${name}\\b`), name);
    }
    // The module evaluates (Node 20 has every global it touches at load time) and exports the API.
    const mod = await import(`data:text/javascript;base64,${Buffer.from(js).toString('base64')}`);
    assert.equal(typeof mod.connect, 'function');
    assert.equal(typeof mod.localStorageStorage, 'function');
    assert.equal(mod.CloseCodes.superseded, 4009);
  });

  it('type-checks without @types/node (client/tsconfig.build.json)', () => {
    const tsc = pathToFileURL(path.join(root, 'node_modules/typescript/bin/tsc'));
    const result = spawnSync(
      process.execPath,
      [fileURLToPath(tsc), '-p', path.join(root, 'client/tsconfig.build.json'), '--noEmit'],
      { encoding: 'utf8', cwd: root },
    );
    assert.equal(result.status, 0, `${result.stdout}${result.stderr}`);
  });
});
