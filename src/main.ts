import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Gateway } from './app.ts';
import { ConfigError, loadConfig, type LoadedConfig } from './config/load.ts';
import { createLogger, type Logger } from './observability/logger.ts';
import { CliError, parseCli } from './supervisor/cli.ts';
import { answerMetricsRequests, reportListening, workerIndex } from './supervisor/ipc.ts';
import { MetricsServer, singleProcessSource } from './supervisor/metrics-server.ts';
import { assertPortFree, pickFreePort, PortInUseError } from './transport/port.ts';
import { resolveWorkerCount, Supervisor, workerExecArgv } from './supervisor/supervisor.ts';
import { SupervisorMetrics } from './supervisor/supervisor-metrics.ts';

/**
 * The process entry point: command line, config, then one of three roles.
 *
 * - `WORKERS=1` (the default): the gateway runs in this process (and, with `METRICS_PORT`,
 *   serves the primary's metrics endpoints itself, as one worker).
 * - `WORKERS=N > 1` (or `--workers N`): this process is the primary. It validates the
 *   configuration, picks the port, and forks N workers of this same entry point, which
 *   all listen on that port (SO_REUSEPORT); it restarts workers that die and drains them
 *   all on SIGTERM. It never serves gateway traffic itself; with `METRICS_PORT` it serves
 *   the workers' merged metrics there.
 * - a worker (forked by a primary): the gateway in this process, reporting "listening"
 *   to the primary, answering its metrics requests, and draining when the primary goes away.
 *
 * Exit codes: 0 after a clean drain, 1 on bad configuration or a failed start (or, for a
 * primary, workers that keep crashing), 2 when a drain overran its deadline.
 */
async function main(): Promise<void> {
  const loaded = configure();
  const worker = workerIndex();
  if (worker !== undefined) return runGateway(loaded, worker);
  const workers = resolveWorkerCount(loaded.config.WORKERS);
  if (workers === 1) return runGateway(loaded, undefined);
  return runPrimary(loaded, workers);
}

/** Command line and environment, validated; every problem on stderr and exit 1. */
function configure(): LoadedConfig {
  try {
    const cli = parseCli(process.argv.slice(2));
    // The flag overrides the variable and is validated as if it were the variable.
    const env = cli.workers === undefined ? process.env : { ...process.env, WORKERS: cli.workers };
    return loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    if (err instanceof CliError) fail(`invalid command line: ${err.message}\nusage: main [--workers N]`);
    throw err;
  }
}

