/** What LogThrottle writes to: a pino Logger, or anything with its `warn(fields, msg)`. */
export interface WarnSink {
  warn(fields: object, msg: string): void;
}

/** Default window: the engine's own connection-error line uses the same. */
export const LOG_THROTTLE_INTERVAL_MS = 5_000;

/**
 * Warnings that every session raises at once for one cause. When Redis stalls, each
 * session actor's gap fill, checkpoint write and resync fail together, and one line per
 * session (each with its error's stack, about 1.7 KB) is noise that hides the cause and
 * costs the loop time: the log is written synchronously. Per message, the first line of a
 * window is written as it comes; the rest of the window's lines are counted, and when the
 * window closes one line says how many there were (`suppressed`, with the last one's
 * `sessionId` and error message, `lastErr`). Messages are constant strings (see
 * logger.ts), so a message is the key, and the windows are as few as the messages.
 */
export class LogThrottle implements WarnSink {
  readonly #sink: WarnSink;
  readonly #intervalMs: number;
  readonly #windows = new Map<string, Window>();

  constructor(sink: WarnSink, intervalMs = LOG_THROTTLE_INTERVAL_MS) {
    this.#sink = sink;
    this.#intervalMs = intervalMs;
  }

  warn(fields: object, msg: string): void {
    const open = this.#windows.get(msg);
    if (open) {
      open.suppressed++;
      open.last = fields;
      return;
    }
    this.#sink.warn(fields, msg);
    const window: Window = { suppressed: 0, last: undefined };
    this.#windows.set(msg, window);
    setTimeout(() => this.#close(msg, window), this.#intervalMs).unref();
  }

  #close(msg: string, window: Window): void {
    this.#windows.delete(msg);
    if (window.suppressed === 0) return;
    const { sessionId, err } = (window.last ?? {}) as { sessionId?: unknown; err?: unknown };
    this.#sink.warn(
      {
        suppressed: window.suppressed,
        intervalMs: this.#intervalMs,
        ...(sessionId !== undefined ? { sessionId } : {}),
        ...(err instanceof Error ? { lastErr: err.message } : {}),
      },
      msg,
    );
  }
}

interface Window {
  /** Lines of this message not written since the window opened. */
  suppressed: number;
  /** The fields of the last of them. */
  last: object | undefined;
}
