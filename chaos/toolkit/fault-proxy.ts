import { createServer, type Server, type Socket } from 'node:net';
import {
  Link,
  type BlackholeMode,
  type Counters,
  type Direction,
  type Faults,
  type LinkEnv,
  type Target,
} from './fault-proxy-link.ts';

export type { BlackholeMode, Direction, Faults, Target } from './fault-proxy-link.ts';

/**
 * A TCP proxy that injects network faults between two of our processes (client ↔
 * gateway, gateway ↔ Redis), because tc netem is not available where the chaos tests
 * run. Faults apply to open connections too:
 *
 *   const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port: redis.port } });
 *   proxy.setFaults({ latencyMs: 50, jitterMs: 20 });   // gateway → proxy.port
 *   proxy.blackhole(); ...; proxy.heal();
 *
 * Bytes are never reordered within a direction, and queues are bounded: a direction over
 * `maxQueuedBytes` stops reading its source, so TCP pushes back on the sender.
 */

export interface FaultProxyOptions {
  target: Target;
  /** Where the proxy listens; default 127.0.0.1 and a free port. */
  host?: string;
  port?: number;
  /** For messages and logs. */
  name?: string;
  /** A seeded PRNG for jitter, so a failing chaos run can be replayed; default Math.random. */
  random?: () => number;
  /** Per direction per connection; default 8 MiB. */
  maxQueuedBytes?: number;
}

export interface FaultProxyStats extends Counters {
  openConnections: number;
  /** Bytes waiting in the proxy right now, over all connections. */
  queuedBytesUp: number;
  queuedBytesDown: number;
}

const DEFAULT_MAX_QUEUED_BYTES = 8 * 1024 * 1024;

