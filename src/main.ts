import { startGateway, nodeIdFrom, type Gateway } from './app.ts';
import { ConfigError, loadConfig } from './config/load.ts';
import { createLogger } from './observability/logger.ts';

/**
 * The process entry point: config, logger, gateway, signals. Exit codes: 0 after a clean
 * drain, 1 on bad configuration or a failed start, 2 when a drain overran its deadline.
 */
async function main(): Promise<void> {
  let loaded;
  try {
    loaded = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const { config, generatedSecret } = loaded;
  const logger = createLogger({ level: config.LOG_LEVEL, nodeId: nodeIdFrom(config) });
  if (generatedSecret) {
    logger.warn(
      'AUTH_JWT_SECRET is not set: generated a random development secret. Tokens die with this process; never run like this in production.',
    );
  }
  // Signals are handled from before the first "listening" line: a supervisor that stops
  // us right after start must get a clean drain, not the default kill.
  const started: Promise<Gateway> = startGateway({ config, logger });
  const stop = (signal: string): void => {
    // Logging may fail here (stdout closed by a supervisor); the exit must not depend on it.
    safely(() => logger.info({ signal }, 'shutdown requested'));
    // Not unref'd: this deadline is what guarantees the process ends.
    setTimeout(() => {
      safely(() => logger.error({ timeoutMs: config.SHUTDOWN_TIMEOUT_MS }, 'shutdown timed out'));
      process.exit(2);
    }, config.SHUTDOWN_TIMEOUT_MS);
    started
      .then((gateway) => gateway.shutdown())
      .then(
        () => process.exit(0),
        (err: unknown) => {
          safely(() => logger.error({ err }, 'shutdown failed'));
          process.exit(2);
        },
      );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  await started;
}

main().catch((err: unknown) => {
  process.stderr.write(
    `gateway failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});

function safely(fn: () => void): void {
  try {
    fn();
  } catch {
    /* nothing left to tell it to */
  }
}
