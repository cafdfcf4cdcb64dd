/**
 * Preloaded into an arm server by bench:compare (`node --expose-gc --import
 * ./bench/compare/arms/gc-hook.ts …`, the gateway included):
 *
 * - SIGUSR2: two full GCs (`global.gc()`, needs --expose-gc), then one stdout line
 *   `{"msg":"gc","rss":<bytes>,"heapUsed":<bytes>}` — for RSS-per-idle-connection readings.
 * - Orphan watch (as bench/lib/orphan-watch.ts): once re-parented (the benchmark died
 *   without cleaning up), the process sends itself SIGTERM and shuts down like any stop.
 */
const gc = (globalThis as { gc?: () => void }).gc;

process.on('SIGUSR2', () => {
  gc?.();
  gc?.();
  const { rss, heapUsed } = process.memoryUsage();
  process.stdout.write(`${JSON.stringify({ msg: 'gc', rss, heapUsed, exposed: gc !== undefined })}\n`);
});

const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.kill(process.pid, 'SIGTERM');
}, 1000).unref();
