import type { Redis } from 'ioredis';

/** Where the engine reports what it found about Redis's durability. Pino-compatible. */
export interface EngineLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface PersistenceReport {
  aof: boolean;
  /** 'always' | 'everysec' | 'no', or 'unknown' when CONFIG is not available. */
  appendfsync: string;
  /** How it was learnt: CONFIG GET, INFO persistence (no fsync policy), or not at all. */
  source: 'config' | 'info' | 'unknown';
}

/**
 * Reads the AOF settings (ARCHITECTURE-NOTES decision 9). Managed Redis services often
 * disable CONFIG; INFO still tells whether AOF is on, and if both fail the answer is
 * "unknown" rather than an error, since this check must never stop the gateway.
 */
export async function readPersistence(redis: Redis): Promise<PersistenceReport> {
  try {
    const reply = await redis.call('CONFIG', 'GET', 'appendonly', 'appendfsync');
    const config = pairs(reply);
    const appendonly = config.get('appendonly');
    if (appendonly !== undefined) {
      return {
        aof: appendonly === 'yes',
        appendfsync: config.get('appendfsync') ?? 'unknown',
        source: 'config',
      };
    }
  } catch {
    // CONFIG renamed or denied: fall through to INFO
  }
  try {
    const info = String(await redis.call('INFO', 'persistence'));
    const match = /^aof_enabled:(\d)/m.exec(info);
    if (match) return { aof: match[1] === '1', appendfsync: 'unknown', source: 'info' };
  } catch {
    // INFO denied too
  }
  return { aof: false, appendfsync: 'unknown', source: 'unknown' };
}

const FSYNC_STRENGTH: Record<string, number> = { always: 3, everysec: 2, no: 1 };
const SOURCE_STRENGTH: Record<PersistenceReport['source'], number> = { config: 2, info: 1, unknown: 0 };

/**
 * One report for several Redis servers (the masters of a cluster): the weakest of them,
 * since each holds a share of the sessions. AOF counts as on only if it is on everywhere.
 */
export function combinePersistence(reports: readonly PersistenceReport[]): PersistenceReport {
  if (reports.length === 0) return { aof: false, appendfsync: 'unknown', source: 'unknown' };
  const weakest = <T>(values: T[], strength: (v: T) => number): T =>
    values.reduce((a, b) => (strength(b) < strength(a) ? b : a));
  return {
    aof: reports.every((r) => r.aof),
    appendfsync: weakest(
      reports.map((r) => r.appendfsync),
      (v) => FSYNC_STRENGTH[v] ?? 0,
    ),
    source: weakest(
      reports.map((r) => r.source),
      (v) => SOURCE_STRENGTH[v],
    ),
  };
}

/** Logs the loss window the found settings imply; loudly when it is not acceptable. */
export function logPersistence(report: PersistenceReport, logger: EngineLogger | undefined): void {
  if (!logger) return;
  if (report.source === 'unknown') {
    logger.warn(
      { redis: report },
      'redis engine: could not read Redis persistence settings; make sure AOF is on (appendonly yes, appendfsync everysec or always)',
    );
  } else if (!report.aof) {
    logger.warn(
      { redis: report },
      'REDIS PERSISTENCE IS OFF (appendonly no): a Redis restart loses every stream, subscriber and checkpoint; sessions get a new epoch and clients get history_gone. Set appendonly yes.',
    );
  } else if (report.appendfsync === 'no') {
    logger.warn(
      { redis: report },
      'redis appendfsync is "no": the OS decides when the AOF reaches disk, so a host crash can lose tens of seconds of acknowledged events. Use everysec or always.',
    );
  } else {
    const lossWindow =
      report.appendfsync === 'always' ? 'none' : report.appendfsync === 'everysec' ? 'up to ~1 s' : 'unknown';
    logger.info({ redis: report, lossWindow }, 'redis engine: AOF persistence is on');
  }
}

/** CONFIG GET replies a flat [k, v, …] list (RESP2, legacy mapping) or a map object. */
function pairs(reply: unknown): Map<string, string> {
  const out = new Map<string, string>();
  if (Array.isArray(reply)) {
    for (let i = 0; i + 1 < reply.length; i += 2) out.set(String(reply[i]), String(reply[i + 1]));
  } else if (reply !== null && typeof reply === 'object') {
    for (const [k, v] of Object.entries(reply)) out.set(k, String(v));
  }
  return out;
}
