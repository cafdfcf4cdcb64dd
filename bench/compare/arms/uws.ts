/**
 * U — raw uWebSockets.js pub/sub, the practical ceiling: no persistence, at-most-once.
 *
 *   client → `{"op":"sub","topic":T}`   → ws.subscribe(T), reply `{"op":"subok","topic":T}`
 *   client → `{"op":"pub","topic":T,"data":P}` → app.publish(T, P) (text, P byte-identical)
 *
 * Compression off, text frames, idle timeout 120 s with uWS's automatic pings, frames up to
 * 64 KiB. Backpressure: at most 1 MiB unsent per socket (`maxBackpressure`); uWS skips a
 * publish for a subscriber over it (the subscriber sees a gap — U is at-most-once), or closes
 * that socket when CLOSE_ON_BACKPRESSURE=1. No logging per message.
 */
import uWS from 'uWebSockets.js';
import { armEnv, MAX_BACKPRESSURE, MAX_PAYLOAD, onTerminate, reportListening } from './common.ts';

const { host, port } = armEnv();
const closeOnLimit = process.env['CLOSE_ON_BACKPRESSURE'] === '1';

interface Frame {
  op?: unknown;
  topic?: unknown;
  data?: unknown;
}

const app = uWS.App();
app.ws<Record<string, never>>('/*', {
  compression: uWS.DISABLED,
  maxPayloadLength: MAX_PAYLOAD,
  idleTimeout: 120,
  maxBackpressure: MAX_BACKPRESSURE,
  closeOnBackpressureLimit: closeOnLimit ? 1 : 0,
  sendPingsAutomatically: true,
  message: (ws, message) => {
    let frame: Frame;
    try {
      frame = JSON.parse(Buffer.from(message).toString('utf8')) as Frame;
    } catch {
      ws.end(1003, 'bad frame');
      return;
    }
    if (typeof frame.topic !== 'string') return;
    if (frame.op === 'pub' && typeof frame.data === 'string') {
      app.publish(frame.topic, frame.data, false, false);
    } else if (frame.op === 'sub') {
      ws.subscribe(frame.topic);
      ws.send(`{"op":"subok","topic":${JSON.stringify(frame.topic)}}`, false, false);
    }
  },
});

let listenSocket: uWS.us_listen_socket | undefined;
app.listen(host, port, (socket) => {
  if (!socket) {
    console.error(`uws arm: cannot listen on ${host}:${port}`);
    process.exit(1);
  }
  listenSocket = socket;
  reportListening(uWS.us_socket_local_port(socket));
});

onTerminate(() => {
  if (listenSocket) uWS.us_listen_socket_close(listenSocket);
  listenSocket = undefined;
});
