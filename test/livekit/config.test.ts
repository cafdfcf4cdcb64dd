/**
 * The LiveKit settings: defaults, and the combinations that must refuse to boot (a key
 * with an empty or short secret above all: it would sign guessable tokens and accept
 * forged webhooks).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';

const SECRET = 'config-test-secret-config-test-secret-0123';
const LK_SECRET = 'k'.repeat(32);
const MAIN = new URL('../../src/main.ts', import.meta.url).pathname;

const load = (env: Record<string, string>) => loadConfig({ AUTH_JWT_SECRET: SECRET, ...env }).config;

describe('LiveKit configuration', () => {
  it('defaults: off, 600 s tokens, 300 s webhook age, reconcile every 30 s', () => {
    const config = load({});
    assert.equal(config.LIVEKIT_API_KEY, '');
    assert.equal(config.LIVEKIT_TOKEN_TTL_S, 600);
    assert.equal(config.LIVEKIT_WEBHOOK_MAX_AGE_S, 300);
    assert.equal(config.LIVEKIT_MAX_PARTICIPANTS, 0);
    assert.equal(config.LIVEKIT_EMPTY_TIMEOUT_S, 300);
    assert.equal(config.LIVEKIT_RECONCILE_INTERVAL_MS, 30_000);
  });

  it('accepts a key with a 32-character secret, with or without a URL', () => {
    load({ LIVEKIT_API_KEY: 'APIkey', LIVEKIT_API_SECRET: LK_SECRET });
    const config = load({
      LIVEKIT_API_KEY: 'APIkey',
      LIVEKIT_API_SECRET: LK_SECRET,
      LIVEKIT_URL: 'wss://lk.example',
    });
    assert.equal(config.LIVEKIT_URL, 'wss://lk.example');
  });

  it('refuses a key with an empty or short secret, and a secret without a key', () => {
    assert.throws(
      () => load({ LIVEKIT_API_KEY: 'APIkey' }),
      /LIVEKIT_API_SECRET: required when LIVEKIT_API_KEY is set/,
    );
    assert.throws(
      () => load({ LIVEKIT_API_KEY: 'APIkey', LIVEKIT_API_SECRET: 'k'.repeat(31) }),
      /LIVEKIT_API_SECRET: must be at least 32 characters/,
    );
    assert.throws(() => load({ LIVEKIT_API_SECRET: LK_SECRET }), /LIVEKIT_API_KEY: required/);
  });

  it('refuses a URL without credentials or of another scheme, and a reconcile interval below 1 s', () => {
    assert.throws(() => load({ LIVEKIT_URL: 'wss://lk.example' }), /LIVEKIT_URL: needs LIVEKIT_API_KEY/);
    assert.throws(
      () => load({ LIVEKIT_API_KEY: 'k', LIVEKIT_API_SECRET: LK_SECRET, LIVEKIT_URL: 'lk.example:7880' }),
      /LIVEKIT_URL: must be a ws/,
    );
    assert.throws(() => load({ LIVEKIT_RECONCILE_INTERVAL_MS: '500' }), /LIVEKIT_RECONCILE_INTERVAL_MS/);
    assert.equal(load({ LIVEKIT_RECONCILE_INTERVAL_MS: '0' }).LIVEKIT_RECONCILE_INTERVAL_MS, 0);
    assert.throws(() => load({ LIVEKIT_TOKEN_TTL_S: '5' }), /LIVEKIT_TOKEN_TTL_S/);
  });

  it('the gateway refuses to boot (exit 1, the problem on stderr) with a short LiveKit secret', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
      env: {
        PATH: process.env.PATH,
        PORT: '0',
        HOST: '127.0.0.1',
        AUTH_JWT_SECRET: SECRET,
        LIVEKIT_API_KEY: 'APIkey',
        LIVEKIT_API_SECRET: 'short',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 1);
    assert.match(output, /LIVEKIT_API_SECRET: must be at least 32 characters/);
    assert.doesNotMatch(output, /"msg":"listening"/);
  });
});
