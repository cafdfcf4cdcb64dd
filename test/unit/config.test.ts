import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from '../../src/config/load.ts';
import { ConfigKeys } from '../../src/config/schema.ts';
import { parseNatMap } from '../../src/engine/redis/nat-map.ts';

const SECRET = 'x'.repeat(32);

describe('config', () => {
  it('applies defaults with an empty environment and generates a development secret', () => {
    const { config, generatedSecret } = loadConfig({});
    assert.equal(config.PORT, 8080);
    assert.equal(config.REDIS_URL, '');
    assert.equal(config.RESUME_WINDOW_MS, 120_000);
    assert.equal(generatedSecret, true);
    assert.ok(config.AUTH_JWT_SECRET.length >= 32);
  });

  it('converts integers and keeps strings', () => {
    const { config } = loadConfig({
      PORT: '0',
      RESUME_WINDOW_MS: '5000',
      AUTH_JWT_SECRET: SECRET,
      NODE_ID: 'n1',
    });
    assert.equal(config.PORT, 0);
    assert.equal(config.RESUME_WINDOW_MS, 5000);
    assert.equal(config.NODE_ID, 'n1');
  });

  it('reports every problem at once', () => {
    assert.throws(
      () => loadConfig({ PORT: 'eighty', MAX_IN_FLIGHT: '0', LOG_LEVEL: 'loud', HEARTBEAT_MS: '1.5' }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        const text = err.problems.join('\n');
        for (const key of ['PORT', 'MAX_IN_FLIGHT', 'LOG_LEVEL', 'HEARTBEAT_MS'])
          assert.match(text, new RegExp(key));
        assert.equal(err.problems.length, 4);
        return true;
      },
    );
  });

  it('refuses values past what their consumers take: timers, uWS idle timeout, 32-bit frame and buffer limits', () => {
    const past = {
      SHUTDOWN_TIMEOUT_MS: '2147483648', // setTimeout fires at once past 2^31-1 ms: the drain gave up after 1 ms
      HEARTBEAT_MS: '481000', // uWS aborts the process on an idle timeout over 960 s
      MAX_FRAME_BYTES: String(2 ** 30), // 4x wraps uWS's 32-bit maxPayloadLength: every hello closed 1006
      SOCKET_BACKPRESSURE_BYTES: String(2 ** 31),
      REDIS_COMMAND_TIMEOUT_MS: '2147483648',
    };
    assert.throws(
      () => loadConfig(past),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        for (const key of Object.keys(past)) assert.match(err.problems.join('\n'), new RegExp(key));
        return true;
      },
    );
    const { config } = loadConfig({ SHUTDOWN_TIMEOUT_MS: '2147483647', HEARTBEAT_MS: '480000' });
    assert.equal(config.HEARTBEAT_MS, 480_000);
  });

  it('refuses a generated secret in production', () => {
    assert.throws(() => loadConfig({ NODE_ENV: 'production' }), /AUTH_JWT_SECRET: required/);
  });

  it('refuses a short secret and a non-redis URL', () => {
    assert.throws(() => loadConfig({ AUTH_JWT_SECRET: 'short' }), /at least 32 bytes/);
    assert.throws(() => loadConfig({ AUTH_JWT_SECRET: SECRET, REDIS_URL: 'http://x' }), /REDIS_URL/);
    assert.throws(
      () => loadConfig({ AUTH_JWT_SECRET: SECRET, REDIS_URL: 'redis://a:1', REDIS_CLUSTER_NODES: 'b:2' }),
      /set one of them, not both/,
    );
  });

  it('REDIS_CLUSTER_NAT_MAP: announced=reachable pairs, with a cluster only', () => {
    const cluster = { AUTH_JWT_SECRET: SECRET, REDIS_CLUSTER_NODES: '127.0.0.1:7001' };
    const map = '10.0.0.5:6379=127.0.0.1:7001, [fd00::5]:6379=[::1]:7002';
    assert.equal(loadConfig({ ...cluster, REDIS_CLUSTER_NAT_MAP: map }).config.REDIS_CLUSTER_NAT_MAP, map);
    assert.deepEqual(parseNatMap(map), {
      '10.0.0.5:6379': { host: '127.0.0.1', port: 7001 },
      'fd00::5:6379': { host: '::1', port: 7002 },
    });
    assert.deepEqual(parseNatMap(' , '), {});
    assert.throws(
      () => loadConfig({ AUTH_JWT_SECRET: SECRET, REDIS_CLUSTER_NAT_MAP: 'a:1=b:2' }),
      /REDIS_CLUSTER_NAT_MAP: needs REDIS_CLUSTER_NODES/,
    );
    for (const [bad, why] of [
      ['a:1', /not announced=reachable/],
      ['a:1=b:2=c:3', /not announced=reachable/],
      ['a=b:2', /host:port on both sides/],
      ['a:1=b:70000', /host:port on both sides/],
      ['a:0=b:1', /host:port on both sides/],
      ['fd00::5:1=b:2', /host:port on both sides/],
      ['a:1=b:2,a:1=c:3', /a:1 is mapped twice/],
    ] as const)
      assert.throws(() => loadConfig({ ...cluster, REDIS_CLUSTER_NAT_MAP: bad }), why, bad);
  });

  it('REDIS_WAIT_REPLICAS: a count of replicas, with Redis only; PORT_SHARING: refuse or allow', () => {
    assert.equal(loadConfig({ AUTH_JWT_SECRET: SECRET }).config.REDIS_WAIT_REPLICAS, 0);
    const one = loadConfig({ AUTH_JWT_SECRET: SECRET, REDIS_URL: 'redis://a:1', REDIS_WAIT_REPLICAS: '2' });
    assert.equal(one.config.REDIS_WAIT_REPLICAS, 2);
    const cluster = { AUTH_JWT_SECRET: SECRET, REDIS_CLUSTER_NODES: 'b:2', REDIS_WAIT_REPLICAS: '1' };
    assert.equal(loadConfig(cluster).config.REDIS_WAIT_REPLICAS, 1);
    assert.throws(
      () => loadConfig({ AUTH_JWT_SECRET: SECRET, REDIS_WAIT_REPLICAS: '1' }),
      /REDIS_WAIT_REPLICAS: needs Redis/,
    );
    assert.throws(
      () => loadConfig({ AUTH_JWT_SECRET: SECRET, REDIS_WAIT_REPLICAS: '-1' }),
      /REDIS_WAIT_REPLICAS/,
    );
    assert.equal(loadConfig({ AUTH_JWT_SECRET: SECRET }).config.PORT_SHARING, 'refuse');
    assert.equal(loadConfig({ AUTH_JWT_SECRET: SECRET, PORT_SHARING: 'allow' }).config.PORT_SHARING, 'allow');
    assert.throws(() => loadConfig({ AUTH_JWT_SECRET: SECRET, PORT_SHARING: 'yes' }), /PORT_SHARING/);
  });

  it('covers every variable PROTOCOL.md §8 relies on', () => {
    for (const key of [
      'HOST',
      'PORT',
      'REDIS_URL',
      'AUTH_JWT_SECRET',
      'RESUME_WINDOW_MS',
      'NODE_ID',
      'LIVEKIT_URL',
      'LIVEKIT_API_KEY',
      'LIVEKIT_API_SECRET',
    ]) {
      assert.ok(ConfigKeys.includes(key as never), key);
    }
  });
});
