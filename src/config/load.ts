import { randomBytes } from 'node:crypto';
import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { ConfigKeys, ConfigSchema, type Config, type ConfigKey } from './schema.ts';
import { parseNatMap } from '../engine/redis/nat-map.ts';

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export interface LoadedConfig {
  config: Config;
  /** Set when AUTH_JWT_SECRET was absent and a development secret was generated. */
  generatedSecret: boolean;
}

const MIN_SECRET_BYTES = 32;

/**
 * Reads the gateway's variables from `env`, applies defaults, converts numbers, and
 * validates everything against the closed schema. Every problem is collected and
 * reported in one ConfigError, so an operator fixes them in one go.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const raw: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const key of ConfigKeys) {
    const value = env[key];
    if (value === undefined || value === '') continue;
    if (integerSchema(key) !== undefined) {
      const n = Number(value);
      if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) {
        problems.push(`${key}: expected an integer, got "${value}"`);
        continue;
      }
      raw[key] = n;
    } else {
      raw[key] = value;
    }
  }
  const withDefaults = Value.Default(ConfigSchema, raw) as Record<string, unknown>;
  for (const error of Value.Errors(ConfigSchema, withDefaults)) {
    // An optional integer ('' or an integer) fails as a union: say what the integer lacks.
    const detail = error.errors.flatMap((branch) => [...branch]).find((e) => e.schema.type === 'integer');
    problems.push(
      `${error.path.slice(1)}: ${(detail ?? error).message} (got ${JSON.stringify(error.value)})`,
    );
  }
  const config = withDefaults as Config;
  let generatedSecret = false;
  if (problems.length === 0) {
    if (config.AUTH_JWT_SECRET === '') {
      if (config.NODE_ENV === 'production') {
        problems.push('AUTH_JWT_SECRET: required when NODE_ENV=production');
      } else {
        config.AUTH_JWT_SECRET = randomBytes(32).toString('base64url');
        generatedSecret = true;
      }
    } else if (Buffer.byteLength(config.AUTH_JWT_SECRET) < MIN_SECRET_BYTES) {
      problems.push(`AUTH_JWT_SECRET: must be at least ${MIN_SECRET_BYTES} bytes`);
    }
    if (config.REDIS_URL !== '' && !/^rediss?:\/\//.test(config.REDIS_URL)) {
      problems.push('REDIS_URL: must start with redis:// or rediss://');
    }
    if (config.REDIS_URL !== '' && config.REDIS_CLUSTER_NODES !== '') {
      problems.push('REDIS_URL and REDIS_CLUSTER_NODES: set one of them, not both');
    }
    if (config.REDIS_CLUSTER_NAT_MAP !== '') {
      if (config.REDIS_CLUSTER_NODES === '')
        problems.push('REDIS_CLUSTER_NAT_MAP: needs REDIS_CLUSTER_NODES');
      try {
        parseNatMap(config.REDIS_CLUSTER_NAT_MAP);
      } catch (err) {
        problems.push((err as Error).message);
      }
    }
    if (config.REDIS_WAIT_REPLICAS > 0 && config.REDIS_URL === '' && config.REDIS_CLUSTER_NODES === '') {
      problems.push('REDIS_WAIT_REPLICAS: needs Redis (REDIS_URL or REDIS_CLUSTER_NODES)');
    }
    if (config.METRICS_PORT !== '' && config.METRICS_PORT !== 0 && config.METRICS_PORT === config.PORT) {
      problems.push('METRICS_PORT: must differ from PORT (the gateway listens there)');
    }
    problems.push(...liveKitProblems(config));
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return { config, generatedSecret };
}

/** LiveKit signs tokens and webhooks with HS256 over the secret: a short one is guessable. */
export const MIN_LIVEKIT_SECRET_CHARS = 32;

/**
 * The LiveKit bridge's settings go together: a key needs a strong secret (and the other
 * way round), and a server URL needs both. Anything else would start a gateway that
 * signs guessable tokens or cannot verify a single webhook.
 */
function liveKitProblems(config: Config): string[] {
  const problems: string[] = [];
  const key = config.LIVEKIT_API_KEY;
  const secret = config.LIVEKIT_API_SECRET;
  if (key !== '' && secret === '') {
    problems.push('LIVEKIT_API_SECRET: required when LIVEKIT_API_KEY is set');
  } else if (key !== '' && secret.length < MIN_LIVEKIT_SECRET_CHARS) {
    problems.push(
      `LIVEKIT_API_SECRET: must be at least ${MIN_LIVEKIT_SECRET_CHARS} characters (it signs LiveKit tokens and webhooks)`,
    );
  } else if (key === '' && secret !== '') {
    problems.push('LIVEKIT_API_KEY: required when LIVEKIT_API_SECRET is set');
  }
  if (config.LIVEKIT_URL !== '') {
    if (key === '') problems.push('LIVEKIT_URL: needs LIVEKIT_API_KEY and LIVEKIT_API_SECRET');
    if (!/^(wss?|https?):\/\/[^/\s]+/.test(config.LIVEKIT_URL)) {
      problems.push('LIVEKIT_URL: must be a ws://, wss://, http:// or https:// URL');
    }
  }
  const interval = config.LIVEKIT_RECONCILE_INTERVAL_MS;
  if (interval !== 0 && interval < 1000) {
    problems.push('LIVEKIT_RECONCILE_INTERVAL_MS: 0 (off) or at least 1000');
  }
  return problems;
}

/**
 * The integer schema of a variable read as an integer: the variable's own, or the
 * integer branch of an optional integer (`'' | integer`, '' meaning unset).
 */
function integerSchema(key: ConfigKey): TSchema | undefined {
  const schema: TSchema = ConfigSchema.properties[key];
  if (schema.type === 'integer') return schema;
  const branches = (schema as { anyOf?: TSchema[] }).anyOf;
  return branches?.find((branch) => branch.type === 'integer');
}
