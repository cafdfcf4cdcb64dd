import { ErrorCodes, type ErrorCode } from './codes.ts';

/**
 * A known failure with a stable code. Everything that is not a GatewayError maps to
 * `internal` on the wire and leaks nothing.
 */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? ErrorCodes[code].message, options);
    this.name = 'GatewayError';
    this.code = code;
  }
  get status(): number {
    return ErrorCodes[this.code].status;
  }
  get retryable(): boolean {
    return ErrorCodes[this.code].retryable;
  }
}

/** The engine could not be reached or did not answer in time. */
export class EngineUnavailableError extends GatewayError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('unavailable', message, options);
    this.name = 'EngineUnavailableError';
  }
}

export function toGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  return new GatewayError('internal', undefined, { cause: err });
}
