import { forget, killOnExit, unrefChild } from './child-cleanup.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FaultProxy } from './fault-proxy.ts';
import { freePort } from './ports.ts';
import { replicasConfirm } from './redis-server.ts';
import { RespClient, type RespValue } from './resp.ts';

/**
 * A private Redis Cluster for one test file or chaos run: `masters` redis-server
 * processes (and `replicas` per master) started with `--cluster-enabled yes` on free
 * ports in one temp dir (no RDB; AOF only with `appendfsync`), joined by
 * `redis-cli --cluster create … --cluster-replicas R`, and ready once every node reports
 * `cluster_state:ok` (and every replica confirms a write). Killed (and its dir removed) when the process exits, even if
 * a test forgot to stop it; the children never keep the test process alive.
 *
 * Binaries: REDIS_SERVER_BIN / REDIS_CLI_BIN, default `redis-server` / `redis-cli`.
 */
export interface RedisClusterOptions {
  /** Number of masters. Default 3, the minimum `redis-cli --cluster create` accepts. */
  masters?: number;
  /** Replicas per master. Default 0. */
  replicas?: number;
  /** false: start the nodes but never join them (every node answers cluster_state:fail). */
  create?: boolean;
  /**
   * `cluster-node-timeout`, default 2000: how long a node may be silent (SIGSTOP) before
   * the others suspect it; a majority then marks it failed and the cluster is down until
   * it answers again (and, for a master, a further 2 × this after it is back).
   */
  nodeTimeoutMs?: number;
  /**
   * Lets `isolate(port)` cut one master off from the rest of the cluster while clients
   * still reach it: a network partition with that master on the minority side. Each node
   * then makes its outgoing connections from an address of its own
   * (`bind-source-addr 127.0.0.<100 + i>`), its cluster bus is announced through a
   * FaultProxy that can refuse peers by that address, and replicas authenticate as a
   * `replicator` user that the isolated master drops. Default false.
   */
  partitionable?: boolean;
  /**
   * AOF on every node with this `appendfsync` (each node its own AOF directory in the
   * cluster's dir), so a node killed and revived comes back with what it had stored.
   * Default: no AOF.
   */
  appendfsync?: 'always' | 'everysec';
}

const REDIS_BINARY = process.env['REDIS_SERVER_BIN'] ?? 'redis-server';
const CLI_BINARY = process.env['REDIS_CLI_BIN'] ?? 'redis-cli';
const START_TIMEOUT_MS = 15_000;
const REPLICATOR = ['replicator', 'on', '>lo-replication', '~*', '&*', '+@all'];

interface Node {
  port: number;
  busPort: number;
  /** With `partitionable`: the node's own source address and the proxy its bus is announced through. */
  partition?: { source: string; busProxy: FaultProxy };
  child: ChildProcess;
  exited: Promise<void>;
  output: string;
}

function running(node: Node): boolean {
  return node.child.exitCode === null && node.child.signalCode === null;
}

export class RedisCluster {
  readonly dir: string;
  readonly #nodes: Node[] = [];
  #stopped = false;
  #unrefed = false;
  #nodeTimeoutMs = 2000;
  #partitionable = false;
  #appendfsync: RedisClusterOptions['appendfsync'];
  #isolated: number | undefined;

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Seeds for the engine: `127.0.0.1:<port>` of every node (replicas too, if any). */
  get nodes(): string[] {
    return this.#nodes.map((n) => `127.0.0.1:${n.port}`);
  }

  get ports(): number[] {
    return this.#nodes.map((n) => n.port);
  }

