/**
 * The one message a worker sends its primary over the fork IPC channel: "I am
 * listening". The primary logs its own `listening` line once every worker sent it.
 */
export interface ListeningMessage {
  type: 'lifeos:listening';
  port: number;
  node: string;
  engine: string;
  transport: string;
}

/** Set in a worker's environment by the primary: the worker's slot index. Internal. */
export const WORKER_ENV = 'LIFEOS_GATEWAY_WORKER';

export function isListeningMessage(message: unknown): message is ListeningMessage {
  if (typeof message !== 'object' || message === null) return false;
  const m = message as Record<string, unknown>;
  return (
    m['type'] === 'lifeos:listening' &&
    typeof m['port'] === 'number' &&
    typeof m['node'] === 'string' &&
    typeof m['engine'] === 'string' &&
    typeof m['transport'] === 'string'
  );
}

/**
 * The worker index this process was started with, when it runs as a worker of a
 * primary (an IPC channel and the marker variable); undefined otherwise.
 */
export function workerIndex(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env[WORKER_ENV];
  if (raw === undefined || !/^\d+$/.test(raw) || typeof process.send !== 'function') return undefined;
  return Number(raw);
}

/** Tells the primary this worker listens. Never throws: the primary may be gone already. */
export function reportListening(message: Omit<ListeningMessage, 'type'>): void {
  const full: ListeningMessage = { type: 'lifeos:listening', ...message };
  try {
    process.send?.(full, undefined, undefined, () => {
      /* a closed channel: the primary is gone, and 'disconnect' handles that */
    });
  } catch {
    /* same */
  }
}
