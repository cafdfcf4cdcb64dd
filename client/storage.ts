/**
 * Durable checkpoints: where a subscription's application left off, so a page reload or
 * an app restart resumes instead of starting over.
 *
 * A checkpoint is written after the application's `event` listener returned for `lastSeq`
 * (and before that seq is acknowledged to the gateway), and when a connection is welcomed
 * (new resume token, epoch). `resumeToken` names the gateway-side subscriber; it is valid
 * for `resumeWindowMs` after the last connection closed. `epoch` is the stream's epoch at
 * `lastSeq`: a resume with another epoch is refused (4011) instead of silently
 * continuing a rebuilt stream.
 */
export interface Checkpoint {
  sessionId: string;
  /** The last seq the application processed; 0 before any. */
  lastSeq: number;
  epoch?: string;
  resumeToken?: string;
  subscriberId?: string;
  /** ms since the epoch, when written. */
  updatedAt: number;
}

/**
 * Where checkpoints live. Every method may be synchronous or return a promise (React
 * Native's AsyncStorage, IndexedDB). Calls for one subscription are never concurrent:
 * the SDK awaits each before the next.
 */
export interface CheckpointStorage {
  get(key: string): Checkpoint | undefined | Promise<Checkpoint | undefined>;
  set(key: string, checkpoint: Checkpoint): void | Promise<void>;
  delete(key: string): void | Promise<void>;
}

/** Checkpoints in a Map: they live as long as this object (the default; no reload resume). */
export function memoryStorage(): CheckpointStorage {
  const map = new Map<string, Checkpoint>();
  return {
    get: (key) => {
      const cp = map.get(key);
      return cp && { ...cp };
    },
    set: (key, cp) => void map.set(key, { ...cp }),
    delete: (key) => void map.delete(key),
  };
}

/**
 * A string key-value store: `localStorage` and `sessionStorage` (synchronous), React
 * Native's AsyncStorage (`getItem`/`setItem`/`removeItem` returning promises), or any
 * wrapper with the same three methods.
 */
export interface KeyValueStore {
  getItem(key: string): string | null | undefined | Promise<string | null | undefined>;
  setItem(key: string, value: string): void | Promise<void>;
  removeItem(key: string): void | Promise<void>;
}

function parseCheckpoint(raw: string | null | undefined): Checkpoint | undefined {
  if (raw == null) return undefined;
  try {
    const cp = JSON.parse(raw) as Partial<Checkpoint> | null;
    if (!cp || typeof cp.sessionId !== 'string' || typeof cp.lastSeq !== 'number') return undefined;
    return cp as Checkpoint;
  } catch {
    return undefined; // a corrupt entry is as good as none
  }
}

/** Checkpoints as JSON strings in a KeyValueStore, under `prefix + key`. */
export function keyValueStorage(store: KeyValueStore, prefix = 'lifeos:'): CheckpointStorage {
  return {
    get: async (key) => parseCheckpoint(await store.getItem(prefix + key)),
    set: (key, cp) => store.setItem(prefix + key, JSON.stringify(cp)),
    delete: (key) => store.removeItem(prefix + key),
  };
}

/**
 * Checkpoints in the browser's `localStorage` under `prefix + key`, so they survive a page
 * reload. Tabs of one origin share it: two tabs subscribing with the same key resume the
 * same subscriber, and the gateway keeps only the later one (the other gets 4009).
 */
export function localStorageStorage(prefix = 'lifeos:', store?: KeyValueStore): CheckpointStorage {
  const resolved = store ?? (globalThis as { localStorage?: KeyValueStore }).localStorage;
  if (!resolved) throw new TypeError('localStorageStorage: no localStorage in this environment');
  return keyValueStorage(resolved, prefix);
}
