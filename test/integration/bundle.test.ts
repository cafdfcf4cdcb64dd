/**
 * The gateway as `npm run build` bundles it (scripts/build-gateway.ts), run as the image
 * runs it: plain `node dist/main.js` in a package directory of its own, the Redis engine,
 * the LiveKit bridge and the session console all on. Each of these is loaded from a chunk
 * at run time, so each is exercised once here. (The realtime path runs from the same
 * bundle in test/bench/compare.test.ts, whose gateway arms run it.)
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TokenVerifier } from 'livekit-server-sdk';
import { httpJson } from '../../chaos/toolkit/http.ts';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { bundleGateway, type GatewayBundle } from '../../scripts/build-gateway.ts';
import { JwtVerifier } from '../../src/auth/jwt.ts';
import { TEST_SECRET } from '../helpers/gateway.ts';

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
  let gateway: ChildProcess | undefined;
  let base = '';
  const logs: string[] = [];

  before(async () => {
    copyFileSync(path.join(ROOT, 'package.json'), path.join(app, 'package.json'));
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(app, 'node_modules'), 'dir');
    bundle = await bundleGateway(path.join(app, 'dist'));
    redis = await RedisServer.start({ aof: true, appendfsync: 'everysec' });
  });

  after(async () => {
    gateway?.kill('SIGKILL');
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
    gateway = spawn(process.execPath, [bundle.main], {
      cwd: app,
      env: {
        ...process.env,
        NODE_OPTIONS: '',
        HOST: '127.0.0.1',
        PORT: '0',
        LOG_LEVEL: 'info',
        AUTH_JWT_SECRET: TEST_SECRET,
        REDIS_URL: redis.url,
        LIVEKIT_API_KEY: LK_KEY,
        LIVEKIT_API_SECRET: LK_SECRET,
        CONSOLE_ENABLED: 'true',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`no listening line:\n${logs.join('')}`)), 20_000);
      gateway!.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const line = out.split('\n').find((l) => l.includes('"msg":"listening"'));
        if (line) {
          clearTimeout(timer);
          resolve((JSON.parse(line) as { port: number }).port);
        }
      });
      gateway!.stderr!.on('data', (chunk: Buffer) => logs.push(chunk.toString()));
      gateway!.once('exit', (code) => reject(new Error(`exited ${String(code)}:\n${logs.join('')}`)));
    });
    base = `http://127.0.0.1:${port}`;

    const health = await httpJson(base, 'GET', '/healthz');
    assert.equal(health.status, 200);
    assert.equal(health.body.engine, 'redis');
    assert.equal(health.body.transport, 'native');

    const jwt = new JwtVerifier(TEST_SECRET);
    const user = await jwt.sign({ sub: 'alice', tid: 'acme', role: 'user' });
    const created = await httpJson(base, 'POST', '/v1/call/sessions', { token: user });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const sessionId = (created.body as { id: string }).id;

    const lk = await httpJson(base, 'POST', `/v1/call/sessions/${sessionId}/livekit-token`, { token: user });
    assert.equal(lk.status, 200, JSON.stringify(lk.body));
    const claims = await new TokenVerifier(LK_KEY, LK_SECRET).verify((lk.body as { token: string }).token);
    assert.equal(claims.sub, 'user:alice');
    assert.equal(claims.video?.room, `lifeos-${sessionId}`);

    const page = await fetch(`${base}/console/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<html/i);
  });

  it('drains and exits 0 on SIGTERM', async () => {
    assert.ok(gateway && gateway.exitCode === null && gateway.signalCode === null, 'the gateway runs');
    const code = await new Promise<number | null>((resolve) => {
      gateway!.once('exit', (c) => resolve(c));
      gateway!.kill('SIGTERM');
    });
    gateway = undefined;
    assert.equal(code, 0, logs.join(''));
  });
});