/** The gateway in this process: on its own (`worker` undefined) or as a primary's worker. */
async function runGateway(
  { config, generatedSecret }: LoadedConfig,
  worker: number | undefined,
): Promise<void> {
  // Loaded here, not at the top: a primary never needs uWS, the engines or the actors.
  const { startGateway, nodeIdFrom } = await import('./app.ts');
  const nodeId = nodeIdFrom(config);
  let logger: Logger = createLogger({ level: config.LOG_LEVEL, nodeId });
  if (worker !== undefined) logger = logger.child({ worker });
  if (generatedSecret) {
    logger.warn(
      'AUTH_JWT_SECRET is not set: generated a random development secret. Tokens die with this process; never run like this in production.',
    );
  }
  let stopping = false;
  /** The gateway once it listens. */
  let live: Gateway | undefined = undefined;
  // WORKERS=1 with METRICS_PORT: this process serves the primary's endpoints, as the one
  // worker. Bound first, so a taken port fails the start before the gateway listens.
  const metricsBound =
    worker === undefined && config.METRICS_PORT !== ''
      ? serveMetrics({
          host: config.HOST,
          port: config.METRICS_PORT,
          source: singleProcessSource(
            nodeId,
            () => live?.metrics.registry,
            () => !stopping,
          ),
          // Not the process metrics: the gateway's own registry has them (same process).
          metrics: new SupervisorMetrics(nodeId, { processMetrics: false }),
          logger,
          role: 'single',
          node: nodeId,
        })
      : Promise.resolve(undefined);
  // Signals are handled from before the first "listening" line: a supervisor that stops
  // us right after start must get a clean drain, not the default kill.
  // A worker's port is its siblings' too: only the process that chose the port checks it.
  const guardPort = worker === undefined && config.PORT_SHARING === 'refuse';
  const started = metricsBound
    .then(() => (guardPort && config.PORT !== 0 ? assertPortFree(config.HOST, config.PORT) : undefined))
    .then(() => startGateway({ config, logger, refuseSharedPort: guardPort }));
  const stop = (signal: string): void => {
    // SIGINT from a terminal reaches the workers and their primary's SIGTERM follows.
    if (stopping) return;
    stopping = true;
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
  // A process can get the same signal twice (a signal to the process group, then the
  // primary's or a service manager's SIGTERM): a repeat must not kill it mid-drain (with
  // `once`, the second one met Node's default and ended it: clients got 1006, not 1001,
  // and their last checkpoints were not written). SHUTDOWN_TIMEOUT_MS still bounds the
  // drain, and a worker's primary enforces it with SIGKILL.
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // A worker whose primary is gone (killed with -9) drains instead of running unsupervised.
  if (worker !== undefined) process.once('disconnect', () => stop('primary gone'));
  const gateway = await started;
  live = gateway;
  if (worker !== undefined) {
    // Installed before "listening": the primary asks listening workers only.
    const { registry } = gateway.metrics;
    answerMetricsRequests(() => registry.getMetricsAsJSON());
    const { transportKind } = await import('./transport/uws.ts');
    reportListening({
      port: gateway.port,
      node: gateway.nodeId,
      engine: gateway.engine.kind,
      transport: transportKind,
    });
  }
}

/** The primary of N workers: serves nothing, supervises. */
async function runPrimary({ config, generatedSecret }: LoadedConfig, workers: number): Promise<void> {
  // The same rule as createEngine: no Redis configured means the memory engine.
  if (config.REDIS_URL === '' && config.REDIS_CLUSTER_NODES === '') {
    const means = config.WORKERS === 0 ? ` (WORKERS=0 means one per core: ${workers} here)` : '';
    fail(
      new ConfigError([
        `WORKERS > 1 needs the redis engine: the memory engine lives in one process${means}. Set REDIS_URL (or REDIS_CLUSTER_NODES), or run WORKERS=1.`,
      ]).message,
    );
  }
  const nodeIdBase = config.NODE_ID || `${hostname()}-${process.pid}`;
  const logger = createLogger({ level: config.LOG_LEVEL, nodeId: nodeIdBase }).child({ role: 'primary' });
  if (generatedSecret) {
    logger.warn(
      { workers },
      'AUTH_JWT_SECRET is not set: generated a random development secret, shared by every worker. Tokens die with this primary; never run like this in production.',
    );
  }
  let supervisor: Supervisor | undefined = undefined;
  const stop = (signal: string): void => {
    if (supervisor) return supervisor.stop(signal);
    // No worker forked yet: nothing to drain.
    safely(() => logger.info({ signal }, 'shutdown requested'));
    process.exit(0);
  };
  // Repeats are ignored: the drain has its deadline (SHUTDOWN_TIMEOUT_MS, then SIGKILL).
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  // Every worker must bind the same port; with PORT=0 each would get its own.
  const port = config.PORT === 0 ? await pickFreePort(config.HOST) : config.PORT;
  if (config.PORT !== 0 && config.PORT_SHARING === 'refuse') await assertPortFree(config.HOST, port);
  supervisor = new Supervisor({
    workers,
    entry: fileURLToPath(import.meta.url),
    execArgv: workerExecArgv(process.execArgv),
    // The workers validate this same environment again; a generated secret is passed
    // down so every worker verifies the same tokens.
    env: { ...process.env, PORT: String(port), AUTH_JWT_SECRET: config.AUTH_JWT_SECRET },
    nodeIdBase,
    host: config.HOST,
    port,
    shutdownTimeoutMs: config.SHUTDOWN_TIMEOUT_MS,
    refuseSharedPort: config.PORT_SHARING === 'refuse',
    logger,
  });
  if (config.METRICS_PORT !== '') {
    // Bound before any worker is forked: a taken port fails the start with nothing to drain.
    await serveMetrics({
      host: config.HOST,
      port: config.METRICS_PORT,
      source: supervisor,
      metrics: new SupervisorMetrics(nodeIdBase, { processMetrics: true }),
      logger,
      role: 'primary',
      node: nodeIdBase,
    });
  }
  process.exit(await supervisor.run());
}

/**
 * Starts the `METRICS_PORT` listener; a port it cannot bind is a failed start (exit 1).
 * Its port (also when METRICS_PORT=0 picked one) is logged with `metrics listening`.
 */
async function serveMetrics(options: ConstructorParameters<typeof MetricsServer>[0]): Promise<MetricsServer> {
  const server = new MetricsServer(options);
  try {
    const port = await server.listen();
    safely(() => options.logger.info({ metricsPort: port, host: options.host }, 'metrics listening'));
    return server;
  } catch (err) {
    fail(
      `METRICS_PORT: cannot listen on ${options.host}:${options.port}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

function fail(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(1);
}

main().catch((err: unknown) => {
  if (err instanceof PortInUseError) fail(err.message);
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
