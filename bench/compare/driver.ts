/**
 * The open-loop publisher of bench:compare: sends on a fixed schedule whatever the clock
 * says is owed, and stamps each event with the time it was *due*, not the time it went
 * out, so a stalled send shows up as latency instead of hiding it (no coordinated
 * omission). Runs in the orchestrator, on the load-generator core.
 */
import { nowMicros } from '../lib/wire.ts';
import { makePayload } from './payload.ts';
import type { Publisher } from './types.ts';

export class OpenLoop {
  readonly #publisher: Publisher;
  readonly #topics: readonly string[];
  readonly #size: number;
  /** Per-topic publisher seq (the payload's `seq`). */
  readonly seq = new Map<string, number>();
  /** How far behind its schedule the loop fell at worst, ms. */
  maxLagMs = 0;
  /** When the event after the last run's last one is due (see run). */
  #nextDueUs = 0;

  constructor(publisher: Publisher, topics: readonly string[], payloadBytes: number) {
    this.#publisher = publisher;
    this.#topics = topics;
    this.#size = payloadBytes;
    for (const t of topics) this.seq.set(t, 0);
  }

  #send(topic: string, dueUs: number): void {
    const seq = this.seq.get(topic)! + 1;
    this.seq.set(topic, seq);
    this.#publisher.publish(topic, makePayload(topic, seq, Math.round(dueUs), this.#size));
  }

  /**
   * Publishes `ratePerTopic` events/s on every topic for `seconds`, round-robin over the
   * topics. Returns how many events were sent with a due time inside [fromUs, toUs).
   *
   * Back-to-back runs (a warm-up, then the measured window) keep one schedule: a run
   * starts when the event after the previous run's last one is due, not at once. Until
   * session 10 each run started its schedule on the spot, so the window's first event
   * left ~0.1 s (the time it took to open the window) after the warm-up's last one at
   * any rate; at 2 ev/s on 1 × 10,000 it met that event's fan-out still under way and
   * was the window's slowest event for every arm, one of only 20 behind the p99.
   */
  async run(
    ratePerTopic: number,
    seconds: number,
    window?: { fromUs: number; toUs: number },
  ): Promise<number> {
    const total = ratePerTopic * this.#topics.length;
    const startUs = Math.max(nowMicros(), this.#nextDueUs);
    const count = Math.round(total * seconds);
    const intervalUs = 1e6 / total;
    this.#nextDueUs = startUs + count * intervalUs;
    let sent = 0;
    let inWindow = 0;
    await new Promise<void>((resolve) => {
      const tick = (): void => {
        const now = nowMicros();
        const owed = now < startUs ? 0 : Math.min(count, Math.floor((now - startUs) / intervalUs) + 1);
        while (sent < owed) {
          const dueUs = startUs + sent * intervalUs;
          const lagMs = (now - dueUs) / 1000;
          if (lagMs > this.maxLagMs) this.maxLagMs = lagMs;
          if (window && dueUs >= window.fromUs && dueUs < window.toUs) inWindow++;
          this.#send(this.#topics[sent % this.#topics.length]!, dueUs);
          sent++;
        }
        if (sent >= count) resolve();
        else setTimeout(tick, 1);
      };
      tick();
    });
    return inWindow;
  }

  /** `k` events on every topic as fast as the publisher takes them (M5's missed events). */
  burst(k: number): void {
    const now = nowMicros();
    for (let i = 0; i < k; i++) for (const topic of this.#topics) this.#send(topic, now);
  }
}
