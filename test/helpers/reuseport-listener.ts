import uWS from 'uWebSockets.js';
import { reportListening, workerIndex } from '../../src/supervisor/ipc.ts';

/**
 * A bare uWebSockets.js listener on HOST:PORT, with the SO_REUSEPORT that uSockets sets on
 * every socket bound to a given port: the "other gateway" of the port-sharing tests. GET
 * /healthz answers `{ node }` like the gateway's. Forked by a Supervisor it reports
 * "listening" over IPC as a worker does; run on its own it prints `listening <port>`.
 */
const host = process.env.HOST ?? '127.0.0.1';
const port = Number(process.env.PORT);
const node = process.env.NODE_ID ?? 'foreign';

uWS
  .App()
  .get('/healthz', (res) => {
    res.end(JSON.stringify({ node }));
  })
  .listen(host, port, (socket) => {
    if (!socket) {
      process.stderr.write(`cannot listen on ${host}:${port}\n`);
      process.exit(1);
    }
    if (workerIndex() !== undefined) reportListening({ port, node, engine: 'none', transport: 'native' });
    else process.stdout.write(`listening ${port}\n`);
  });
process.on('SIGTERM', () => process.exit(0));
