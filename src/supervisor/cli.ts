import { parseArgs } from 'node:util';

export interface CliOptions {
  /** `--workers N`: overrides the WORKERS variable (validated with it). */
  workers?: string;
}

/** Thrown for command lines the gateway does not understand. */
export class CliError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliError';
  }
}

/**
 * The gateway's command line: `--workers N` (or `--workers=N`) and nothing else. Strict:
 * a typo is an error, not a silently ignored flag.
 */
export function parseCli(argv: string[]): CliOptions {
  try {
    const { values } = parseArgs({
      args: argv,
      options: { workers: { type: 'string' } },
      strict: true,
      allowPositionals: false,
    });
    return values.workers === undefined ? {} : { workers: values.workers };
  } catch (err) {
    throw new CliError(err instanceof Error ? err.message : String(err));
  }
}
