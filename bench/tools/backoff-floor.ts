/**
 * `npx tsx bench/tools/backoff-floor.ts [OUTAGE_MS,…] [CLIENTS]`: when M5's clients come
 * back if the server took no time at all to serve them.
 *
 * Every M5 client follows the same policy (bench/compare/loadgen/worker.ts): after its
 * connection closes it waits a uniform random time in [0, min(cap, base · 2^attempt)) and
 * tries again, and a refused attempt counts one more. A server that is down for OUTAGE_MS
 * therefore sees its clients return spread over the seconds after it listens, and the
 * p99 of "caught up, counted from listening" can be no lower than the p99 of those
 * returns. This prints that floor for each outage (Monte Carlo, refused attempts taking no
 * time, every client noticing the close at the same instant: the SIGKILL case).
 */

const BASE_MS = 100;
const CAP_MS = 5000;

/** Milliseconds from listening to each client's first attempt after the outage, sorted. */
function returnsAfterOutage(outageMs: number, clients: number): Float64Array {
  const at = new Float64Array(clients);
  for (let i = 0; i < clients; i++) {
    let t = 0;
    for (let attempt = 0; t < outageMs; attempt++) {
      t += Math.random() * Math.min(CAP_MS, BASE_MS * 2 ** Math.min(attempt, 20));
    }
    at[i] = t - outageMs;
  }
  return at.sort();
}

function main(): void {
  const outages = (process.argv[2] ?? '500,700,900,1100,1300,1500').split(',').map(Number);
  const clients = Number(process.argv[3] ?? 100_000);
  const q = (sorted: Float64Array, p: number): string =>
    sorted[Math.floor(p * (sorted.length - 1))]!.toFixed(0);
  console.log(`full-jitter backoff, base ${BASE_MS} ms, cap ${CAP_MS} ms; ${clients} clients per outage`);
  console.log('| outage ms | p50 ms | p90 ms | p99 ms | max ms |');
  console.log('| ---: | ---: | ---: | ---: | ---: |');
  for (const outage of outages) {
    const at = returnsAfterOutage(outage, clients);
    console.log(`| ${outage} | ${q(at, 0.5)} | ${q(at, 0.9)} | ${q(at, 0.99)} | ${q(at, 1)} |`);
  }
}

main();
