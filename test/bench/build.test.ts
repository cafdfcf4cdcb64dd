/**
 * bench:compare's arm build (bench/compare/build.ts): the gateway arms run its bundle, the
 * other arms tsc's output; one build per source digest, shared by concurrent test files
 * through an atomic rename.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { buildInto, sourceDigest } from '../../bench/compare/build.ts';
import { repoRoot } from '../../bench/lib/repo-root.ts';

// Inside the repository, as the real builds are: the compiled files find node_modules
// by walking up from where they are.
mkdirSync(path.join(repoRoot, '.bench-build'), { recursive: true });
const scratch = mkdtempSync(path.join(repoRoot, '.bench-build', 'test-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

describe('bench arm build', () => {
  it('two builds racing for one digest both get the same complete directory, and leave nothing else', async () => {
    const [a, b] = await Promise.all([buildInto(scratch), buildInto(scratch)]);
    assert.equal(a.dir, b.dir);
    assert.equal(a.digest, sourceDigest());
    assert.deepEqual(readdirSync(scratch), [a.digest], 'no scratch directory left behind');
    assert.ok(existsSync(a.gateway), 'gateway bundled');
    for (const source of [
      'bench/compare/arms/uws.ts',
      'bench/compare/arms/socketio.ts',
      'bench/compare/arms/ws.ts',
      'bench/compare/arms/gc-hook.ts',
    ]) {
      assert.ok(existsSync(a.js(source)), `${source} compiled`);
    }
    // A third asks after the fact: it finds the build and compiles nothing.
    const started = readdirSync(scratch).length;
    assert.equal((await buildInto(scratch)).dir, a.dir);
    assert.equal(readdirSync(scratch).length, started);
  });

  it('the bundled gateway runs under plain node, without a loader', async () => {
    const { gateway } = await buildInto(scratch);
    const out = spawnSync(process.execPath, [gateway], {
      env: { ...process.env, PORT: 'not-a-port', NODE_OPTIONS: '' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    // A configuration error is the gateway's own answer: it loaded and read its config.
    assert.notEqual(out.status, 0);
    assert.match(out.stdout + out.stderr, /PORT/);
    assert.doesNotMatch(out.stderr, /ERR_MODULE_NOT_FOUND|ERR_UNKNOWN_FILE_EXTENSION/);
  });
});
