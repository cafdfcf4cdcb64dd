/**
 * Preloaded into an arm server by bench:compare (`node --expose-gc --import
 * ./bench/compare/arms/gc-hook.ts …`, the gateway included):
 *
 * - SIGUSR2: two full GCs (`global.gc()`, needs --expose-gc), then one stdout line
 *   `{"msg":"gc","rss":<bytes>,"heapUsed":<bytes>}` — for RSS-per-idle-connection readings.
 * - BENCH_ALLOC_PROF=DIR: V8's sampling heap profiler runs for the whole process life,
 *   counting objects that were already collected too (so it shows allocation, not just
 *   what survives); at exit the profile goes to DIR/<pid>.heapprofile (open it in Chrome
 *   DevTools, or `npx tsx bench/tools/heapprofile-top.ts FILE`).
 * - BENCH_PAUSES=MS (diagnostic runs): every GC pause and every event-loop stall of at
 *   least MS milliseconds becomes one stdout line `{"msg":"pause","what":"gc"|"loop",
 *   "ms":<duration>,"atUs":<start, epoch µs>}`, which bench:compare files under the rate
 *   point it fell in. Stalls are found by a 10 ms interval timer's lateness, so this
 *   costs every arm the same hundred wake-ups a second; it is off unless asked for.
 * - Orphan watch: once re-parented (the benchmark died without cleaning up), the process
 *   sends itself SIGTERM and shuts down like any stop.
 */
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';

const gc = (globalThis as { gc?: () => void }).gc;

process.on('SIGUSR2', () => {
  gc?.();
  gc?.();
  const { rss, heapUsed, heapTotal, external } = process.memoryUsage();
  // committed bytes per V8 space: where RSS above the live heap goes
  const spaces = Object.fromEntries(
    getHeapSpaceStatistics().map((s) => [s.space_name.replace('_space', ''), s.physical_space_size]),
  );
  process.stdout.write(
    `${JSON.stringify({ msg: 'gc', rss, heapUsed, heapTotal, external, spaces, exposed: gc !== undefined })}\n`,
  );
});

const allocDir = process.env['BENCH_ALLOC_PROF'];
if (allocDir) {
  const inspector = await import('node:inspector');
  const { writeFileSync } = await import('node:fs');
  const session = new inspector.Session();
  session.connect();
  session.post('HeapProfiler.startSampling', {
    samplingInterval: 16384,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  // an in-process session answers synchronously, so this works in an exit handler
  process.on('exit', () => {
    session.post('HeapProfiler.stopSampling', (error, result) => {
      if (!error) writeFileSync(`${allocDir}/${process.pid}.heapprofile`, JSON.stringify(result.profile));
    });
  });
}

const pauseMs = Number(process.env['BENCH_PAUSES'] ?? 0);
if (pauseMs > 0) {
  const epochUs = (ms: number): number => Math.round((performance.timeOrigin + ms) * 1000);
  const report = (what: 'gc' | 'loop', ms: number, startMs: number): void => {
    process.stdout.write(
      `${JSON.stringify({ msg: 'pause', what, ms: Math.round(ms * 10) / 10, atUs: epochUs(startMs) })}\n`,
    );
  };
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if (entry.duration >= pauseMs) report('gc', entry.duration, entry.startTime);
    }
  }).observe({ entryTypes: ['gc'] });
  let last = performance.now();
  setInterval(() => {
    const now = performance.now();
    const late = now - last - 10;
    if (late >= pauseMs) report('loop', late, last + 10);
    last = now;
  }, 10).unref();
}

const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.kill(process.pid, 'SIGTERM');
}, 1000).unref();
