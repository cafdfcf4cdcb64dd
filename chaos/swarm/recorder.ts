import { createWriteStream, type WriteStream } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { HistoryOp } from '../checker/history.ts';

/** Distributes `Omit<T, 't'>` over a union, so each member keeps its own fields. */
export type Untimed<T> = T extends unknown ? Omit<T, 't'> : never;

/**
 * The one place every observation of a run goes through: stamps it with the run's
 * clock, hands it to the live consumers (the checker) and appends it to the history
 * file as one JSON line. Nothing else in the swarm keeps history, so memory stays flat
 * during a long soak.
 */
export class Recorder {
  readonly #t0 = performance.now();
  readonly #consumers: Array<(op: HistoryOp) => void>;
  readonly #file: WriteStream | undefined;
  #count = 0;
  #buffer: string[] = [];

  constructor(options: { consumers: Array<(op: HistoryOp) => void>; historyPath?: string | undefined }) {
    this.#consumers = options.consumers;
    this.#file = options.historyPath ? createWriteStream(options.historyPath) : undefined;
  }

  get count(): number {
    return this.#count;
  }

  /** Milliseconds since the run started. */
  now(): number {
    return Math.round((performance.now() - this.#t0) * 10) / 10;
  }

  record(op: Untimed<HistoryOp>): void {
    const full: HistoryOp = { t: this.now(), ...op };
    this.#count++;
    for (const consume of this.#consumers) consume(full);
    if (this.#file) {
      this.#buffer.push(JSON.stringify(full));
      // One write per few hundred ops: a write per op would dominate the swarm's CPU.
      if (this.#buffer.length >= 512) this.#flush();
    }
  }

  async close(): Promise<void> {
    this.#flush();
    const file = this.#file;
    if (!file) return;
    await new Promise<void>((resolve, reject) =>
      file.end((err?: Error | null) => (err ? reject(err) : resolve())),
    );
  }

  #flush(): void {
    if (this.#buffer.length === 0 || !this.#file) return;
    this.#file.write(this.#buffer.join('\n') + '\n');
    this.#buffer = [];
  }
}
