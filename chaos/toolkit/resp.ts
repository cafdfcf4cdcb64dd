import { connect, type Socket } from 'node:net';

/**
 * A minimal RESP2 client for tests: lets a test look at Redis directly (key layout,
 * TTLs, stream lengths) and drive the server (FLUSHALL, SCRIPT FLUSH) without going
 * through the engine under test, and without importing ioredis outside the engine.
 */
export type RespValue = string | number | null | RespValue[] | RespError;

export class RespError extends Error {
  override name = 'RespError';
}

export class RespClient {
  readonly #socket: Socket;
  #buffer = Buffer.alloc(0);
  readonly #waiting: { resolve(v: RespValue): void; reject(e: Error): void }[] = [];
  /** Unsolicited pushes (pub/sub messages) once every command has its reply. */
  readonly messages: RespValue[] = [];
  #subscribed = false;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) => this.#failAll(err));
    socket.on('close', () => this.#failAll(new Error('connection closed')));
  }

  static open(port: number, host = '127.0.0.1', timeoutMs = 2000): Promise<RespClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect to ${host}:${port} timed out`));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(new RespClient(socket));
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  /** Sends one command; rejects on an error reply. */
  async command(...args: (string | number)[]): Promise<RespValue> {
    const reply = await this.raw(...args);
    if (reply instanceof RespError) throw reply;
    return reply;
  }

  /** Sends one command and returns its reply, error replies included. */
  raw(...args: (string | number)[]): Promise<RespValue> {
    const parts = [`*${args.length}\r\n`];
    for (const a of args) {
      const s = String(a);
      parts.push(`$${Buffer.byteLength(s)}\r\n${s}\r\n`);
    }
    return new Promise((resolve, reject) => {
      this.#waiting.push({ resolve, reject });
      this.#socket.write(parts.join(''));
    });
  }

  /** SUBSCRIBE; later messages land in `messages` as [ 'message', channel, payload ]. */
  async subscribe(channel: string): Promise<void> {
    await this.command('SUBSCRIBE', channel);
    this.#subscribed = true;
  }

  close(): void {
    this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    this.#buffer = Buffer.concat([this.#buffer, chunk]);
    for (;;) {
      const parsed = parse(this.#buffer, 0);
      if (!parsed) return;
      this.#buffer = this.#buffer.subarray(parsed.end);
      // Subscribed, a message may arrive between a command and its reply (PING's, say).
      if (this.#subscribed && isPush(parsed.value)) {
        this.messages.push(parsed.value);
        continue;
      }
      const waiter = this.#waiting.shift();
      if (waiter) waiter.resolve(parsed.value);
      else if (this.#subscribed) this.messages.push(parsed.value);
    }
  }

  #failAll(err: Error): void {
    for (const w of this.#waiting.splice(0)) w.reject(err);
  }
}

function isPush(value: RespValue): boolean {
  return (
    Array.isArray(value) && (value[0] === 'message' || value[0] === 'smessage' || value[0] === 'pmessage')
  );
}

function parse(buf: Buffer, at: number): { value: RespValue; end: number } | undefined {
  const lineEnd = buf.indexOf('\r\n', at);
  if (lineEnd < 0) return undefined;
  const type = String.fromCharCode(buf[at]!);
  const line = buf.toString('utf8', at + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
    case '+':
      return { value: line, end: next };
    case '-':
      return { value: new RespError(line), end: next };
    case ':':
      return { value: Number(line), end: next };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, end: next };
      if (buf.length < next + len + 2) return undefined;
      return { value: buf.toString('utf8', next, next + len), end: next + len + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, end: next };
      const items: RespValue[] = [];
      let pos = next;
      for (let i = 0; i < count; i++) {
        const item = parse(buf, pos);
        if (!item) return undefined;
        items.push(item.value);
        pos = item.end;
      }
      return { value: items, end: pos };
    }
    default:
      throw new Error(`unexpected RESP type ${JSON.stringify(type)}`);
  }
}
