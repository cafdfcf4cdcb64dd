import type { Codec } from '../codec/index.ts';
import { negotiate } from '../codec/index.ts';
import type { Engine } from '../engine/engine.ts';
import { inspectorRoutes, type InspectorRouteDeps } from '../inspector/routes.ts';
import { GatewayError } from '../errors/gateway-error.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { CloseCodes } from '../protocol/close-codes.ts';
import { TRY_AGAIN_LATER } from '../session/close-reason.ts';
import { Connection } from '../session/connection.ts';
import type { RealtimeHandler } from '../session/realtime-handler.ts';
import type { Sink } from '../session/sink.ts';
import { errorReply, notFound, route, type HttpReply, type RouteHandler } from './http/context.ts';
import * as livekit from './http/livekit-routes.ts';
import type { LiveKitRouteDeps } from './http/livekit-routes.ts';
import * as sessions from './http/session-routes.ts';
import type { SessionRouteDeps } from './http/session-routes.ts';
import { transportKind, uWS, type TemplatedApp, type WebSocket, type us_listen_socket } from './uws.ts';

export interface ServerOptions {
  host: string;
  port: number;
  /** Listen sockets to open on the port (see listen()). */
  listenSockets: number;
  nodeId: string;
  maxFrameBytes: number;
  maxBodyBytes: number;
  backpressureBytes: number;
  heartbeatMs: number;
}

export interface ServerDeps {
  realtime: RealtimeHandler;
  routes: SessionRouteDeps;
  livekit: LiveKitRouteDeps;
  /** The session inspector's routes, when CONSOLE_ENABLED (src/inspector/routes.ts). */
  inspector?: InspectorRouteDeps;
  engine: Engine;
  metrics: Metrics;
  logger: Logger;
}

interface SocketData {
  codec: Codec;
  conn: Connection | undefined;
}

/**
 * The uWebSockets.js server: `/v1/realtime` plus the HTTP routes, on one port. This is
 * the only place that touches uWS sockets; everything below works on Connection/Sink.
 */
export class GatewayServer {
  readonly #opts: ServerOptions;
  readonly #deps: ServerDeps;
  readonly #app: TemplatedApp;
  readonly #SocketSink: new (ws: WebSocket<SocketData>) => SocketSink;
  #connections = 0;
  #serial = 0;
  #listenSockets: us_listen_socket[] = [];
  #port = 0;
  #draining = false;

