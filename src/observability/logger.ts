import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * The one pino home. Messages are constant strings; variables go in fields
 * (`log.error({ sessionId, err }, 'append failed')`), so logs can be grouped by message.
 */
export function createLogger(options: { level: string; nodeId: string }): Logger {
  // Synchronous writes: a line is out before the next statement runs, so a crash or
  // process.exit loses nothing. Write errors (stdout closed by a supervisor) are dropped
  // instead of retried, so they can never hold the process up on its way out.
  const destination = pino.destination({ fd: 1, sync: true });
  destination.on('error', () => {});
  return pino(
    {
      level: options.level,
      base: { node: options.nodeId },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}

/** A logger that drops everything: for tests and tools that do not want output. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
