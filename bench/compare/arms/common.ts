/** What every arm server shares: its environment, the one "listening" line, a clean SIGTERM. */

export interface ArmEnv {
  host: string;
  port: number;
}

export function armEnv(): ArmEnv {
  const port = Number(process.env['PORT'] ?? '0');
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    console.error(`invalid PORT ${process.env['PORT'] ?? ''}`);
    process.exit(1);
  }
  return { host: process.env['HOST'] ?? '127.0.0.1', port };
}

/** The one line the orchestrator waits for. */
export function reportListening(port: number): void {
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port })}\n`);
}

/**
 * SIGTERM (and SIGINT): run `stop` once (close the listen socket, whatever else), then exit 0.
 * A second signal, or `stop` overrunning `graceMs`, exits at once.
 */
export function onTerminate(stop: () => void | Promise<void>, graceMs = 10_000): void {
  let stopping = false;
  const handler = (): void => {
    if (stopping) process.exit(0);
    stopping = true;
    setTimeout(() => process.exit(0), graceMs).unref();
    Promise.resolve()
      .then(stop)
      .then(
        () => process.exit(0),
        (err: unknown) => {
          console.error(err);
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}

/** Bound on a subscriber socket's unsent bytes (U and W alike); past it frames are skipped. */
export const MAX_BACKPRESSURE = 1024 * 1024;
/** Largest client frame accepted (a 1 KB payload JSON-escaped in a `pub` fits many times). */
export const MAX_PAYLOAD = 64 * 1024;
