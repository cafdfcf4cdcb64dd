import WebSocket from 'ws';
import { Packr, Unpackr } from 'msgpackr';

export type Sub = 'json' | 'msgpack';
export type Frame = Record<string, any>;

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

/**
 * A protocol v1 test client over the `ws` package: sends frames in either subprotocol,
 * queues received frames, and records how the socket closed.
 */
export class TestClient {
  readonly ws: WebSocket;
  readonly sub: Sub;
  readonly frames: Frame[] = [];
  closed: Promise<{ code: number; reason: string }>;
  closeInfo: { code: number; reason: string } | undefined;
  #waiters: Array<() => void> = [];

  private constructor(ws: WebSocket, sub: Sub) {
    this.ws = ws;
    this.sub = sub;
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        resolve(this.closeInfo);
        this.#wake();
      });
    });
    ws.on('message', (data: Buffer, isBinary) => {
      const frame = (isBinary ? unpackr.unpack(data) : JSON.parse(data.toString())) as Frame;
      this.frames.push(frame);
      this.#wake();
    });
  }

  static async connect(url: string, sub: Sub = 'json', protocols?: string[]): Promise<TestClient> {
    const ws = new WebSocket(url, protocols ?? [sub === 'json' ? 'lifeos.v1.json' : 'lifeos.v1.msgpack']);
    const client = new TestClient(ws, sub);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return client;
  }

  send(frame: Frame): void {
    if (this.sub === 'json') this.ws.send(JSON.stringify(frame));
    else this.ws.send(packr.pack(frame), { binary: true });
  }

  sendRaw(data: string | Buffer, binary = false): void {
    this.ws.send(data, { binary });
  }

  /** Waits for the first unread frame matching `pred`, consuming frames up to it. */
  async next(pred: (f: Frame) => boolean = () => true, timeoutMs = 5000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.frames.findIndex(pred);
      if (i >= 0) return this.frames.splice(0, i + 1).at(-1)!;
      if (this.closeInfo)
        throw new Error(`closed ${this.closeInfo.code} ${this.closeInfo.reason} while waiting`);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`timeout waiting for frame; have ${JSON.stringify(this.frames).slice(0, 300)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  op(op: string, timeoutMs?: number): Promise<Frame> {
    return this.next((f) => f.op === op, timeoutMs);
  }

  /** Collects `ev` frames until `count` arrived. */
  async events(count: number, timeoutMs = 5000): Promise<Frame[]> {
    const out: Frame[] = [];
    while (out.length < count) out.push(await this.op('ev', timeoutMs));
    return out;
  }

  /** Resolves with the close code, or rejects after `timeoutMs`. */
  async closeCode(timeoutMs = 5000): Promise<number> {
    const t = setTimeout(() => undefined, timeoutMs);
    try {
      const info = await Promise.race([
        this.closed,
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error('socket did not close')), timeoutMs).unref(),
        ),
      ]);
      return info.code;
    } finally {
      clearTimeout(t);
    }
  }

  /** Frames received and not yet consumed, without waiting. */
  drain(): Frame[] {
    return this.frames.splice(0);
  }

  close(): void {
    this.ws.close();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}

/** Connects and completes `hello`, returning the client and its `welcome`. */
export async function subscribe(
  url: string,
  hello: Frame,
  sub: Sub = 'json',
): Promise<{ client: TestClient; welcome: Frame }> {
  const client = await TestClient.connect(url, sub);
  client.send({ op: 'hello', ...hello });
  const welcome = await client.op('welcome');
  return { client, welcome };
}
