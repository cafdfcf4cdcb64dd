import { GatewayError } from '../errors/gateway-error.ts';

/**
 * Runs async operations one at a time, in arrival order, with a bound on how many may
 * wait. A failed operation does not stop the ones behind it.
 */
export class Mailbox {
  readonly #max: number;
  #tail: Promise<unknown> = Promise.resolve();
  #queued = 0;

  constructor(max: number) {
    this.#max = max;
  }

  get idle(): boolean {
    return this.#queued === 0;
  }

  run<T>(op: () => Promise<T>): Promise<T> {
    if (this.#queued >= this.#max) return Promise.reject(new GatewayError('overloaded'));
    this.#queued++;
    const result = this.#tail.then(op);
    this.#tail = result.then(
      () => this.#queued--,
      () => this.#queued--,
    );
    return result;
  }

  /** Resolves once everything queued so far has run. */
  async drain(): Promise<void> {
    await this.#tail;
  }
}
