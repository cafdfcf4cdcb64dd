/**
 * S — Socket.IO 4.8 with connection-state recovery on @socket.io/redis-streams-adapter
 * (ioredis, the same Redis as G), websocket transport only, compression off.
 *
 *   client emits `sub` (T)     → socket.join(T), then emits `subok` (T)
 *   publisher emits `pub` (T, P) → io.to(T).emit('ev', P)   (P: the payload string, untouched)
 *
 * Every broadcast is XADDed to the adapter's Redis stream (that is how it reaches the other
 * nodes, and what recovery replays from); with recovery on, each `ev` carries its stream
 * offset as a last argument. Multi-node: run several of these on one REDIS_URL.
 *
 * Recovery is stock Socket.IO: a socket's state (pid, rooms) is written to Redis
 * (`sio:session:<pid>`, TTL maxDisconnectionDuration) only when the server sees the
 * connection close — on SIGTERM we close every socket ("server shutting down", a
 * recoverable reason) and wait until Redis has those writes before exiting. After a
 * SIGKILL nothing was written, so no client can recover.
 */
import http from 'node:http';
import { createAdapter } from '@socket.io/redis-streams-adapter';
import { Redis } from 'ioredis';
import { Server } from 'socket.io';
import { armEnv, onTerminate, reportListening } from './common.ts';

const { host, port } = armEnv();
const redisUrl = process.env['REDIS_URL'];
if (!redisUrl) {
  console.error('socketio arm: REDIS_URL is required');
  process.exit(1);
}

const redis = new Redis(redisUrl);
redis.on('error', () => {
  /* ioredis reconnects by itself */
});

const httpServer = http.createServer((_req, res) => {
  res.writeHead(404).end();
});

const io = new Server(httpServer, {
  transports: ['websocket'],
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
  connectionStateRecovery: { maxDisconnectionDuration: 120_000, skipMiddlewares: true },
  adapter: createAdapter(redis),
});

io.on('connection', (socket) => {
  socket.on('sub', (topic: unknown) => {
    if (typeof topic !== 'string') return;
    void socket.join(topic);
    socket.emit('subok', topic);
  });
  socket.on('pub', (topic: unknown, data: unknown) => {
    if (typeof topic !== 'string' || typeof data !== 'string') return;
    io.to(topic).emit('ev', data);
  });
});

httpServer.on('error', (err) => {
  console.error(`socketio arm: ${err.message}`);
  process.exit(1);
});

await redis.ping();
httpServer.listen(port, host, () => {
  const address = httpServer.address();
  reportListening(typeof address === 'object' && address !== null ? address.port : port);
});

onTerminate(async () => {
  httpServer.close();
  // persists every socket's session (a SET each, queued synchronously), closes the engine
  void io.close();
  // ioredis answers in order: once PING is back, every SET before it is in Redis
  await redis.ping();
  await redis.quit();
});
