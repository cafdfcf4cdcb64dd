/**
 * A minimal typed event emitter: `on` returns its own unsubscribe function. A listener
 * that throws does not stop the others (its error goes to `onListenerError`).
 */
export class Emitter<Events extends { [K in keyof Events]: unknown }> {
  readonly #listeners = new Map<keyof Events, Set<(value: never) => unknown>>();
  readonly #onListenerError: (err: unknown, name: keyof Events) => void;

  constructor(onListenerError: (err: unknown, name: keyof Events) => void = () => {}) {
    this.#onListenerError = onListenerError;
  }

  on<K extends keyof Events>(name: K, listener: (value: Events[K]) => unknown): () => void {
    let set = this.#listeners.get(name);
    if (!set) this.#listeners.set(name, (set = new Set()));
    const fn = listener as (value: never) => unknown;
    set.add(fn);
    return () => {
      set.delete(fn);
    };
  }

  /** The listeners of `name` at this moment, in registration order. */
  listeners<K extends keyof Events>(name: K): Array<(value: Events[K]) => unknown> {
    return [...(this.#listeners.get(name) ?? [])] as Array<(value: Events[K]) => unknown>;
  }

  emit<K extends keyof Events>(name: K, value: Events[K]): void {
    for (const listener of this.listeners(name)) {
      try {
        const result = listener(value);
        if (result instanceof Promise) result.catch((err: unknown) => this.#onListenerError(err, name));
      } catch (err) {
        this.#onListenerError(err, name);
      }
    }
  }
}