export class FaultProxy {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly maxQueuedBytes: number;
  readonly #server: Server;
  readonly #links = new Set<Link>();
  readonly #faults: Record<Direction, Faults> = { up: {}, down: {} };
  readonly #counters: Counters = {
    connectionsAccepted: 0,
    connectionsRefused: 0,
    connectFailures: 0,
    resets: 0,
    bytesUp: 0,
    bytesDown: 0,
    droppedBytes: 0,
    peakQueuedBytes: 0,
  };
  readonly #env: LinkEnv;
  #target: Target;
  #blackhole: BlackholeMode | undefined;
  #refusing = false;
  #refusedSources: ReadonlySet<string> = new Set();

  private constructor(server: Server, options: FaultProxyOptions, host: string, port: number) {
    this.#server = server;
    this.host = host;
    this.port = port;
    this.name = options.name ?? `proxy:${port}`;
    this.maxQueuedBytes = options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    this.#target = { ...options.target };
    const random = options.random ?? Math.random;
    this.#env = {
      faults: (direction) => this.#faults[direction],
      blackhole: () => this.#blackhole,
      random,
      maxQueuedBytes: this.maxQueuedBytes,
      counters: this.#counters,
    };
    server.on('connection', (socket: Socket) => this.#accept(socket));
    // an accept error (EMFILE) loses that one connection; the server keeps listening
    server.on('error', () => {});
  }

  static async start(options: FaultProxyOptions): Promise<FaultProxy> {
    const host = options.host ?? '127.0.0.1';
    // allowHalfOpen: a client's FIN is passed on only after its queued bytes are delivered
    const server = createServer({ allowHalfOpen: true });
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, host, () => {
        server.off('error', reject);
        const address = server.address();
        resolve(typeof address === 'object' && address ? address.port : 0);
      });
    });
    return new FaultProxy(server, options, host, port);
  }

  /** host:port, for configs that take an address. */
  get url(): string {
    return `${this.host}:${this.port}`;
  }

  get target(): Target {
    return { ...this.#target };
  }

  get connectionCount(): number {
    return this.#links.size;
  }

  /**
   * Replaces the faults of one direction (or both): each call states the whole set, so
   * nothing lingers from an earlier call. Bytes already queued keep their due time.
   */
  setFaults(faults: Faults, direction: Direction | 'both' = 'both'): void {
    validate(faults);
    for (const d of direction === 'both' ? (['up', 'down'] as const) : [direction]) {
      this.#faults[d] = { ...faults };
    }
    this.#refreshLinks();
  }

  clearFaults(): void {
    this.setFaults({});
  }

  /**
   * A half-open partition: nothing crosses in either direction, no FIN and no RST either,
   * every socket stays open, and new connections are accepted into the same state. Data
   * queued at this moment is dropped in 'drop' mode and held in 'stall' mode.
   *
   * 'drop' (default) loses bytes mid-stream, so a connection that lives on after heal()
   * has a hole in its byte stream, which real TCP never shows; use 'stall' to model a
   * partition that heals before TCP gives up.
   */
  blackhole(mode: BlackholeMode = 'drop'): void {
    this.#blackhole = mode;
    this.#refreshLinks();
  }

  /** Forwards again (in 'drop' mode: new data only), and passes on FINs and RSTs held meanwhile. */
  heal(): void {
    this.#blackhole = undefined;
    this.#refreshLinks();
  }

  get blackholed(): BlackholeMode | undefined {
    return this.#blackhole;
  }

  /** RST to both sides of every open connection. */
  resetAll(): void {
    for (const link of this.#links) link.reset();
  }

  /**
   * "Slow close": FIN to each client first, then, after `slowMs`, FIN to its target. Data
   * in flight is dropped. Resolves once every FIN has been sent.
   */
  async closeAll(options: { slowMs?: number } = {}): Promise<void> {
    await Promise.all([...this.#links].map((link) => link.closeGracefully(options.slowMs ?? 0)));
  }

  /** While on, new connections are accepted and immediately reset. */
  refuse(on = true): void {
    this.#refusing = on;
  }

  /**
   * Cuts off some clients by their source address: resets the open connections from
   * `addresses` and refuses new ones from them, until called again (`[]` lets everyone
   * in). The rest pass as before. On loopback a process picks its source address with
   * `bind` (redis-server: `bind-source-addr`), so one proxy in front of a listener can
   * partition some of its peers from it and not others.
   */
  refuseFrom(addresses: readonly string[]): void {
    this.#refusedSources = new Set(addresses);
    for (const link of this.#links)
      if (this.#refusedSources.has(link.client.remoteAddress ?? '')) link.reset();
  }

  /** Connections made from now on go to `target`; open ones keep theirs. */
  retarget(target: Target): void {
    this.#target = { ...target };
  }

  stats(): FaultProxyStats {
    let queuedBytesUp = 0;
    let queuedBytesDown = 0;
    for (const link of this.#links) {
      queuedBytesUp += link.up.queuedBytes;
      queuedBytesDown += link.down.queuedBytes;
    }
    return { ...this.#counters, openConnections: this.#links.size, queuedBytesUp, queuedBytesDown };
  }

  /** Stops listening and destroys every connection. */
  async close(): Promise<void> {
    this.#refusing = true;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const link of this.#links) link.destroy();
    await closed;
  }

  #accept(client: Socket): void {
    client.on('error', () => {});
    if (this.#refusing || this.#refusedSources.has(client.remoteAddress ?? '')) {
      this.#counters.connectionsRefused++;
      this.#counters.resets++;
      client.resetAndDestroy();
      return;
    }
    this.#counters.connectionsAccepted++;
    const link = new Link(client, this.#target, this.#env, (done) => this.#links.delete(done));
    this.#links.add(link);
  }

  #refreshLinks(): void {
    for (const link of this.#links) link.refresh();
  }
}

function validate(faults: Faults): void {
  for (const [key, value] of Object.entries(faults)) {
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw new RangeError(`fault ${key} must be a finite number ≥ 0, got ${String(value)}`);
    }
  }
  if (faults.sliceBytes !== undefined && (!Number.isInteger(faults.sliceBytes) || faults.sliceBytes < 1)) {
    throw new RangeError(`sliceBytes must be an integer ≥ 1, got ${faults.sliceBytes}`);
  }
  if (faults.bandwidthBytesPerSec === 0) throw new RangeError('bandwidthBytesPerSec must be > 0');
}
