import { connect, type Socket } from 'node:net';
import { clearImmediate, clearTimeout, setImmediate, setTimeout } from 'node:timers';

/**
 * One proxied connection of a FaultProxy (see fault-proxy.ts): the accepted client socket,
 * the socket to the target, and one Pipe per direction between them. Faults, blackhole
 * state and counters are read live from the proxy (LinkEnv), so setFaults() and
 * blackhole() reach connections that are already open.
 */

/** up = client → target, down = target → client. */
export type Direction = 'up' | 'down';

export interface Faults {
  /** Added to every chunk, in ms. */
  latencyMs?: number;
  /** Extra random delay per chunk, 0..jitterMs ms; can only delay, never reorder. */
  jitterMs?: number;
  /** Token bucket per direction per connection (bursts of at most 50 ms worth). */
  bandwidthBytesPerSec?: number;
  /** Deliver in pieces of at most N bytes, each its own write(), so the peer sees partial frames. */
  sliceBytes?: number;
  /**
   * Gap between two slices of a chunk, in ms. 0 (default) = the next event-loop turn, which
   * is enough for a reader in this process; a reader in another process may still read
   * several slices at once unless given a gap of a ms or more.
   */
  sliceDelayMs?: number;
}

/**
 * 'drop': data is read and discarded, nothing forwarded, no FIN/RST passed on.
 * 'stall': nothing is read or forwarded (TCP backpressure reaches the peers); after
 * heal() the held data is delivered late but intact, like a real partition that heals
 * before TCP gives up.
 */
export type BlackholeMode = 'drop' | 'stall';

export interface Target {
  host: string;
  port: number;
}

/** Plain counters, shared by every connection of one proxy. */
export interface Counters {
  connectionsAccepted: number;
  connectionsRefused: number;
  connectFailures: number;
  /** RSTs this proxy sent, each socket counted once. */
  resets: number;
  bytesUp: number;
  bytesDown: number;
  /** Bytes read but never delivered: blackhole('drop'), resets, closes, a dead peer. */
  droppedBytes: number;
  /** Largest single direction's queue any connection has had, in bytes. */
  peakQueuedBytes: number;
}

/** What a connection reads from its proxy, live. */
export interface LinkEnv {
  faults(direction: Direction): Readonly<Faults>;
  blackhole(): BlackholeMode | undefined;
  random(): number;
  maxQueuedBytes: number;
  counters: Counters;
}

/** A token bucket holds at most this many seconds of bandwidth. */
const BURST_SECONDS = 0.05;

interface Chunk {
  data: Buffer;
  /** performance.now() at which this chunk may be written. */
  due: number;
}

/**
 * One direction: reads `source`, queues chunks with their due time, writes them to `sink`
 * in order. A single timer per direction is armed for the head of the queue.
 */
export class Pipe {
  readonly direction: Direction;
  queuedBytes = 0;
  readonly #source: Socket;
  readonly #sink: Socket;
  readonly #env: LinkEnv;
  readonly #queue: Chunk[] = [];
  #lastDue = 0;
  #tokens = 0;
  #refilledAt = 0;
  /** Cancels the armed timer (setTimeout or setImmediate), if any. */
  #cancelTimer: (() => void) | undefined;
  /** Waiting for the sink's 'connect' or 'drain'. */
  #awaitingSink = false;
  #readPaused = false;
  #sourceEnded = false;
  #sinkEnded = false;
  /** No more forwarding (the link closes or was reset); reads continue and are discarded. */
  #stopped = false;

  constructor(direction: Direction, source: Socket, sink: Socket, env: LinkEnv) {
    this.direction = direction;
    this.#source = source;
    this.#sink = sink;
    this.#env = env;
  }

