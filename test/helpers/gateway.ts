import { httpJson } from '../../chaos/toolkit/http.ts';
import { startGateway, type Gateway } from '../../src/app.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/schema.ts';
import type { Engine } from '../../src/engine/engine.ts';
import type { Role } from '../../src/protocol/roles.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import type { Clock } from '../../src/util/clock.ts';

import { RedisServer } from '../../chaos/toolkit/redis-server.ts';

/**
 * TEST_ENGINE=redis runs the same gateway tests on the redis engine: one private
 * redis-server per test process (killed on exit), a fresh key prefix per gateway.
 */
let sharedRedis: Promise<RedisServer> | undefined;
let prefixCounter = 0;
async function engineEnv(
  env: Record<string, string>,
  explicitEngine: boolean,
): Promise<Record<string, string>> {
  if (process.env.TEST_ENGINE !== 'redis' || explicitEngine || env.REDIS_URL !== undefined) return {};
  sharedRedis ??= RedisServer.start({ aof: true, appendfsync: 'everysec' }).then((server) => {
    server.unref();
    return server;
  });
  const server = await sharedRedis;
  return { REDIS_URL: server.url, REDIS_KEY_PREFIX: `t${process.pid}-${++prefixCounter}:` };
}

export const TEST_SECRET = 'test-secret-test-secret-test-secret-0123456789';

export interface TestGateway {
  gateway: Gateway;
  config: Config;
  url: string;
  wsUrl: string;
  token(sub: string, role?: Role, tid?: string, ttlSeconds?: number): Promise<string>;
  /** POST /v1/call/sessions as `sub` and return the session id. */
  createSession(token: string): Promise<string>;
  http(
    method: string,
    path: string,
    token?: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: any }>;
  stop(): Promise<void>;
}

/** Starts a real gateway (uWS on port 0) in this process, with test-friendly config. */
export async function startTestGateway(
  env: Record<string, string> = {},
  extra: { clock?: Clock; engine?: Engine } = {},
): Promise<TestGateway> {
  const { config } = loadConfig({
    HOST: '127.0.0.1',
    PORT: '0',
    AUTH_JWT_SECRET: TEST_SECRET,
    LOG_LEVEL: 'silent',
    ...(await engineEnv(env, extra.engine !== undefined)),
    ...env,
  });
  const gateway = await startGateway({ config, logger: silentLogger(), ...extra });
  const url = `http://127.0.0.1:${gateway.port}`;
  const http: TestGateway['http'] = (method, path, token, body, headers = {}) =>
    httpJson(url, method, path, { token, body, headers });
  return {
    gateway,
    config,
    url,
    wsUrl: `ws://127.0.0.1:${gateway.port}/v1/realtime`,
    token: (sub, role = 'user', tid = 'acme', ttl = 3600) => gateway.jwt.sign({ sub, tid, role }, ttl),
    async createSession(token) {
      const res = await http('POST', '/v1/call/sessions', token);
      if (res.status !== 201) throw new Error(`create session: ${res.status} ${JSON.stringify(res.body)}`);
      return (res.body as { id: string }).id;
    },
    http,
    stop: () => gateway.shutdown(),
  };
}
