/**
 * Preloaded into the gateway process by the benchmark (`node --import tsx --import
 * ./bench/lib/orphan-watch.ts src/main.ts`): if the benchmark parent dies without
 * cleaning up (SIGKILL, OOM), the gateway notices it was re-parented and shuts itself
 * down with SIGTERM, like any drain. One unref'd 1 s timer; nothing else.
 */
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.kill(process.pid, 'SIGTERM');
}, 1000).unref();
