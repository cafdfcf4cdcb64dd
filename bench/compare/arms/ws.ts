/**
 * W — a plain `ws` WebSocketServer (perMessageDeflate off), same mini-protocol as U:
 *
 *   client → `{"op":"sub","topic":T}`   → join T, reply `{"op":"subok","topic":T}`
 *   client → `{"op":"pub","topic":T,"data":P}` → every subscriber of T ← P (text)
 *
 * Broadcast without per-subscriber framing: a publish builds ONE complete unmasked text
 * frame (header + payload in one Buffer) and hands that same Buffer to each subscriber's
 * net.Socket (`ws._socket.write(frame)`). `ws.send(buf)` would not do: it runs
 * `Sender.frame` per call (a new header buffer and a corked two-buffer write per
 * subscriber). Writing beside the Sender is safe here because with compression off the
 * Sender never queues (its writes are synchronous), so frames cannot interleave.
 * Backpressure: a subscriber with more than 1 MiB unsent is skipped for that publish (a gap,
 * like uWS's maxBackpressure). No server pings (plain `ws` has none by default).
 */
import type { Socket } from 'node:net';
import { WebSocketServer, WebSocket } from 'ws';
import { armEnv, MAX_BACKPRESSURE, MAX_PAYLOAD, onTerminate, reportListening } from './common.ts';

const { host, port } = armEnv();

interface Frame {
  op?: unknown;
  topic?: unknown;
  data?: unknown;
}

interface Client {
  ws: WebSocket;
  socket: Socket;
  topics: string[];
}

const topics = new Map<string, Set<Client>>();
let skipped = 0;

/** A complete server→client text frame: FIN, opcode 1, no mask. */
function textFrame(data: string): Buffer {
  const size = Buffer.byteLength(data);
  const header = size < 126 ? 2 : size < 65_536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(header + size);
  frame[0] = 0x81;
  if (header === 2) {
    frame[1] = size;
  } else if (header === 4) {
    frame[1] = 126;
    frame.writeUInt16BE(size, 2);
  } else {
    frame[1] = 127;
    frame.writeUInt32BE(Math.floor(size / 0x100000000), 2);
    frame.writeUInt32BE(size >>> 0, 6);
  }
  frame.write(data, header, 'utf8');
  return frame;
}

function publish(topic: string, data: string): void {
  const subscribers = topics.get(topic);
  if (!subscribers || subscribers.size === 0) return;
  const frame = textFrame(data);
  for (const client of subscribers) {
    if (client.ws.readyState !== WebSocket.OPEN) continue;
    if (client.socket.writableLength > MAX_BACKPRESSURE) {
      skipped++;
      continue;
    }
    client.socket.write(frame);
  }
}

const wss = new WebSocketServer({
  host,
  port,
  perMessageDeflate: false,
  clientTracking: false,
  maxPayload: MAX_PAYLOAD,
  skipUTF8Validation: true,
});

wss.on('connection', (ws) => {
  const client: Client = { ws, socket: (ws as unknown as { _socket: Socket })._socket, topics: [] };
  ws.on('message', (raw: Buffer, isBinary: boolean) => {
    if (isBinary) return;
    let frame: Frame;
    try {
      frame = JSON.parse(raw.toString('utf8')) as Frame;
    } catch {
      ws.close(1003, 'bad frame');
      return;
    }
    if (typeof frame.topic !== 'string') return;
    if (frame.op === 'pub' && typeof frame.data === 'string') {
      publish(frame.topic, frame.data);
    } else if (frame.op === 'sub') {
      let set = topics.get(frame.topic);
      if (!set) topics.set(frame.topic, (set = new Set()));
      if (!set.has(client)) {
        set.add(client);
        client.topics.push(frame.topic);
      }
      ws.send(`{"op":"subok","topic":${JSON.stringify(frame.topic)}}`);
    }
  });
  ws.on('close', () => {
    for (const topic of client.topics) {
      const set = topics.get(topic);
      set?.delete(client);
      if (set?.size === 0) topics.delete(topic);
    }
  });
  ws.on('error', () => {
    /* a reset connection: 'close' follows */
  });
});

wss.on('listening', () => {
  const address = wss.address();
  reportListening(typeof address === 'object' && address !== null ? address.port : port);
});

wss.on('error', (err) => {
  console.error(`ws arm: ${err.message}`);
  process.exit(1);
});

onTerminate(() => {
  if (skipped > 0) console.error(JSON.stringify({ msg: 'backpressure skips', skipped }));
  // stops listening at once; the callback would wait for every upgraded socket to end
  wss.close();
});
