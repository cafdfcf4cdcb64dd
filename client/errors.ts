/**
 * Every error the SDK emits or rejects with is a `LifeosClientError` with a stable
 * `code`; subclasses carry what the application needs to react (the close code, the
 * publish id, the seq). Codes are never reused for another meaning.
 *
 * | code | when |
 * | --- | --- |
 * | `closed` | the subscription (or client) was closed; pending publishes reject with it |
 * | `outbox_full` | `publish()` while `outbox.max` publishes are unanswered |
 * | `publish_rejected` | the gateway answered a publish with a non-retryable `nack` |
 * | `connection_refused` | the gateway closed with a "do not resume" code (4000, 4003, 4004, 4009, repeated 4001, 1000 without `eos`) |
 * | `history_gone` | 4011: the position is no longer retained or the epoch changed; resync over HTTP |
 * | `server_error` | an `error` frame from the gateway (not fatal by itself) |
 * | `handler_failed` | an `event` listener threw or rejected; the event still counts as delivered |
 * | `storage_failed` | the checkpoint storage adapter threw |
 * | `token_failed` | the token provider threw or returned no token |
 * | `protocol_error` | a frame the SDK cannot use, or a seq gap; the connection is dropped and resumed |
 * | `bye_failed` | `close({ bye: true })` between connections could not reach the gateway to send `bye` |
 */
export type ClientErrorCode =
  | 'closed'
  | 'outbox_full'
  | 'publish_rejected'
  | 'connection_refused'
  | 'history_gone'
  | 'server_error'
  | 'handler_failed'
  | 'storage_failed'
  | 'token_failed'
  | 'protocol_error'
  | 'bye_failed';

export class LifeosClientError extends Error {
  readonly code: ClientErrorCode;
  constructor(code: ClientErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LifeosClientError';
    this.code = code;
  }
}

/** The gateway closed the connection with a code that means "stop" (PROTOCOL.md §5). */
export class ConnectionRefusedError extends LifeosClientError {
  readonly closeCode: number;
  readonly reason: string;
  constructor(closeCode: number, reason: string) {
    super('connection_refused', `gateway closed the connection: ${closeCode} ${reason}`.trim());
    this.name = 'ConnectionRefusedError';
    this.closeCode = closeCode;
    this.reason = reason;
  }
}

/**
 * 4011: the events after `lastSeq` are no longer retained, or the stream's epoch changed
 * (its history was lost). Read the session's current state over HTTP
 * (`GET /v1/call/sessions/:id/events?after=…`) to resync; the SDK starts a fresh
 * subscriber after `lastSeq` once, and stops if that is refused too.
 */
export class HistoryGoneError extends LifeosClientError {
  readonly lastSeq: number | undefined;
  readonly epoch: string | undefined;
  constructor(lastSeq: number | undefined, epoch: string | undefined, reason: string) {
    super(
      'history_gone',
      `history gone after seq ${lastSeq ?? 'none'} (${reason || 'history_gone'}): resync over HTTP`,
    );
    this.name = 'HistoryGoneError';
    this.lastSeq = lastSeq;
    this.epoch = epoch;
  }
}

export class PublishRejectedError extends LifeosClientError {
  readonly id: string;
  /** The gateway's error code, e.g. `invalid_event`, `forbidden_type`. */
  readonly reason: string;
  constructor(id: string, reason: string, message: string) {
    super('publish_rejected', `publish ${id} rejected: ${reason}: ${message}`);
    this.name = 'PublishRejectedError';
    this.id = id;
    this.reason = reason;
  }
}

export class ServerError extends LifeosClientError {
  /** The gateway's error code, e.g. `ack_ahead`. */
  readonly reason: string;
  readonly retryable: boolean;
  constructor(reason: string, message: string, retryable: boolean) {
    super('server_error', `gateway error ${reason}: ${message}`);
    this.name = 'ServerError';
    this.reason = reason;
    this.retryable = retryable;
  }
}
