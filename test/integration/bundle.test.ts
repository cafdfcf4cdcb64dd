/**
 * The gateway as `npm run build` bundles it (scripts/build-gateway.ts), run as the image
 * runs it: plain `node dist/main.js` in a package directory of its own, the Redis engine,
 * the LiveKit bridge and the session console all on. Each of these is loaded from a chunk
 * at run time, so each is exercised once here. (The realtime path runs from the same
 * bundle in test/bench/compare.test.ts, whose gateway arms run it.)
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TokenVerifier } from 'livekit-server-sdk';
import { GatewayProcess, processToken } from '../../chaos/toolkit/gateway-process.ts';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { bundleGateway, type GatewayBundle } from '../../scripts/build-gateway.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const LK_KEY = 'bundle-test-key';
const LK_SECRET = 'bundle-test-secret-bundle-test-secret-0123';

/** Output files reachable from `from` through static imports (what loads at start). */
function staticClosure(bundle: GatewayBundle, from: string): Set<string> {
  const seen = new Set<string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const next of bundle.imports[file] ?? []) visit(next);
  };
  visit(from);
  return seen;
}

const holds = (bundle: GatewayBundle, file: string, pkg: string): boolean =>
  (bundle.inputs[file] ?? []).some((input) => input.includes(`node_modules/${pkg}/`));

describe('the bundled gateway (npm run build)', { timeout: 60_000 }, () => {
  // A package directory like the image's /app: package.json ("type": "module"),
  // node_modules (uWebSockets.js is not bundled), and the build in dist/.
  const app = mkdtempSync(path.join(tmpdir(), 'lifeos-bundle-'));
  let bundle: GatewayBundle;
  let redis: RedisServer;
  let gateway: GatewayProcess | undefined;

  before(async () => {
    copyFileSync(path.join(ROOT, 'package.json'), path.join(app, 'package.json'));
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(app, 'node_modules'), 'dir');
    bundle = await bundleGateway(path.join(app, 'dist'));
    redis = await RedisServer.start({ aof: true, appendfsync: 'everysec' });
  });

  after(async () => {
    gateway?.kill('SIGKILL');
    await gateway?.exited;
    await redis?.stop();
    rmSync(app, { recursive: true, force: true });
  });

  it('loads neither the Redis client nor the LiveKit SDK at start: they sit in chunks of their own', () => {
    const entry = path.relative(path.join(app, 'dist'), bundle.main);
    const atStart = staticClosure(bundle, entry);
    for (const pkg of ['ioredis', 'livekit-server-sdk']) {
      const files = Object.keys(bundle.inputs).filter((f) => holds(bundle, f, pkg));
      assert.ok(files.length > 0, `${pkg} is in the bundle`);
      for (const f of files)
        assert.ok(!atStart.has(f), `${pkg} is in ${f}, which main.js imports statically`);
    }
    // ...while what every start needs is there (the control: the walk finds things)
    assert.ok(
      [...atStart].some((f) => holds(bundle, f, '@sinclair/typebox')),
      'TypeBox loads at start',
    );
  });

  it('starts under plain node with the Redis engine, the LiveKit bridge and the console', async () => {
    gateway = await GatewayProcess.start(
      {
        REDIS_URL: redis.url,
        LIVEKIT_API_KEY: LK_KEY,
        LIVEKIT_API_SECRET: LK_SECRET,
        CONSOLE_ENABLED: 'true',
      },
      { entry: bundle.main },
    );

    const health = await gateway.http('GET', '/healthz');
    assert.equal(health.status, 200);
    assert.equal(health.body.engine, 'redis');
    assert.equal(health.body.transport, 'native');

    const user = await processToken('alice');
    const sessionId = await gateway.createSession(user);

    const lk = await gateway.http('POST', `/v1/call/sessions/${sessionId}/livekit-token`, { token: user });
    assert.equal(lk.status, 200, JSON.stringify(lk.body));
    const claims = await new TokenVerifier(LK_KEY, LK_SECRET).verify((lk.body as { token: string }).token);
    assert.equal(claims.sub, 'user:alice');
    assert.equal(claims.video?.room, `lifeos-${sessionId}`);

    const page = await fetch(`${gateway.url}/console/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<html/i);
  });

  it('drains and exits 0 on SIGTERM', async () => {
    assert.ok(gateway?.running, 'the gateway runs');
    const exit = await gateway.stop();
    assert.equal(exit.code, 0, gateway.stderr);
  });
});
