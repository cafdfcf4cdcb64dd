import uWS from 'uWebSockets.js';

export { uWS };
export type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_listen_socket } from 'uWebSockets.js';

/**
 * The uWebSockets.js package we install (see docs/adr/0001) silently falls back to a
 * pure-JS implementation on runtimes it has no native build for. The native `App` is a
 * C++ function; the fallback's is JavaScript. We report which one loaded in the start-up
 * log, /healthz and /metrics, and CI fails unless it is the native one.
 */
export const transportKind: 'native' | 'fallback' = /\[native code\]/.test(
  Function.prototype.toString.call(uWS.App),
)
  ? 'native'
  : 'fallback';
