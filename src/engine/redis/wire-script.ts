import { createHash } from 'node:crypto';
import { Command } from 'ioredis';

/**
 * A script call written as one Buffer of RESP (issue 6). ioredis writes a command by
 * string concatenation, five or so strings per argument, then encodes the result again
 * when the socket writes it; the batched scripts carry thousands of arguments a second,
 * which made that the engine's largest allocator. Here each call is encoded once, straight
 * into one Buffer, and handed to ioredis as a Command, so its queue, reply matching,
 * timeouts and reconnect rules stay as they are.
 *
 * Script loading follows ioredis's own scheme: the first call on a socket is EVAL (which
 * also loads the script), later ones EVALSHA; a NOSCRIPT answer (Redis restarted, SCRIPT
 * FLUSH) marks the socket as not loaded and the call is sent once more, as EVAL.
 *
 * One Redis only: a Cluster client routes a command by the keys in its arguments, which
 * an opaque Buffer does not show it, so the cluster keeps ioredis's own script commands.
 */
export interface CommandSender {
  /** ioredis's Redis#sendCommand: queues the command and returns its promise. */
  sendCommand(command: Command): unknown;
}

type Arg = string | number;

const CRLF = 0x0d0a;

export class WireScript {
  readonly #evalHead: Buffer;
  readonly #evalshaHead: Buffer;
  /** Sockets this script is loaded on (as far as we know). */
  readonly #loaded = new WeakSet<object>();

  constructor(lua: string) {
    const sha = createHash('sha1').update(lua).digest('hex');
    this.#evalHead = encodeItems(['eval', lua]);
    this.#evalshaHead = encodeItems(['evalsha', sha]);
  }

  /** Runs the script with `numberOfKeys` followed by keys and args; replies as ioredis's utf8 commands do. */
  run(client: CommandSender, keys: readonly Arg[], args: readonly Arg[]): Promise<unknown> {
    const items: Arg[] = [keys.length];
    for (const k of keys) items.push(k);
    for (const a of args) items.push(a);
    const body = encodeItems(items);
    const count = items.length + 2;
    const first = new WireCommand(this, body, count);
    client.sendCommand(first);
    return first.promise.catch((err: unknown) => {
      if (!(err instanceof Error) || !err.message.includes('NOSCRIPT')) throw err;
      if (first.socket) this.#loaded.delete(first.socket);
      const again = new WireCommand(this, body, count);
      client.sendCommand(again);
      return again.promise;
    });
  }

  /** The bytes for `socket`: EVAL the first time on it, EVALSHA after. */
  bytesFor(socket: object, body: Buffer, count: number): Buffer {
    const loaded = this.#loaded.has(socket);
    if (!loaded) this.#loaded.add(socket);
    return join(count, loaded ? this.#evalshaHead : this.#evalHead, body);
  }
}

/** One call, as ioredis queues it; its name only feeds ioredis's flags (not blocking, not pub/sub). */
class WireCommand extends Command {
  socket: object | undefined;
  readonly #script: WireScript;
  readonly #body: Buffer;
  readonly #count: number;

  constructor(script: WireScript, body: Buffer, count: number) {
    super('evalsha', [], { replyEncoding: 'utf8' });
    this.#script = script;
    this.#body = body;
    this.#count = count;
  }

  override toWritable(socket: object): Buffer {
    this.socket = socket;
    return this.#script.bytesFor(socket, this.#body, this.#count);
  }
}

/** `*<count>\r\n` + head + body, in one Buffer. */
function join(count: number, head: Buffer, body: Buffer): Buffer {
  const prefix = `*${count}\r\n`;
  const out = Buffer.allocUnsafe(prefix.length + head.length + body.length);
  let at = out.write(prefix, 0, 'latin1');
  at += head.copy(out, at);
  body.copy(out, at);
  return out;
}

/** Bulk strings for `items`, back to back, in one Buffer. */
export function encodeItems(items: readonly Arg[]): Buffer {
  const texts: string[] = new Array<string>(items.length);
  const lengths: number[] = new Array<number>(items.length);
  let size = 0;
  for (let i = 0; i < items.length; i++) {
    const item = items[i]!;
    const text = typeof item === 'number' ? String(item) : item;
    const length = Buffer.byteLength(text, 'utf8');
    texts[i] = text;
    lengths[i] = length;
    size += 1 + digits(length) + 2 + length + 2;
  }
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (let i = 0; i < texts.length; i++) {
    const length = lengths[i]!;
    out[at++] = 0x24; // $
    at = writeDigits(out, at, length);
    at = out.writeUInt16BE(CRLF, at);
    at += out.write(texts[i]!, at, length, 'utf8');
    at = out.writeUInt16BE(CRLF, at);
  }
  return out;
}

function digits(n: number): number {
  let d = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    d++;
  }
  return d;
}

function writeDigits(out: Buffer, at: number, n: number): number {
  const end = at + digits(n);
  for (let i = end - 1; i >= at; i--) {
    out[i] = 0x30 + (n % 10);
    n = Math.floor(n / 10);
  }
  return end;
}
