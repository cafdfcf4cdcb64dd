/**
 * Waits until `cond()` holds (it may be async), re-checked every 10 ms; throws naming
 * `what` after `timeoutMs`. For conditions with no event to await (a process's state, a
 * metric): never a fixed sleep.
 */
export async function until(
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string | (() => string),
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
