import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, it } from 'node:test';
import { WebSocketServer, type WebSocket } from 'ws';
import type { HistoryOp } from '../../chaos/checker/history.ts';
import { DEFAULT_BEHAVIOUR, type SwarmContext } from '../../chaos/swarm/context.ts';
import { Recorder } from '../../chaos/swarm/recorder.ts';
import { Rng } from '../../chaos/swarm/rng.ts';
import { Subscriber } from '../../chaos/swarm/subscriber.ts';

/**
 * The swarm's durable subscriber against a scripted gateway: the test decides, frame by
 * frame and close by close, what each connection is told and in which order, so the races
 * that a real run only hits now and then replay exactly.
 */

interface Hello {
  readonly ws: WebSocket;
  readonly frame: {
    op: 'hello';
    sessionId: string;
    token?: string;
    after?: number | 'latest';
    resume?: { token: string; lastSeq?: number; epoch?: string };
  };
}

/** A WebSocket server that hands every hello to the test and answers nothing by itself. */
class ScriptedGateway {
  readonly #wss: WebSocketServer;
  readonly #hellos: Hello[] = [];
  #held: Array<() => void> | undefined;
  /** Upgrade requests seen (held or not). */
  upgrades = 0;

  private constructor(wss: WebSocketServer) {
    this.#wss = wss;
    wss.on('connection', (ws) => {
      ws.on('message', (data) => {
        const frame = JSON.parse((data as Buffer).toString('utf8')) as Hello['frame'];
        if (frame.op === 'hello') this.#hellos.push({ ws, frame });
      });
    });
  }