  push(data: Buffer): void {
    if (this.#stopped || this.#env.blackhole() === 'drop') {
      this.#env.counters.droppedBytes += data.length;
      return;
    }
    const faults = this.#env.faults(this.direction);
    const delay = (faults.latencyMs ?? 0) + (faults.jitterMs ?? 0) * this.#env.random();
    // never earlier than the chunk before it: jitter delays, it does not reorder
    this.#lastDue = Math.max(this.#lastDue, performance.now() + delay);
    this.#queue.push({ data, due: this.#lastDue });
    this.queuedBytes += data.length;
    const counters = this.#env.counters;
    counters.peakQueuedBytes = Math.max(counters.peakQueuedBytes, this.queuedBytes);
    this.#updateFlow();
    // with a timer armed or a drain awaited, the head is not ready: no need to look now
    if (!this.#cancelTimer && !this.#awaitingSink) this.#pump();
  }

  /** The source sent FIN (or closed): end the sink once the queue is delivered. */
  sourceEnded(): void {
    this.#sourceEnded = true;
    if (!this.#cancelTimer && !this.#awaitingSink) this.#pump();
  }

  /** Re-reads faults and blackhole state (setFaults, blackhole, heal). */
  kick(): void {
    this.#clearTimer();
    if (this.#env.blackhole() === 'drop') this.#dropQueue();
    this.#updateFlow();
    this.#pump();
  }

  /** Forwards nothing more; what is queued is dropped. */
  stop(): void {
    this.#stopped = true;
    this.#clearTimer();
    this.#dropQueue();
    this.#updateFlow();
  }

  /** Writes what is due, then arms the timer for the rest. */
  #pump(fromTimer = false): void {
    if (this.#stopped || this.#awaitingSink || this.#sinkEnded || this.#env.blackhole()) return;
    if (!this.#sink.writable) {
      this.#dropQueue();
      return;
    }
    // writes to a connecting socket are sent as one batch on connect, undoing latency and slicing
    if (this.#sink.connecting) {
      this.#awaitSink('connect');
      return;
    }
    while (this.#queue.length > 0) {
      const head = this.#queue[0]!;
      const now = performance.now();
      if (head.due > now) {
        this.#arm(head.due - now);
        return;
      }
      const faults = this.#env.faults(this.direction);
      if (faults.sliceBytes !== undefined && !fromTimer) {
        // Slices are written from timer callbacks only: a write from an I/O callback is
        // followed by the next turn's write before the reader's poll, which would read both.
        this.#arm(0);
        return;
      }
      let size = Math.min(head.data.length, faults.sliceBytes ?? Infinity);
      const rate = faults.bandwidthBytesPerSec;
      if (rate !== undefined) {
        const burst = Math.max(1, Math.ceil(rate * BURST_SECONDS));
        this.#tokens = Math.min(burst, this.#tokens + ((now - this.#refilledAt) * rate) / 1000);
        this.#refilledAt = now;
        // wait for a useful amount rather than trickling out single bytes
        const wanted = Math.min(size, burst);
        if (this.#tokens < wanted) {
          this.#arm(((wanted - this.#tokens) * 1000) / rate);
          return;
        }
        size = Math.min(size, Math.floor(this.#tokens));
        this.#tokens -= size;
      }
      const piece = head.data.subarray(0, size);
      if (size === head.data.length) this.#queue.shift();
      else head.data = head.data.subarray(size);
      this.queuedBytes -= size;
      this.#env.counters[this.direction === 'up' ? 'bytesUp' : 'bytesDown'] += size;
      const flushed = this.#sink.write(piece);
      this.#updateFlow();
      if (!flushed) {
        this.#awaitSink('drain');
        return;
      }
      // one slice per turn, so the reader gets a chance to see each one on its own
      if (faults.sliceBytes !== undefined && this.#queue.length > 0) {
        this.#arm(faults.sliceDelayMs ?? 0);
        return;
      }
    }
    if (this.#sourceEnded) {
      this.#sinkEnded = true;
      this.#sink.end();
    }
  }

  #awaitSink(event: 'connect' | 'drain'): void {
    this.#awaitingSink = true;
    this.#sink.once(event, () => {
      this.#awaitingSink = false;
      this.#pump();
    });
  }

  /** Arms this direction's one timer; 0 ms means the next event-loop turn. */
  #arm(ms: number): void {
    const fire = (): void => {
      this.#cancelTimer = undefined;
      this.#pump(true);
    };
    if (ms <= 0) {
      const handle = setImmediate(fire);
      this.#cancelTimer = () => clearImmediate(handle);
    } else {
      // a timer may fire a little early; #pump then simply arms again for the rest
      const handle = setTimeout(fire, Math.ceil(ms));
      this.#cancelTimer = () => clearTimeout(handle);
    }
  }

  #clearTimer(): void {
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
  }

