import { Redis } from 'ioredis';
import { SCRIPTS, type ScriptName } from './scripts/index.ts';

export interface ClientOptions {
  url: string;
  commandTimeoutMs: number;
}

/** Runs one of SCRIPTS: keys first, then arguments (numberOfKeys is fixed per script). */
export type ScriptRunner = (
  name: ScriptName,
  keys: readonly string[],
  args: readonly (string | number)[],
) => Promise<unknown>;

/**
 * The ioredis client, configured so that an unreachable or stalled Redis turns into a
 * prompt error instead of an unbounded wait or queue:
 *
 * - `commandTimeout`: every command, handshake included, rejects after this long.
 * - `enableOfflineQueue: false`: while not connected, commands fail at once instead of
 *   queueing in memory until Redis comes back.
 * - `maxRetriesPerRequest: 0` and `autoResendUnfulfilledCommands: false`: a command
 *   whose connection dropped is failed, never replayed on the next connection. Its
 *   outcome is unknown to the caller, who already got an error; replaying it later could
 *   apply a stale takeover after a newer one. The caller retries, and an append retry is
 *   harmless (dedupe by eventId).
 * - `socketTimeout`: a socket that stays silent while commands wait (a frozen server)
 *   is destroyed, so commands written during a long stall do not pile up in the client;
 *   the client then reconnects on its own (`retryStrategy`, capped backoff).
 * - `lazyConnect`: RedisEngine.connect awaits the first connection explicitly.
 */
export function createClient(options: ClientOptions): Redis {
  const redis = new Redis(options.url, {
    lazyConnect: true,
    commandTimeout: options.commandTimeoutMs,
    socketTimeout: Math.max(1000, options.commandTimeoutMs * 2),
    connectTimeout: Math.max(1000, options.commandTimeoutMs),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    retryStrategy: (attempt: number) => Math.min(50 * 2 ** Math.min(attempt, 6), 2000),
    connectionName: 'lifeos-gateway-engine',
  });
  for (const [name, def] of Object.entries(SCRIPTS)) {
    redis.defineCommand(name, { lua: def.lua, numberOfKeys: def.numberOfKeys });
  }
  return redis;
}

/** A typed door to the commands that defineCommand added (ioredis cannot type them). */
export function scriptRunner(redis: Redis): ScriptRunner {
  const commands = redis as unknown as Record<ScriptName, (...args: (string | number)[]) => Promise<unknown>>;
  return (name, keys, args) => commands[name].call(redis, ...keys, ...args);
}

/**
 * The pub/sub connection for cross-node notices. Unlike the command client it may queue
 * while disconnected (SUBSCRIBE and UNSUBSCRIBE only: bounded by the sessions watched),
 * and it re-subscribes by itself after a reconnect.
 */
export function subscriberClient(commands: Redis): Redis {
  return commands.duplicate({
    lazyConnect: false,
    enableOfflineQueue: true,
    autoResubscribe: true,
    maxRetriesPerRequest: null,
    commandTimeout: undefined,
    connectionName: 'lifeos-gateway-notices',
  });
}