  constructor(opts: ServerOptions, deps: ServerDeps) {
    this.#opts = opts;
    this.#deps = deps;
    this.#SocketSink = socketSinkClass(deps.metrics);
    this.#app = uWS.App();
    deps.metrics.readinessProbe = async () => (await this.#ready()).status === 200;
    this.#routes();
    this.#websocket();
  }

  get port(): number {
    return this.#port;
  }

  get connectionCount(): number {
    return this.#connections;
  }

  /** Listen sockets open now: `listenSockets` after listen(), none once draining. */
  get listenSocketCount(): number {
    return this.#listenSockets.length;
  }

  /**
   * Opens `listenSockets` listen sockets on one port and resolves with the port.
   *
   * uSockets gives a listen socket a backlog of 512, fixed in its C code, and the socket
   * drains that queue only when the event loop reaches it. In a reconnect storm a busy
   * loop turn outlasts 512 arrivals: the kernel then drops the SYNs, and each of those
   * clients waits a whole second for TCP to retry (issue 6's M5: 10,000 clients coming
   * back overflowed one socket's queue in 6 of 12 runs, by up to 1,928, and eight sockets'
   * in none of 12; docs/bench/2026-11-30-listen-sockets-ab.txt). The sockets share the port
   * through SO_REUSEPORT, which uSockets sets on Linux, and the kernel spreads handshakes
   * over their queues. Where a second socket cannot bind (the JS fallback), one serves.
   */
  async listen(): Promise<number> {
    const { host, port, listenSockets } = this.#opts;
    const first =
      port === 0 && listenSockets > 1 ? await this.#listenOnFreePort() : await this.#listenOn(port);
    if (!first) throw new Error(`cannot listen on ${host}:${port}`);
    this.#listenSockets.push(first);
    this.#port = uWS.us_socket_local_port(first);
    while (this.#listenSockets.length < listenSockets) {
      const another = await this.#listenOn(this.#port);
      if (!another) {
        this.#deps.logger.warn(
          { port: this.#port, open: this.#listenSockets.length, wanted: listenSockets },
          'cannot open another listen socket on the port',
        );
        break;
      }
      this.#listenSockets.push(another);
    }
    return this.#port;
  }

  /**
   * uSockets sets SO_REUSEPORT only on a socket bound to a given port, so a socket bound
   * to port 0 cannot share its port. The free port it found is bound again, to share;
   * should another process take it in between, another free port is tried.
   */
  async #listenOnFreePort(): Promise<us_listen_socket | false> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const probe = await this.#listenOn(0);
      if (!probe) return false;
      const port = uWS.us_socket_local_port(probe);
      uWS.us_listen_socket_close(probe);
      const socket = await this.#listenOn(port);
      if (socket) return socket;
    }
    return false;
  }

  #listenOn(port: number): Promise<us_listen_socket | false> {
    return new Promise((resolve) => this.#app.listen(this.#opts.host, port, resolve));
  }

  /** Stops accepting connections and upgrades; open sockets stay until closed. */
  stopAccepting(): void {
    this.#draining = true;
    for (const socket of this.#listenSockets) uWS.us_listen_socket_close(socket);
    this.#listenSockets = [];
  }

  /** Closes sockets that are not attached to a session (still saying hello). */
  closeUnattached(code: number, reason: string): void {
    this.#deps.realtime.closeUnattached(code, reason);
  }

  #routes(): void {
    const { logger } = this.#deps;
    const maxBodyBytes = this.#opts.maxBodyBytes;
    const get = (path: string, handler: RouteHandler, paramCount = 0): void => {
      this.#app.get(path, route(handler, { paramCount, maxBodyBytes, logger }));
    };
    const post = (path: string, handler: RouteHandler, paramCount = 0): void => {
      this.#app.post(path, route(handler, { paramCount, body: true, maxBodyBytes, logger }));
    };
    const d = this.#deps.routes;

    get('/healthz', () => this.#health());
    get('/readyz', () => this.#ready());
    get('/metrics', () => this.#metrics());
    post('/v1/call/sessions', (ctx) => sessions.createSession(d, ctx));
    get('/v1/call/sessions', (ctx) => sessions.listSessions(d, ctx));
    get('/v1/call/sessions/:id', (ctx) => sessions.getSession(d, ctx), 1);
    get('/v1/call/sessions/:id/events', (ctx) => sessions.listEvents(d, ctx), 1);
    post('/v1/call/sessions/:id/events', (ctx) => sessions.ingestEvent(d, ctx), 1);
    post('/v1/call/sessions/:id/transitions', (ctx) => sessions.transitionSession(d, ctx), 1);
    const lk = this.#deps.livekit;
    post('/v1/call/sessions/:id/livekit-token', (ctx) => livekit.livekitToken(lk, ctx), 1);
    this.#app.post(
      '/v1/webhooks/livekit',
      route((ctx) => livekit.livekitWebhook(lk, ctx), { body: 'raw', maxBodyBytes, logger }),
    );
    if (this.#deps.inspector) {
      for (const r of inspectorRoutes(this.#deps.inspector)) get(r.path, r.handler, r.paramCount);
    }
    this.#app.any(
      '/*',
      route(() => notFound(), { maxBodyBytes, logger }),
    );
  }

  #health(): HttpReply {
    return {
      status: 200,
      body: {
        status: 'ok',
        node: this.#opts.nodeId,
        transport: transportKind,
        engine: this.#deps.engine.kind,
      },
    };
  }

  async #ready(): Promise<HttpReply> {
    if (this.#draining) return errorReply(new GatewayError('draining'));
    try {
      await this.#deps.engine.ping();
    } catch {
      return errorReply(new GatewayError('unavailable', 'the engine does not answer'));
    }
    return { status: 200, body: { status: 'ready', engine: this.#deps.engine.kind } };
  }

  async #metrics(): Promise<HttpReply> {
    const { registry } = this.#deps.metrics;
    return {
      status: 200,
      body: undefined,
      raw: { contentType: registry.contentType, text: await registry.metrics() },
    };
  }

  #websocket(): void {
    const { realtime, logger } = this.#deps;
    const opts = this.#opts;
    this.#app.ws<SocketData>('/v1/realtime', {
      compression: uWS.DISABLED,
      // uWS cuts a frame above its own cap with no close frame (1006). Let frames up to
      // 4× the limit in so we can close them properly with 1009; beyond that, uWS cuts.
      maxPayloadLength: opts.maxFrameBytes * 4,
      // We pause a connection at backpressureBytes ourselves and never queue more than one
      // frame past it; uWS's own cap is a backstop that should never be reached.
      maxBackpressure: opts.backpressureBytes * 2 + opts.maxFrameBytes,
      closeOnBackpressureLimit: 0,
      idleTimeout: Math.max(8, Math.ceil((opts.heartbeatMs * 2) / 1000)),
      sendPingsAutomatically: true,
      upgrade: (res, req, context) => {
        const offered = req.getHeader('sec-websocket-protocol');
        const codec = negotiate(offered);
        if (!codec || this.#draining) {
          const error = this.#draining
            ? new GatewayError('draining')
            : new GatewayError('bad_request', 'offer subprotocol lifeos.v1.json or lifeos.v1.msgpack');
          res.writeStatus(this.#draining ? '503 Service Unavailable' : '400 Bad Request');
          res.writeHeader('content-type', 'application/json');
          res.end(JSON.stringify(errorReply(error).body));
          return;
        }
        res.upgrade<SocketData>(
          { codec, conn: undefined },
          req.getHeader('sec-websocket-key'),
          codec.subprotocol,
          req.getHeader('sec-websocket-extensions'),
          context,
        );
      },
      open: (ws) => {
        const data = ws.getUserData();
        const conn = new Connection(++this.#serial, data.codec, new this.#SocketSink(ws));
        data.conn = conn;
        this.#connections++;
        realtime.opened(conn);
      },
      message: (ws, message, isBinary) => {
        const conn = ws.getUserData().conn;
        if (!conn) return;
        if (message.byteLength > opts.maxFrameBytes) {
          conn.close(MESSAGE_TOO_BIG, 'frame too large');
          return;
        }
        try {
          realtime.message(conn, message, isBinary);
        } catch (err) {
          // A bug met by one frame ends that connection, not the process (a throw in a
          // uWS handler is uncaught) and so not everyone else's.
          logger.error({ err, connection: conn.serial }, 'frame handler failed');
          conn.close(TRY_AGAIN_LATER, 'internal');
        }
      },
      drain: (ws) => {
        const conn = ws.getUserData().conn;
        if (conn) realtime.drained(conn);
      },
      close: (ws) => {
        const conn = ws.getUserData().conn;
        if (!conn) return;
        (conn.sink as SocketSink).closed();
        this.#connections--;
        try {
          realtime.closed(conn);
        } catch (err) {
          logger.error({ err }, 'close handler failed');
        }
      },
    });
  }
}

/** RFC 6455 "message too big". */
const MESSAGE_TOO_BIG = 1009;

interface SocketSink extends Sink {
  /** uWS reported the close: from now on every call is a no-op. */
  closed(): void;
}

/**
 * The Sink over a uWS socket, as a class per server: its methods share the server's
 * metrics, so an instance holds nothing but the socket (undefined once closed). One small
 * object per connection, held for as long as the connection lives, instead of five
 * closures and their context.
 */
function socketSinkClass(metrics: Metrics): new (ws: WebSocket<SocketData>) => SocketSink {
  return class UwsSink implements SocketSink {
    #ws: WebSocket<SocketData> | undefined;

    constructor(ws: WebSocket<SocketData>) {
      this.#ws = ws;
    }

    closed(): void {
      this.#ws = undefined;
    }

    send(bytes: Uint8Array, binary: boolean): boolean {
      const ws = this.#ws;
      if (!ws) return false;
      // uWS: 1 sent, 0 queued (backpressure), 2 dropped at maxBackpressure. A dropped
      // frame would be a silent gap, so the connection is cut instead; the client resumes
      // from its checkpoint and loses nothing.
      const result = ws.send(bytes, binary, false);
      if (result === 2) {
        metrics.closes.inc({ code: String(CloseCodes.slow_consumer) });
        this.close(CloseCodes.slow_consumer, 'slow_consumer');
        return false;
      }
      return result === 1;
    }

    bufferedAmount(): number {
      return this.#ws ? this.#ws.getBufferedAmount() : 0;
    }

    cork(fn: () => void): void {
      if (!this.#ws) return fn();
      this.#ws.cork(fn);
    }

    close(code: number, reason: string): void {
      const ws = this.#ws;
      if (!ws) return;
      this.#ws = undefined;
      ws.end(code, reason);
    }
  };
}