  #dropQueue(): void {
    this.#env.counters.droppedBytes += this.queuedBytes;
    this.#queue.length = 0;
    this.queuedBytes = 0;
  }

  /**
   * Stops reading the source while the queue is over the cap (resumes at half of it, so
   * it does not flap per chunk) or while stalled; TCP then pushes back on the sender.
   */
  #updateFlow(): void {
    const cap = this.#env.maxQueuedBytes;
    const stalled = !this.#stopped && this.#env.blackhole() === 'stall';
    if (!this.#readPaused && (stalled || this.queuedBytes > cap)) {
      this.#readPaused = true;
      this.#source.pause();
    } else if (this.#readPaused && !stalled && this.queuedBytes <= cap / 2) {
      this.#readPaused = false;
      this.#source.resume();
    }
  }
}

/** A client socket, its upstream socket and the two pipes between them. */
export class Link {
  readonly client: Socket;
  readonly upstream: Socket;
  readonly up: Pipe;
  readonly down: Pipe;
  readonly #env: LinkEnv;
  /** A side was reset while blackholed: reset the other on heal(). */
  #resetOnHeal = false;
  #openSockets = 2;

  constructor(client: Socket, target: Target, env: LinkEnv, onClosed: (link: Link) => void) {
    this.#env = env;
    this.client = client;
    // allowHalfOpen: a FIN from one side must not end the other before its queue is delivered
    this.upstream = connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true });
    client.setNoDelay(true);
    this.up = new Pipe('up', client, this.upstream, env);
    this.down = new Pipe('down', this.upstream, client, env);

    let connected = false;
    this.upstream.once('connect', () => (connected = true));
    const wire = (socket: Socket, from: Pipe, to: Pipe, other: Socket): void => {
      socket.on('data', (chunk: Buffer) => from.push(chunk));
      socket.on('end', () => from.sourceEnded());
      // ECONNRESET/EPIPE are what this proxy is for; 'close' below deals with the outcome
      socket.on('error', () => {});
      socket.on('close', (hadError) => {
        to.stop();
        if (socket === this.upstream && !connected) {
          env.counters.connectFailures++;
          this.#reset(other);
        } else if (hadError) {
          // pass an RST on as an RST, except through a blackhole
          if (env.blackhole()) this.#resetOnHeal = true;
          else this.#reset(other);
        } else {
          // closed without a FIN seen (destroyed): no more data from it either way
          from.sourceEnded();
        }
        if (--this.#openSockets === 0) onClosed(this);
      });
    };
    wire(client, this.up, this.down, this.upstream);
    wire(this.upstream, this.down, this.up, client);
  }

  /** Applies changed faults / blackhole state; after heal() also delivers held FINs and RSTs. */
  refresh(): void {
    if (this.#resetOnHeal && !this.#env.blackhole()) {
      this.reset();
      return;
    }
    this.up.kick();
    this.down.kick();
  }

  /** RST on both sides. */
  reset(): void {
    this.up.stop();
    this.down.stop();
    this.#reset(this.client);
    this.#reset(this.upstream);
  }

  /** FIN to the client, then (after slowMs) to the target; whatever is in flight is dropped. */
  async closeGracefully(slowMs: number): Promise<void> {
    this.up.stop();
    this.down.stop();
    this.client.end();
    if (slowMs > 0) await new Promise((resolve) => setTimeout(resolve, slowMs));
    this.upstream.end();
  }

  /** Plain destroy of both sockets, for proxy.close(). */
  destroy(): void {
    this.up.stop();
    this.down.stop();
    this.client.destroy();
    this.upstream.destroy();
  }

  #reset(socket: Socket): void {
    if (socket.destroyed) return;
    this.#env.counters.resets++;
    socket.resetAndDestroy();
  }
}