  static async start(): Promise<ScriptedGateway> {
    const ref: { gateway?: ScriptedGateway } = {};
    const wss = new WebSocketServer({
      host: '127.0.0.1',
      port: 0,
      handleProtocols: () => 'lifeos.v1.json',
      verifyClient: (_info, accept) => {
        const gateway = ref.gateway!;
        gateway.upgrades++;
        if (gateway.#held) gateway.#held.push(() => accept(true));
        else accept(true);
      },
    });
    const gateway = (ref.gateway = new ScriptedGateway(wss));
    await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
    return gateway;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#wss.address() as AddressInfo).port}`;
  }

  /** The next hello not taken yet. */
  async nextHello(): Promise<Hello> {
    await until(() => this.#hellos.length > 0, 'a hello');
    return this.#hellos.shift()!;
  }

  /** Holds every new upgrade until `release` (connections stay in their handshake). */
  hold(): void {
    this.#held = [];
  }

  release(): void {
    const held = this.#held ?? [];
    this.#held = undefined;
    for (const accept of held) accept();
  }

  get pendingHellos(): number {
    return this.#hellos.length;
  }

  async stop(): Promise<void> {
    for (const ws of this.#wss.clients) ws.terminate();
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
  }
}

function welcome(
  ws: WebSocket,
  w: { sub: string; epoch: string; head: number; after: number; resumed: boolean },
): void {
  ws.send(
    JSON.stringify({
      op: 'welcome',
      connectionId: 'c',
      sessionId: 's1',
      subscriberId: w.sub,
      resumeToken: `tok-${w.sub}`,
      resumeWindowMs: 120_000,
      epoch: w.epoch,
      headSeq: w.head,
      after: w.after,
      resumed: w.resumed,
      heartbeatMs: 30_000,
      maxInFlight: 1000,
    }),
  );
}

function ev(ws: WebSocket, seq: number): void {
  ws.send(JSON.stringify({ op: 'ev', seq, event: { eventId: `x${seq}` } }));
}

async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('chaos swarm subscriber', () => {
  let gateway: ScriptedGateway | undefined;
  let sub: Subscriber | undefined;
  afterEach(async () => {
    sub?.stop();
    await gateway?.stop();
    sub = undefined;
    gateway = undefined;
  });

  /** A subscriber welcomed fresh as `subA` on epoch e1 that processed seqs 1 and 2. */
  async function welcomedSubscriber(): Promise<{ ops: HistoryOp[]; first: Hello }> {
    gateway = await ScriptedGateway.start();
    const ops: HistoryOp[] = [];
    const ctx: SwarmContext = {
      targets: { urls: [gateway.url] },
      slowTargets: { urls: [] },
      recorder: new Recorder({ consumers: [(op) => ops.push(op)] }),
      behaviour: {
        ...DEFAULT_BEHAVIOUR,
        msgpackShare: 0,
        resumeWithLastSeq: 1,
        staleAck: 0,
        repeatAck: 0,
        aheadAck: 0,
        lateAck: 0,
        backoffBaseMs: 1,
        backoffCapMs: 5,
      },
      publisherToken: 'pub-token',
      subscriberToken: 'sub-token',
    };
    sub = new Subscriber('A', 's1', ctx, new Rng(7));
    sub.start();
    const first = await gateway.nextHello();
    assert.equal(first.frame.resume, undefined);
    assert.equal(first.frame.after, 0);
    welcome(first.ws, { sub: 'subA', epoch: 'e1', head: 2, after: 0, resumed: false });
    ev(first.ws, 1);
    ev(first.ws, 2);
    await until(() => sub!.watermark === 2, 'seq 2 processed');
    return { ops, first };
  }

  const welcomes = (ops: HistoryOp[]): number => ops.filter((op) => op.op === 'welcome').length;
  const closes = (ops: HistoryOp[]): number => ops.filter((op) => op.op === 'close').length;

  for (const order of ['after the winner was welcomed', 'before any sibling was welcomed'] as const) {
    it(`keeps its subscriber when a losing race resume is closed 4011 ${order}`, async () => {
      const { ops, first } = await welcomedSubscriber();
      const racing = sub!.race(2);
      const winner = await gateway!.nextHello();
      const loser = await gateway!.nextHello();
      for (const h of [winner, loser]) {
        assert.equal(h.frame.resume?.token, 'tok-subA');
        assert.equal(h.frame.resume?.lastSeq, 2);
      }
      if (order === 'after the winner was welcomed') {
        welcome(winner.ws, { sub: 'subA', epoch: 'e1', head: 2, after: 2, resumed: true });
        await until(() => welcomes(ops) === 2, 'the winner welcomed');
        loser.ws.close(4011, 'history_gone');
        await until(() => closes(ops) === 1, 'the 4011 seen');
        first.ws.close(4009, 'superseded');
      } else {
        // The refusal comes first, while the pre-race connection still serves the subscriber.
        loser.ws.close(4011, 'history_gone');
        await until(() => closes(ops) === 1, 'the 4011 seen');
        welcome(winner.ws, { sub: 'subA', epoch: 'e1', head: 2, after: 2, resumed: true });
        await until(() => welcomes(ops) === 2, 'the winner welcomed');
        first.ws.close(4009, 'superseded');
      }
      assert.equal(await racing, true);

      // The client still holds subA on e1 at seq 2, and keeps processing the winner's events.
      assert.equal(sub!.epoch, 'e1');
      assert.equal(sub!.watermark, 2);
      ev(winner.ws, 3);
      await until(() => sub!.watermark === 3, 'seq 3 processed on the winner');

      // Its next connection resumes subA from where it is: no fresh hello, no new subscriber.
      winner.ws.terminate();
      const next = await gateway!.nextHello();
      assert.equal(next.frame.resume?.token, 'tok-subA');
      assert.equal(next.frame.resume?.lastSeq, 3);
      assert.equal(next.frame.resume?.epoch, 'e1');
      assert.ok(
        ops.every((op) => op.op !== 'hello' || op.resume !== undefined || op.conn === 'A#1'),
        'only the first hello was fresh',
      );
    });
  }

  it('starts fresh from 0 after a 4011 on the connection that serves it', async () => {
    const { first } = await welcomedSubscriber();
    first.ws.close(4011, 'history_gone');
    const next = await gateway!.nextHello();
    assert.equal(next.frame.resume, undefined);
    assert.equal(next.frame.after, 0);
    assert.equal(sub!.epoch, undefined);
    assert.equal(sub!.watermark, 0);
  });

  it('keeps race connections that open after the client had to start over out of the race', async () => {
    const { ops, first } = await welcomedSubscriber();
    gateway!.hold();
    const upgradesBefore = gateway!.upgrades;
    const racing = sub!.race(3);
    await until(() => gateway!.upgrades === upgradesBefore + 3, 'three race upgrades held');
    // The history is really gone: the serving connection is closed 4011 before the race's
    // connections are even open.
    first.ws.close(4011, 'history_gone');
    await until(() => closes(ops) === 1, 'the 4011 seen');
    gateway!.release();
    assert.equal(await racing, true);
    const settled = ops.find((op) => op.op === 'race_settled');
    assert.ok(settled && settled.op === 'race_settled');
    assert.deepEqual(settled.survivors, []);
    // After the race, one fresh hello from 0: never several fresh subscribers at once.
    const next = await gateway!.nextHello();
    assert.equal(next.frame.resume, undefined);
    assert.equal(next.frame.after, 0);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(gateway!.pendingHellos, 0);
    assert.equal(ops.filter((op) => op.op === 'hello').length, 2);
  });

  it('describes itself, still connected, when it does not drain by the deadline', async () => {
    await welcomedSubscriber();
    let seen: string[] | undefined;
    // The gateway never sends seq 3: the drain runs into its deadline with the connection open.
    const drained = await sub!.drain('e1', 3, Date.now() + 300, async () => {
      seen = sub!.describe();
    });
    assert.equal(drained, false);
    assert.ok(seen, 'onBehind ran');
    assert.match(seen[0]!, /^A: watermark 2, epoch e1, subscriber subA$/);
    assert.match(
      seen[1]!,
      /^ {2}A#1 → http:\/\/127\.0\.0\.1:\d+: open, welcomed as c \(subA\), highest 2, acked \d, quiet \d+ ms$/,
    );
    assert.equal(seen.length, 2, 'one connection');
  });

  it('does not report a subscriber that drained', async () => {
    await welcomedSubscriber();
    let called = false;
    const drained = await sub!.drain('e1', 2, Date.now() + 300, async () => {
      called = true;
    });
    assert.equal(drained, true);
    assert.equal(called, false);
  });
});