  /** Starts the nodes, creates the cluster and waits until every node serves it. */
  static async start(options: RedisClusterOptions = {}): Promise<RedisCluster> {
    const masters = options.masters ?? 3;
    let lastError: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const cluster = new RedisCluster(mkdtempSync(path.join(tmpdir(), 'lo-redis-cluster-')));
      cluster.#nodeTimeoutMs = options.nodeTimeoutMs ?? 2000;
      cluster.#partitionable = options.partitionable ?? false;
      cluster.#appendfsync = options.appendfsync;
      killOnExit(cluster);
      try {
        await cluster.#launch(masters, options.replicas ?? 0, options.create ?? true);
        return cluster;
      } catch (err) {
        // most likely a port taken between freePort() and the bind: try other ports
        lastError = err;
        await cluster.stop();
      }
    }
    throw new Error(`could not start a redis cluster: ${String(lastError)}`);
  }

  /** Lets the test process exit while the nodes still run (the exit hook then kills them). */
  unref(): void {
    this.#unrefed = true;
    for (const node of this.#nodes) unrefChild(node.child);
  }

  /** SIGKILL every node (no data to keep), waits for the exits, removes the dir. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const node of this.#nodes) {
      // an unref'd child's exit would not keep the event loop waiting for it
      node.child.ref();
      if (running(node)) node.child.kill('SIGKILL');
    }
    await Promise.all(this.#nodes.map((n) => n.exited));
    for (const node of this.#nodes) await node.partition?.busProxy.close();
    rmSync(this.dir, { recursive: true, force: true });
    forget(this);
  }

  /**
   * Stops one node (SIGTERM) and starts it again on the same ports and cluster config
   * file, so it rejoins with the same id and slots (and no data: nothing persists).
   * Resolves once the whole cluster is ok again.
   */
  async restart(port: number): Promise<void> {
    await this.#stopNode(port, 'SIGTERM');
    await this.revive(port);
  }

  /**
   * SIGKILL one node, as a crashed host. With replicas, one of its replicas takes its
   * slots once the others have marked it failed (about 2 × the node timeout); see
   * `failedOver`. `revive(port)` starts it again.
   */
  kill(port: number): Promise<void> {
    return this.#stopNode(port, 'SIGKILL');
  }

  /**
   * Starts a node stopped by `kill` on its ports and cluster config file: it rejoins with
   * its id, and a master whose slots a replica took meanwhile comes back as that replica's
   * replica. Resolves once every node reports cluster_state:ok.
   */
  async revive(port: number): Promise<void> {
    const index = this.#nodes.findIndex((n) => n.port === port);
    const node = this.#nodes[index]!;
    const again = this.#spawn(node.port, node.busPort, node.partition);
    this.#nodes[index] = again;
    if (this.#unrefed) unrefChild(again.child);
    await this.#waitForPing(again);
    await this.#waitForState();
  }

  /**
   * Until the live nodes report cluster_state:ok with `slot` served by a master other than
   * `port` (killed, or paused past the node timeout): one of its replicas took over.
   * Returns the new master's port.
   */
  async failedOver(port: number, slot: number): Promise<number> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      try {
        const live = this.#nodes.filter((n) => n.port !== port && running(n));
        const states = await Promise.all(live.map((n) => this.command(n.port, 'CLUSTER', 'INFO')));
        const master = await this.masterOf(slot, live[0]?.port);
        if (master !== port && states.every((info) => /^cluster_state:ok/m.test(String(info)))) return master;
      } catch {
        // a node between states: ask again
      }
      if (Date.now() > deadline) throw new Error(`no failover of :${port} within ${START_TIMEOUT_MS} ms`);
      await sleep(50);
    }
  }

  /**
   * A network partition with the master on `port` alone on one side (needs
   * `partitionable`; one node at a time): the cluster bus between it and every other node is cut both ways,
   * and so is its replicas' replication link (the `replicator` user is dropped on it),
   * while clients still reach it. It keeps taking writes until it counts itself on the
   * minority side (about one node timeout), and its replica is promoted on the other side
   * (about two). `rejoin()` heals it.
   */
  async isolate(port: number): Promise<void> {
    const node = this.#node(port);
    if (!node.partition) throw new Error('isolate() needs a cluster started with partitionable: true');
    if (this.#isolated !== undefined)
      throw new Error(`:${this.#isolated} is isolated already: rejoin() first`);
    if (!(await this.topology()).some((m) => m.master === port)) throw new Error(`:${port} is not a master`);
    this.#isolated = port;
    node.partition.busProxy.refuseFrom(this.#nodes.filter((n) => n !== node).map((n) => n.partition!.source));
    for (const other of this.#nodes)
      if (other !== node) other.partition!.busProxy.refuseFrom([node.partition.source]);
    // ACL DELUSER also closes the user's connections: its replicas' links
    await this.command(port, 'ACL', 'DELUSER', REPLICATOR[0]!);
  }

  /**
   * Heals `isolate`: the bus is whole again and the isolated node takes replicas again.
   * A master whose replica was promoted meanwhile comes back as that replica's replica,
   * dropping what it alone took. Resolves once every node reports cluster_state:ok.
   */
  async rejoin(): Promise<void> {
    const port = this.#isolated;
    if (port === undefined) return;
    this.#isolated = undefined;
    for (const n of this.#nodes) n.partition!.busProxy.refuseFrom([]);
    await this.command(port, 'ACL', 'SETUSER', ...REPLICATOR);
    await this.#waitForState();
  }

  async #stopNode(port: number, signal: NodeJS.Signals): Promise<void> {
    const node = this.#node(port);
    node.child.ref();
    node.child.kill(signal);
    await node.exited;
  }

  /**
   * SIGSTOP one node: it keeps its sockets and its port but answers nothing, like a
   * frozen master. Nothing else happens unless it stays stopped past the node timeout
   * (there are no replicas to fail over to). Undo with `resume(port)`.
   */
  pause(port: number): void {
    this.#node(port).child.kill('SIGSTOP');
  }

  /**
   * SIGCONT a node stopped by `pause`, then resolves once every node reports
   * cluster_state:ok again (at once after a short stop; after a stop past the node
   * timeout, once the others have cleared its failure flag).
   */
  async resume(port: number): Promise<void> {
    this.#node(port).child.kill('SIGCONT');
    await this.#waitForState();
  }

  /**
   * MONITOR on one node: every command it runs, scripts' own commands included (as
   * `[0 lua] "CMD" …` lines), until `stop()`. Lines are kept without the leading `+`.
   */
  async monitor(port: number): Promise<{ lines: string[]; stop(): void }> {
    const socket = connect({ port, host: '127.0.0.1' });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const lines: string[] = [];
    let buffer = '';
    let started!: () => void;
    const ok = new Promise<void>((resolve) => (started = resolve));
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      let end: number;
      while ((end = buffer.indexOf('\r\n')) >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (line === '+OK') started();
        else lines.push(line.startsWith('+') ? line.slice(1) : line);
      }
    });
    socket.on('error', () => {});
    socket.write('MONITOR\r\n');
    await ok;
    return { lines, stop: () => socket.destroy() };
  }

  /** Runs one command on one node (by port; default the first running one) over a fresh connection. */
  async command(port: number | undefined, ...args: (string | number)[]): Promise<RespValue> {
    const client = await RespClient.open(port ?? this.#nodes.find(running)!.port);
    try {
      return await client.command(...args);
    } finally {
      client.close();
    }
  }

  /** The hash slot of a key, as Redis computes it (CLUSTER KEYSLOT). */
  async keyslot(key: string): Promise<number> {
    return Number(await this.command(undefined, 'CLUSTER', 'KEYSLOT', key));
  }

  /** The port of the master serving `slot`, from CLUSTER SLOTS (of the node on `via`, default the first running one). */
  async masterOf(slot: number, via?: number): Promise<number> {
    const ranges = (await this.command(via, 'CLUSTER', 'SLOTS')) as RespValue[][];
    for (const range of ranges) {
      const [start, end, master] = range as [number, number, RespValue[]];
      if (slot >= start && slot <= end) return Number(master[1]);
    }
    throw new Error(`slot ${slot} is not served`);
  }

  /** Keys matching `pattern` on each node, by port (SCAN, so a big node is no problem). */
  async keysByNode(pattern: string): Promise<Map<number, string[]>> {
    const out = new Map<number, string[]>();
    for (const port of this.ports) {
      const keys: string[] = [];
      let cursor = '0';
      do {
        const reply = (await this.command(port, 'SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)) as [
          string,
          string[],
        ];
        cursor = reply[0];
        keys.push(...reply[1]);
      } while (cursor !== '0');
      out.set(port, keys);
    }
    return out;
  }

  /**
   * Moves `slot` from the master that serves it to the master on port `to`, as
   * `redis-cli --cluster reshard` does: the target IMPORTING, the source MIGRATING, its
   * keys MIGRATEd one at a time (`afterKey` runs after each, so a test can act while the
   * slot is split between the two: ASK and TRYAGAIN), then every master told the new
   * owner. Resolves once every node's slot map names `to`.
   */
  async migrateSlot(slot: number, to: number, afterKey?: (moved: number) => Promise<void>): Promise<void> {
    const from = await this.masterOf(slot);
    if (from === to) throw new Error(`slot ${slot} is served by :${to} already`);
    const [fromId, toId] = await Promise.all(
      [from, to].map(async (p) => String(await this.command(p, 'CLUSTER', 'MYID'))),
    );
    await this.command(to, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', fromId!);
    await this.command(from, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', toId!);
    for (let moved = 0; ;) {
      const keys = (await this.command(from, 'CLUSTER', 'GETKEYSINSLOT', slot, 1)) as string[];
      if (keys.length === 0) break;
      await this.command(from, 'MIGRATE', '127.0.0.1', to, '', 0, 5000, 'KEYS', ...keys);
      await afterKey?.(++moved);
    }
    // the target first, so that the source's redirections point at a node that owns it
    await this.command(to, 'CLUSTER', 'SETSLOT', slot, 'NODE', toId!);
    await this.command(from, 'CLUSTER', 'SETSLOT', slot, 'NODE', toId!);
    for (const { master } of await this.topology())
      if (master !== from && master !== to)
        await this.command(master, 'CLUSTER', 'SETSLOT', slot, 'NODE', toId!);
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      const owners = await Promise.all(
        this.ports.map(async (port) => {
          const ranges = (await this.command(port, 'CLUSTER', 'SLOTS')) as RespValue[][];
          const range = ranges.find((r) => slot >= Number(r[0]) && slot <= Number(r[1]));
          return range ? Number((range[2] as RespValue[])[1]) : undefined;
        }),
      );
      if (owners.every((owner) => owner === to)) return;
      if (Date.now() > deadline)
        throw new Error(`slot ${slot} not on :${to} everywhere within ${START_TIMEOUT_MS} ms`);
      await sleep(50);
    }
  }

  #node(port: number): Node {
    const node = this.#nodes.find((n) => n.port === port);
    if (!node) throw new Error(`no node on port ${port}`);
    return node;
  }

  /** Synchronous last resort for the exit hook. */
  killNow(): void {
    for (const node of this.#nodes) {
      try {
        node.child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  async #launch(masters: number, replicas: number, create: boolean): Promise<void> {
    for (let i = 0; i < masters * (1 + replicas); i++) {
      const [port, busPort] = [await freePort(), await freePort()];
      const partition = this.#partitionable
        ? {
            source: `127.0.0.${100 + i}`,
            busProxy: await FaultProxy.start({
              target: { host: '127.0.0.1', port: busPort },
              name: `bus:${port}`,
            }),
          }
        : undefined;
      this.#nodes.push(this.#spawn(port, busPort, partition));
    }
    await Promise.all(this.#nodes.map((n) => this.#waitForPing(n)));
    if (!create) return;
    await this.#create(replicas);
    await this.#waitForState();
    if (replicas > 0) await this.waitForReplicas(replicas);
  }

  /** The ports of the masters that serve slots and of their replicas, from CLUSTER NODES. */
  async topology(): Promise<Array<{ master: number; replicas: number[] }>> {
    const lines = String(await this.command(undefined, 'CLUSTER', 'NODES'))
      .trim()
      .split('\n');
    // <id> <ip:port@bus> <flags> <master id or -> <ping> <pong> <epoch> <link> <slot> …
    const nodes = lines.map((line) => {
      const fields = line.split(' ');
      const [id, address, flags, masterId] = fields as [string, string, string, string];
      const port = Number(/:(\d+)@/.exec(address)![1]);
      // while replicas are being assigned, a node can still read as a master without slots
      return { id, port, master: flags.includes('master') && fields.length > 8, masterId };
    });
    return nodes
      .filter((n) => n.master)
      .map((m) => ({
        master: m.port,
        replicas: nodes.filter((n) => n.masterId === m.id).map((n) => n.port),
      }));
  }

  /**
   * Until every master has `replicas` replicas and each of them confirmed a write (WAIT):
   * a replica counts as online before its first acknowledgement, and neither WAIT nor a
   * failover can count on it until then.
   */
  async waitForReplicas(replicas: number): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    let topology = await this.topology();
    while (topology.some((m) => m.replicas.length < replicas)) {
      if (Date.now() > deadline) throw new Error(`replicas not assigned: ${JSON.stringify(topology)}`);
      await sleep(50);
      topology = await this.topology();
    }
    for (const { master } of topology)
      await replicasConfirm(master, await this.keyOn(master), replicas, deadline);
  }

  /** A key whose slot `master` serves. */
  async keyOn(master: number): Promise<string> {
    for (let i = 0; i < 10_000; i++) {
      const key = `{replica-probe-${i}}`;
      if ((await this.masterOf(await this.keyslot(key))) === master) return key;
    }
    throw new Error(`no slot of :${master} found`);
  }

  #spawn(port: number, busPort: number, partition?: Node['partition']): Node {
    const args = [
      '--port',
      String(port),
      '--cluster-port',
      String(busPort),
      '--bind',
      '127.0.0.1',
      '--cluster-enabled',
      'yes',
      '--cluster-config-file',
      path.join(this.dir, `nodes-${port}.conf`),
      '--cluster-node-timeout',
      String(this.#nodeTimeoutMs),
      '--dir',
      this.dir,
      ...(this.#appendfsync
        ? [
            '--appendonly',
            'yes',
            '--appendfsync',
            this.#appendfsync,
            '--appenddirname',
            `appendonlydir-${port}`,
          ]
        : ['--appendonly', 'no']),
      '--save',
      '',
      // a replica's first copy at once, not after the default 5 s wait for more replicas
      '--repl-diskless-sync-delay',
      '0',
      '--daemonize',
      'no',
      '--protected-mode',
      'no',
      '--logfile',
      '',
      ...(partition
        ? [
            '--bind-source-addr',
            partition.source,
            // the peers' view of it: its own address, not the source of its connections
            '--cluster-announce-ip',
            '127.0.0.1',
            '--cluster-announce-bus-port',
            String(partition.busProxy.port),
            '--user',
            ...REPLICATOR,
            '--masteruser',
            REPLICATOR[0]!,
            '--masterauth',
            REPLICATOR[2]!.slice(1),
          ]
        : []),
    ];
    const child = spawn(REDIS_BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const node: Node = {
      port,
      busPort,
      ...(partition ? { partition } : {}),
      child,
      exited: new Promise((resolve) => child.once('exit', () => resolve())),
      output: '',
    };
    const keep = (chunk: Buffer): void => {
      node.output = (node.output + chunk.toString()).slice(-4000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    child.once('error', (err) => keep(Buffer.from(`spawn failed: ${err.message}\n`)));
    return node;
  }

  async #waitForPing(node: Node): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (node.child.exitCode !== null || node.child.signalCode !== null)
        throw new Error(`redis-server :${node.port} exited on start:\n${node.output}`);
      try {
        if ((await this.command(node.port, 'PING')) === 'PONG') return;
      } catch {
        // not listening yet
      }
      await sleep(25);
    }
    throw new Error(`redis-server :${node.port} did not answer PING:\n${node.output}`);
  }

  #create(replicas: number): Promise<void> {
    const args = [
      '--cluster',
      'create',
      ...this.nodes,
      '--cluster-replicas',
      String(replicas),
      '--cluster-yes',
    ];
    return new Promise((resolve, reject) => {
      const cli = spawn(CLI_BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      cli.stdout?.on('data', (c: Buffer) => (output += c.toString()));
      cli.stderr?.on('data', (c: Buffer) => (output += c.toString()));
      const timer = setTimeout(() => cli.kill('SIGKILL'), START_TIMEOUT_MS);
      cli.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      cli.once('exit', (code) => {
        clearTimeout(timer);
        if (code === 0 && /All 16384 slots covered/.test(output)) resolve();
        else reject(new Error(`redis-cli --cluster create failed (${String(code)}):\n${output}`));
      });
    });
  }

  /** Every node must see the whole slot map before a client may rely on it. */
  async #waitForState(): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      const states = await Promise.all(
        this.ports.map(async (port) => {
          try {
            const info = String(await this.command(port, 'CLUSTER', 'INFO'));
            return /^cluster_state:ok/m.test(info) && /^cluster_known_nodes:(\d+)/m.exec(info)?.[1];
          } catch {
            return false;
          }
        }),
      );
      if (states.every((s) => s === String(this.#nodes.length))) return;
      if (Date.now() > deadline) throw new Error(`cluster not ok within ${START_TIMEOUT_MS} ms`);
      await sleep(50);
    }
  }
}
