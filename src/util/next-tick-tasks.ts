/**
 * `setImmediate(task)` for many tasks, from one setImmediate per event-loop turn.
 *
 * Each session actor defers its append and its checkpoint writes to the end of the turn,
 * so that what arrived in the turn goes out together. With thousands of sessions that was
 * thousands of Immediate objects and closures per turn (issue 6: a third of a publish's
 * allocations in the many-sessions shape); here a turn costs one Immediate and an array
 * slot per task. Tasks run in the order they were scheduled, as setImmediate runs them, and
 * a task scheduled while the tasks run waits for the next turn, as with setImmediate.
 *
 * Tasks must be functions made once (bound methods), not closures made per call, or the
 * point is lost; a task that throws is reported as uncaught, after the others have run.
 */
export class NextTickTasks {
  #due: (() => void)[] = [];
  #spare: (() => void)[] = [];
  readonly #run = (): void => {
    const due = this.#due;
    this.#due = this.#spare;
    for (let i = 0; i < due.length; i++) {
      try {
        due[i]!();
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
    due.length = 0;
    this.#spare = due;
  };

  schedule(task: () => void): void {
    if (this.#due.push(task) === 1) setImmediate(this.#run);
  }
}

/** The tasks of this process's session actors. */
export const actorTicks = new NextTickTasks();
