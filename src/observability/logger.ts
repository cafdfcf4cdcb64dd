import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * The one pino home. Messages are constant strings; variables go in fields
 * (`log.error({ sessionId, err }, 'append failed')`), so logs can be grouped by message.
 */
export function createLogger(options: { level: string; nodeId: string }): Logger {
  return pino({
    level: options.level,
    base: { node: options.nodeId },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}

/** A logger that drops everything: for tests and tools that do not want output. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
