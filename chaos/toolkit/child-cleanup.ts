import type { ChildProcess } from 'node:child_process';

/** Something that owns child processes and can kill them synchronously. */
export interface Killable {
  killNow(): void;
}

const live = new Set<Killable>();
let hookInstalled = false;

/**
 * Kills `item`'s children when the test process exits, even if a test forgot to stop
 * them. One hook for every helper that starts servers.
 */
export function killOnExit(item: Killable): void {
  installExitHook();
  live.add(item);
}

export function forget(item: Killable): void {
  live.delete(item);
}

/** Lets the test process exit while `child` still runs (the exit hook then kills it). */
export function unrefChild(child: ChildProcess): void {
  child.unref();
  (child.stdout as { unref?: () => void } | null)?.unref?.();
  (child.stderr as { unref?: () => void } | null)?.unref?.();
}

function installExitHook(): void {
  if (hookInstalled) return;
  hookInstalled = true;
  const killAll = (): void => {
    for (const item of live) item.killNow();
  };
  process.once('exit', killAll);
  // A signal skips 'exit': clean up, then let the signal do what it would have done.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      killAll();
      process.kill(process.pid, signal);
    });
  }
}
