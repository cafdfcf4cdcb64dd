/**
 * The U and W arms' mini-protocol (arms/uws.ts, arms/ws.ts), over client/raw-ws.ts:
 *
 *   client → `{"op":"sub","topic":T}`            server → `{"op":"subok","topic":T}`
 *   publisher → `{"op":"pub","topic":T,"data":P}`  every subscriber of T ← P, byte for byte
 *
 * A delivered frame is the application payload itself (`{"t":…,"seq":N,"pad":"@ts:…@ …"}`,
 * see payload.ts); control frames start with `{"op":`. Per delivery: one byte test, one
 * indexOf for `"seq":`, one for the stamp. No recovery: `reconnect()` subscribes afresh.
 */
import { readStamp } from '../../lib/wire.ts';
import { readUint } from '../payload.ts';
import type {
  ArmClient,
  ArmKind,
  Publisher,
  PublisherOptions,
  SubscribeOptions,
  Subscriber,
  SubscriberHandlers,
} from '../types.ts';
import { parseWsUrl, RawWebSocket, type RawWsHandlers } from './raw-ws.ts';

const SEQ = Buffer.from('"seq":');
const CHAR_O = 0x6f; // the 'o' of `{"op":`

class MiniSubscriber implements Subscriber, RawWsHandlers {
  readonly #host: string;
  readonly #port: number;
  readonly #topic: string;
  readonly #localAddress: string | undefined;
  readonly #handlers: SubscriberHandlers;
  readonly #subFrame: string;
  #ws: RawWebSocket;

  constructor(options: SubscribeOptions) {
    const { host, port } = parseWsUrl(options.url);
    this.#host = host;
    this.#port = port;
    this.#topic = options.topic;
    this.#localAddress = options.localAddress;
    this.#handlers = options.handlers;
    this.#subFrame = JSON.stringify({ op: 'sub', topic: this.#topic });
    this.#ws = this.#open();
  }

  #open(): RawWebSocket {
    return new RawWebSocket(
      { host: this.#host, port: this.#port, path: '/', localAddress: this.#localAddress },
      this,
    );
  }

  onOpen(): void {
    this.#ws.send(this.#subFrame);
  }

  onMessage(data: Buffer): void {
    if (data[2] === CHAR_O) {
      // `{"op":"subok",…}` — the only control frame these servers send
      if (data.includes('"subok"')) this.#handlers.onReady(false);
      return;
    }
    const at = data.indexOf(SEQ);
    if (at < 0) return;
    const from = at + SEQ.length;
    this.#handlers.onEvent(readUint(data, from), readStamp(data, from));
  }

  onClose(code: number): void {
    this.#handlers.onClose(code);
  }

  reconnect(): void {
    if (this.#ws.isOpen) return;
    this.#ws = this.#open();
  }

  publish(payload: string): void {
    if (!this.#ws.isOpen) return;
    this.#ws.send(`{"op":"pub","topic":${JSON.stringify(this.#topic)},"data":${JSON.stringify(payload)}}`);
  }

  close(): void {
    this.#ws.close(1000);
  }

  bytes(): { read: number; written: number } {
    return { read: this.#ws.bytesRead, written: this.#ws.bytesWritten };
  }
}

class MiniPublisher implements Publisher, RawWsHandlers {
  readonly #ws: RawWebSocket;
  readonly #opened: Promise<void>;
  #resolve!: () => void;
  #reject!: (err: Error) => void;
  /** Closed frames: a publish on a closed connection is lost; counted here. */
  dropped = 0;

  constructor(options: PublisherOptions) {
    const { host, port } = parseWsUrl(options.url);
    this.#opened = new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.#ws = new RawWebSocket({ host, port, path: '/', localAddress: options.localAddress }, this);
  }

  opened(): Promise<void> {
    return this.#opened;
  }

  onOpen(): void {
    this.#resolve();
  }

  onMessage(): void {
    /* the servers send publishers nothing */
  }

  onClose(code: number, reason: string): void {
    this.#reject(new Error(`publisher connection closed (${code} ${reason})`));
  }

  publish(topic: string, payload: string): void {
    if (!this.#ws.isOpen) {
      this.dropped++;
      return;
    }
    // topic is a plain id; the payload is JSON-escaped once here and unescaped once by the server
    this.#ws.send(`{"op":"pub","topic":${JSON.stringify(topic)},"data":${JSON.stringify(payload)}}`);
  }

  get pending(): number {
    return 0;
  }

  drain(): Promise<void> {
    return Promise.resolve();
  }

  close(): void {
    this.#ws.close(1000);
  }
}

/** The adapter for one of the two mini-protocol arms. */
export function miniClient(kind: ArmKind): ArmClient {
  return {
    kind,
    subscribe(options: SubscribeOptions): Subscriber {
      return new MiniSubscriber(options);
    },
    async publisher(options: PublisherOptions): Promise<Publisher> {
      const publisher = new MiniPublisher(options);
      await publisher.opened();
      return publisher;
    },
  };
}
