import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import {
  Checker,
  checkHistory,
  formatSummary,
  readHistory,
  writeHistory,
  writeVerdict,
  type CheckerOptions,
  type Verdict,
  type ViolationKind,
} from '../../chaos/checker/checker.ts';
import type { AckOp, HistoryOp, Outcome } from '../../chaos/checker/history.ts';

const MB = 1024 * 1024;

/**
 * Hand-written histories. Clients are named by their connections (`A#2` is client A's
 * second connection); deliveries look their eventIds up in the builder's own idea of the
 * stream (filled by pubacks, `store` and `final`), so only the histories that mean to
 * break a binding do so.
 */
class History {
  readonly ops: HistoryOp[] = [];
  #t = 0;
  readonly #subOf = new Map<string, { sub: string; epoch: string }>();
  readonly #stream = new Map<string, string[]>();

  constructor(readonly session = 's1') {}

  #base(client: string): { t: number; session: string; client: string } {
    this.#t += 10;
    return { t: this.#t, session: this.session, client };
  }

  /** Moves the clock on (ms). */
  wait(ms: number): this {
    this.#t += ms;
    return this;
  }

  /** The builder's stream: `eventId` at `seq` of `epoch` (deliveries use it). */
  store(epoch: string, seq: number, eventId: string): this {
    const ids = this.#stream.get(epoch) ?? [];
    ids[seq - 1] = eventId;
    this.#stream.set(epoch, ids);
    return this;
  }

  idAt(epoch: string, seq: number): string {
    return this.#stream.get(epoch)?.[seq - 1] ?? `${epoch}/${seq}`;
  }

  hello(
    conn: string,
    opts: {
      after?: number | 'latest';
      resume?: { subscriberId: string; lastSeq?: number; epoch?: string };
      race?: string;
    },
  ): this {
    this.ops.push({ ...this.#base(client(conn)), op: 'hello', conn, codec: 'json', ...opts });
    return this;
  }

  welcome(
    conn: string,
    w: { sub: string; epoch?: string; head: number; after: number; resumed?: boolean },
  ): this {
    const epoch = w.epoch ?? 'e1';
    this.#subOf.set(conn, { sub: w.sub, epoch });
    this.ops.push({
      ...this.#base(client(conn)),
      op: 'welcome',
      conn,
      subscriberId: w.sub,
      epoch,
      headSeq: w.head,
      after: w.after,
      resumed: w.resumed ?? false,
    });
    return this;
  }

  /** Delivers `seqs` on `conn` (eventIds from the builder's stream unless `ids` says otherwise). */
  deliver(conn: string, seqs: number[], ids?: string[]): this {
    const known = this.#subOf.get(conn);
    seqs.forEach((seq, i) => {
      const epoch = known?.epoch ?? '';
      this.ops.push({
        ...this.#base(client(conn)),
        op: 'deliver',
        conn,
        subscriberId: known?.sub ?? '',
        epoch,
        seq,
        eventId: ids?.[i] ?? this.idAt(epoch, seq),
      });
    });
    return this;
  }

  replayed(conn: string, seq: number): this {
    this.ops.push({ ...this.#base(client(conn)), op: 'replayed', conn, seq });
    return this;
  }

  ack(conn: string, seq: number, kind: AckOp['kind'] = 'cumulative'): this {
    const sub = this.#subOf.get(conn)?.sub ?? '';
    this.ops.push({ ...this.#base(client(conn)), op: 'ack', conn, subscriberId: sub, seq, kind });
    return this;
  }

  error(conn: string, code: string): this {
    this.ops.push({ ...this.#base(client(conn)), op: 'error', conn, code });
    return this;
  }

  close(conn: string, code: number, byClient = false, reason = ''): this {
    this.ops.push({ ...this.#base(client(conn)), op: 'close', conn, code, reason, byClient });
    return this;
  }

  publish(
    conn: string,
    eventId: string,
    outcome: Outcome,
    o: { seq?: number; epoch?: string; code?: string; attempt?: number } = {},
  ): this {
    const { attempt = 1, ...rest } = o;
    if (outcome === 'ok') {
      rest.epoch ??= 'e1';
      if (rest.seq !== undefined) this.store(rest.epoch, rest.seq, eventId);
    }
    this.ops.push({ ...this.#base(client(conn)), op: 'publish', conn, eventId, attempt, outcome, ...rest });
    return this;
  }

  checkpoint(clientName: string, sub: string, seq: number, epoch = 'e1'): this {
    this.ops.push({ ...this.#base(clientName), op: 'checkpoint', subscriberId: sub, epoch, seq });
    return this;
  }

  raceSettled(clientName: string, race: string, sub: string, conns: string[], survivors: string[]): this {
    this.ops.push({
      ...this.#base(clientName),
      op: 'race_settled',
      race,
      subscriberId: sub,
      conns,
      survivors,
    });
    return this;
  }

  /** The final read: `ids` by position from `firstSeq` (null for a hole). */
  final(epoch: string, ids: Array<string | null>, o: { firstSeq?: number; headSeq?: number } = {}): this {
    const firstSeq = o.firstSeq ?? 1;
    const headSeq = o.headSeq ?? firstSeq + ids.length - 1;
    this.ops.push({
      ...this.#base('harness'),
      op: 'final_stream',
      epoch,
      headSeq,
      firstSeq,
      eventIds: ids as string[],
    });
    return this;
  }

  fault(fault: string, target = 'redis'): this {
    this.#t += 10;
    this.ops.push({ op: 'fault', t: this.#t, fault, target });
    return this;
  }

  memory(node: string, rssBytes: number): this {
    this.#t += 10;
    this.ops.push({ op: 'memory', t: this.#t, node, rssBytes });
    return this;
  }
}

function client(conn: string): string {
  return conn.split('#')[0]!;
}

/** The run the checker must pass: resumes, a race, an unknown publish, a 4011 and a new epoch. */
function cleanHistory(): History {
  const h = new History();
  // Two durable subscribers, welcomed before the first publish.
  h.hello('A#1', { after: 0 }).welcome('A#1', { sub: 'subA', head: 0, after: 0 }).replayed('A#1', 0);
  h.hello('B#1', { after: 0 }).welcome('B#1', { sub: 'subB', head: 0, after: 0 }).replayed('B#1', 0);
  for (let i = 1; i <= 5; i++) h.publish('P#1', `p-${i}`, 'ok', { seq: i });
  h.publish('P#1', 'bad', 'fail', { code: 'invalid_event' });
  h.publish('P#1', 'p-3', 'ok', { seq: 3, attempt: 2 }); // a retry gets its original seq
  h.publish('P#1', 'p-6', 'fail', { code: 'unavailable' }); // retryable: judged unknown, not stored
  h.deliver('A#1', [1, 2, 3]).ack('A#1', 3);
  h.deliver('B#1', [1, 2, 3]).ack('B#1', 3).ack('B#1', 2, 'stale');
  // A's network drops; it resumes from lastSeq 1: seqs 2 and 3 come again (dropped by its dedupe).
  h.close('A#1', 1006, true);
  h.hello('A#2', { resume: { subscriberId: 'subA', lastSeq: 1, epoch: 'e1' } });
  h.welcome('A#2', { sub: 'subA', head: 5, after: 1, resumed: true });
  h.deliver('A#2', [2, 3, 4, 5]).replayed('A#2', 5).ack('A#2', 5);
  h.ack('A#2', 9, 'ahead').error('A#2', 'ack_ahead');
  // B: a burst of two duplicate resumes without lastSeq (checkpoint readings); B#3 survives.
  h.hello('B#2', { resume: { subscriberId: 'subB' }, race: 'B/r1' });
  h.hello('B#3', { resume: { subscriberId: 'subB' }, race: 'B/r1' });
  h.welcome('B#2', { sub: 'subB', head: 5, after: 3, resumed: true }).checkpoint('B', 'subB', 3);
  h.deliver('B#1', [4]); // in flight on the old connection: legitimate
  h.close('B#1', 4009);
  h.welcome('B#3', { sub: 'subB', head: 5, after: 3, resumed: true }).checkpoint('B', 'subB', 3);
  h.close('B#2', 4009);
  h.raceSettled('B', 'B/r1', 'subB', ['B#1', 'B#2', 'B#3'], ['B#3']);
  h.deliver('B#3', [4, 5]).ack('B#3', 5);
  h.close('B#3', 1006, true);
  h.hello('B#4', { resume: { subscriberId: 'subB' } });
  h.welcome('B#4', { sub: 'subB', head: 5, after: 5, resumed: true }).checkpoint('B', 'subB', 5); // grew
  // Redis loses history: everyone gets 4011 and starts over on epoch e2.
  h.fault('redis_history_loss');
  h.close('A#2', 4011).close('B#4', 4011);
  h.hello('A#3', { after: 0 }).welcome('A#3', { sub: 'subA2', epoch: 'e2', head: 0, after: 0 });
  h.hello('B#5', { after: 0 }).welcome('B#5', { sub: 'subB2', epoch: 'e2', head: 0, after: 0 });
  h.publish('P#2', 'q-1', 'ok', { seq: 1, epoch: 'e2' });
  h.publish('P#2', 'q-2', 'unknown', { code: 'closed_1006' }).store('e2', 2, 'q-2'); // stored after all
  h.publish('P#3', 'q-3', 'ok', { seq: 3, epoch: 'e2' });
  h.deliver('A#3', [1, 2, 3]).deliver('B#5', [1, 2, 3]);
  h.memory('n1', 120 * MB).memory('n2', 90 * MB);
  h.final('e2', ['q-1', 'q-2', 'q-3']);
  h.close('A#3', 1000, true).close('B#5', 1000, true);
  return h;
}

const CLEAN_OPTIONS: CheckerOptions = { allowEpochChange: true, expectDrained: true, maxRssBytes: 500 * MB };

function kinds(verdict: Verdict): ViolationKind[] {
  return Object.keys(verdict.violationTotals).sort() as ViolationKind[];
}

/** Fresh subscriber `conn`'s client on `sub`, welcomed after `after` (epoch e1). */
function subscribed(h: History, conn: string, sub: string, after = 0, head = after): History {
  return h.hello(conn, { after }).welcome(conn, { sub, head, after });
}

/** `conn` resumes `sub` with lastSeq 0 and is welcomed (epoch e1, head 0). */
function resumed(h: History, conn: string, sub: string): History {
  return h
    .hello(conn, { resume: { subscriberId: sub, lastSeq: 0 } })
    .welcome(conn, { sub, head: 0, after: 0, resumed: true });
}

interface Case {
  name: string;
  kind: ViolationKind;
  /** The seq the violation names (its message must mention it). */
  seq?: number;
  options?: CheckerOptions;
  build(h: History): void;
}

const CASES: Case[] = [
  {
    name: 'an acked publish missing from the final stream',
    kind: 'acked_publish_lost',
    seq: 2,
    build: (h) =>
      h.publish('P#1', 'x1', 'ok', { seq: 1 }).publish('P#1', 'x2', 'ok', { seq: 2 }).final('e1', ['x1']),
  },
  {
    name: 'a gap on one connection',
    kind: 'conn_order',
    seq: 4,
    build: (h) => subscribed(h, 'A#1', 'subA').deliver('A#1', [1, 2, 4]),
  },
  {
    name: 'a duplicate within one connection',
    kind: 'conn_order',
    seq: 2,
    build: (h) => subscribed(h, 'A#1', 'subA').deliver('A#1', [1, 2, 2, 3]),
  },
  {
    name: 'a seq bound to two eventIds',
    kind: 'seq_binding',
    seq: 1,
    build: (h) => {
      subscribed(h, 'A#1', 'subA').deliver('A#1', [1], ['ev-a']);
      subscribed(h, 'B#1', 'subB').deliver('B#1', [1], ['ev-b']);
    },
  },
  {
    name: 'one eventId stored at two seqs',
    kind: 'duplicate_store',
    seq: 2,
    build: (h) => subscribed(h, 'A#1', 'subA').deliver('A#1', [1, 2], ['ev-x', 'ev-x']),
  },
  {
    name: 'a checkpoint that decreased',
    kind: 'checkpoint_decreased',
    seq: 3,
    build: (h) => {
      subscribed(h, 'A#1', 'subA').deliver('A#1', [1, 2, 3, 4, 5]).ack('A#1', 5).close('A#1', 1006, true);
      h.hello('A#2', { resume: { subscriberId: 'subA' } }).welcome('A#2', {
        sub: 'subA',
        head: 5,
        after: 5,
        resumed: true,
      });
      h.checkpoint('A', 'subA', 5).close('A#2', 1006, true);
      h.hello('A#3', { resume: { subscriberId: 'subA' } }).welcome('A#3', {
        sub: 'subA',
        head: 5,
        after: 3,
        resumed: true,
      });
      h.checkpoint('A', 'subA', 3);
    },
  },
  {
    name: 'a checkpoint ahead of delivery',
    kind: 'checkpoint_ahead_of_delivery',
    seq: 5,
    build: (h) =>
      subscribed(h, 'A#1', 'subA').deliver('A#1', [1, 2, 3]).ack('A#1', 3).checkpoint('A', 'subA', 5),
  },
  {
    name: 'a checkpoint ahead of the acks',
    kind: 'checkpoint_ahead_of_acks',
    seq: 5,
    build: (h) =>
      subscribed(h, 'A#1', 'subA').deliver('A#1', [1, 2, 3, 4, 5]).ack('A#1', 3).checkpoint('A', 'subA', 5),
  },
  {
    name: 'a duplicate-resume race with two survivors',
    kind: 'race_survivors',
    build: (h) => {
      subscribed(h, 'A#1', 'subA').deliver('A#1', [1]).ack('A#1', 1);
      h.hello('A#2', { resume: { subscriberId: 'subA', lastSeq: 1 }, race: 'A/r1' });
      h.hello('A#3', { resume: { subscriberId: 'subA', lastSeq: 1 }, race: 'A/r1' });
      h.welcome('A#2', { sub: 'subA', head: 1, after: 1, resumed: true }).close('A#1', 4009);
      h.welcome('A#3', { sub: 'subA', head: 1, after: 1, resumed: true });
      h.raceSettled('A', 'A/r1', 'subA', ['A#1', 'A#2', 'A#3'], ['A#2', 'A#3']);
      h.close('A#2', 1000, true).close('A#3', 1000, true);
    },
  },
  {
    name: 'a race with two live resumes of one subscriber beside a fresh hello',
    kind: 'race_survivors',
    build: (h) => {
      subscribed(h, 'A#1', 'subA');
      h.hello('A#2', { after: 0 });
      h.hello('A#3', { resume: { subscriberId: 'subA' }, race: 'A/r1' });
      h.hello('A#4', { resume: { subscriberId: 'subA' }, race: 'A/r1' });
      h.welcome('A#2', { sub: 'subA2', head: 0, after: 0 });
      h.welcome('A#3', { sub: 'subA', head: 0, after: 0, resumed: true }).close('A#1', 4009);
      h.welcome('A#4', { sub: 'subA', head: 0, after: 0, resumed: true });
      h.raceSettled('A', 'A/r1', 'subA', ['A#1', 'A#2', 'A#3', 'A#4'], ['A#2', 'A#3', 'A#4']);
      h.close('A#2', 1000, true).close('A#3', 1000, true).close('A#4', 1000, true);
    },
  },
  {
    name: 'a race where every connection was superseded',
    kind: 'race_survivors',
    build: (h) => {
      subscribed(h, 'A#1', 'subA');
      h.hello('A#2', { resume: { subscriberId: 'subA', lastSeq: 0 }, race: 'A/r1' });
      h.welcome('A#2', { sub: 'subA', head: 0, after: 0, resumed: true })
        .close('A#1', 4009)
        .close('A#2', 4009);
      h.raceSettled('A', 'A/r1', 'subA', ['A#1', 'A#2'], []);
    },
  },
  {
    name: 'a resume welcomed on another epoch than the one it named',
    kind: 'silent_epoch_change',
    seq: 2,
    options: { allowEpochChange: true },
    build: (h) => {
      subscribed(h, 'A#1', 'subA').deliver('A#1', [1, 2]).close('A#1', 1006, true);
      h.hello('A#2', { resume: { subscriberId: 'subA', lastSeq: 2, epoch: 'e1' } });
      h.welcome('A#2', { sub: 'subA', epoch: 'e2', head: 2, after: 2, resumed: true });
    },
  },
  {
    name: 'acked events gone to a new epoch nobody was told about',
    kind: 'silent_epoch_change',
    options: { allowEpochChange: true },
    build: (h) => {
      subscribed(h, 'A#1', 'subA');
      h.publish('P#1', 'x1', 'ok', { seq: 1 }).publish('P#1', 'x2', 'ok', { seq: 2 });
      h.deliver('A#1', [1, 2]).final('e2', [], { headSeq: 0 });
    },
  },
  {
    name: 'an epoch change in a scenario that loses no history',
    kind: 'unexpected_epoch_change',
    build: (h) => {
      subscribed(h, 'A#1', 'subA').deliver('A#1', [1]).close('A#1', 4011);
      h.hello('A#2', { after: 0 }).welcome('A#2', { sub: 'subA2', epoch: 'e2', head: 0, after: 0 });
    },
  },
  {
    name: 'a resume that skipped events',
    kind: 'resume_skipped_events',
    seq: 4,
    build: (h) => {
      subscribed(h, 'A#1', 'subA').deliver('A#1', [1, 2, 3]).ack('A#1', 3).close('A#1', 1006, true);
      h.hello('A#2', { resume: { subscriberId: 'subA' } }).welcome('A#2', {
        sub: 'subA',
        head: 6,
        after: 5,
        resumed: true,
      });
      h.deliver('A#2', [6]);
    },
  },
  {
    name: 'a refused publish that was stored',
    kind: 'failed_publish_stored',
    seq: 1,
    build: (h) => h.publish('P#1', 'f1', 'fail', { code: 'invalid_event' }).final('e1', ['f1']),
  },
  {
    name: 'a publish refused as internal',
    kind: 'internal_refusal',
    build: (h) => h.publish('P#1', 'i1', 'fail', { code: 'internal' }).final('e1', ['i1']),
  },
  {
    name: 'memory over the bound',
    kind: 'memory_unbounded',
    options: { maxRssBytes: 500 * MB },
    build: (h) =>
      h
        .memory('n1', 200 * MB)
        .memory('n1', 600 * MB)
        .memory('n1', 700 * MB),
  },
  {
    name: 'a retried publish acked at another seq',
    kind: 'idempotency_broken',
    seq: 2,
    build: (h) => {
      h.publish('P#1', 'x', 'ok', { seq: 1 }).publish('P#1', 'x', 'ok', { seq: 2, attempt: 2 });
      h.final('e1', ['x']);
    },
  },
  {
    name: 'an acked event stored twice',
    kind: 'acked_publish_duplicated',
    seq: 2,
    build: (h) => h.publish('P#1', 'x', 'ok', { seq: 1 }).final('e1', ['x', 'x']),
  },
  {
    name: 'a hole in the final stream',
    kind: 'gap_in_stream',
    seq: 2,
    build: (h) => h.final('e1', ['a', null, 'c']),
  },
  {
    name: 'a final stream that starts after seq 1 without retention',
    kind: 'gap_in_stream',
    seq: 1,
    build: (h) => h.final('e1', ['c'], { firstSeq: 3 }),
  },
  {
    name: 'a delivery beyond the final head',
    kind: 'phantom_event',
    seq: 3,
    build: (h) => {
      h.store('e1', 1, 'a').store('e1', 2, 'b').store('e1', 3, 'c');
      subscribed(h, 'A#1', 'subA').deliver('A#1', [1, 2, 3]).final('e1', ['a', 'b']);
    },
  },
  {
    name: 'a delivery before the welcome',
    kind: 'delivery_before_welcome',
    seq: 1,
    build: (h) => h.hello('A#1', { after: 0 }).deliver('A#1', [1]),
  },
  {
    name: 'a welcome that does not start where the hello asked',
    kind: 'welcome_after_mismatch',
    seq: 0,
    build: (h) => h.hello('A#1', { after: 3 }).welcome('A#1', { sub: 'subA', head: 5, after: 0 }),
  },
  {
    name: 'a replayed marker that disagrees with the deliveries',
    kind: 'conn_order',
    seq: 3,
    build: (h) => subscribed(h, 'A#1', 'subA').deliver('A#1', [1, 2]).replayed('A#1', 3),
  },
  {
    name: 'a subscriber behind after the drain',
    kind: 'undelivered_at_end',
    seq: 3,
    options: { expectDrained: true },
    build: (h) => {
      h.store('e1', 1, 'a').store('e1', 2, 'b').store('e1', 3, 'c');
      subscribed(h, 'A#1', 'subA')
        .deliver('A#1', [1, 2])
        .final('e1', ['a', 'b', 'c'])
        .close('A#1', 1000, true);
    },
  },
  {
    name: 'an older connection left open after a resume',
    kind: 'not_superseded',
    options: { supersedeGraceMs: 1000 },
    build: (h) => {
      subscribed(h, 'A#1', 'subA');
      resumed(h, 'A#2', 'subA');
      h.close('A#2', 1006).wait(5000).memory('n1', MB);
    },
  },
  {
    name: 'a fresh subscriber closed 4009 though nobody resumed it',
    kind: 'unprovoked_supersede',
    build: (h) => {
      subscribed(h, 'A#1', 'subA').close('A#1', 4009);
      // provoked: B's subscriber was resumed (by B#2) before B#1's 4009
      subscribed(h, 'B#1', 'subB');
      resumed(h, 'B#2', 'subB');
      h.close('B#1', 4009);
    },
  },
  {
    name: 'two live connections of one subscriber at the end',
    kind: 'multiple_live_connections',
    options: { supersedeGraceMs: 1000 },
    build: (h) => {
      subscribed(h, 'A#1', 'subA');
      resumed(h, 'A#2', 'subA');
      h.wait(5000).memory('n1', MB);
    },
  },
  {
    name: 'a resume refused with 4011 while its epoch and its lastSeq are still stored',
    kind: 'spurious_history_gone',
    seq: 2,
    build: (h) => {
      subscribed(h, 'A#1', 'subA').deliver('A#1', [1, 2]).ack('A#1', 2).close('A#1', 1006, true);
      h.hello('A#2', { resume: { subscriberId: 'subA', lastSeq: 2, epoch: 'e1' } }).close('A#2', 4011);
      subscribed(h, 'A#3', 'subA2', 2, 3).deliver('A#3', [3]);
      h.final('e1', ['e1/1', 'e1/2', 'e1/3']);
    },
  },
  {
    name: 'acked publishes without a final read',
    kind: 'missing_final_stream',
    build: (h) => h.publish('P#1', 'x', 'ok', { seq: 1 }),
  },
];

describe('chaos checker', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'chaos-checker-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('passes a clean history with resumes, redeliveries, a race, an unknown publish and an epoch change', () => {
    const verdict = checkHistory(cleanHistory().ops, CLEAN_OPTIONS);
    assert.deepEqual(verdict.violations, [], formatSummary(verdict));
    assert.equal(verdict.ok, true);
    const c = verdict.counts;
    assert.equal(c.publishes.ok, 8);
    assert.equal(c.publishes.fail, 2);
    assert.equal(c.publishes.retryableNacks, 1);
    assert.equal(c.publishes.unknown, 1);
    assert.equal(c.unknownStored, 1);
    assert.equal(c.unknownNotStored, 1); // p-6, nacked unavailable
    assert.equal(c.lostToEpochChange, 5);
    assert.equal(c.eventsStored, 3);
    assert.equal(c.deliveries, 19);
    assert.equal(c.duplicatesDropped, 3); // A: 2, 3 after its resume; B: 4 on the superseded connection
    assert.equal(c.races, 1);
    assert.equal(c.raceSurvivors, 1);
    assert.equal(c.checkpoints, 3);
    assert.equal(c.epochs, 2);
    assert.equal(c.epochChanges, 1);
    assert.deepEqual(c.closes, { 1000: 2, 1006: 2, 4009: 2, 4011: 2 });
    assert.deepEqual(c.ackAhead, { sent: 1, answered: 1, unanswered: 0, unexpectedErrors: 0 });
    assert.deepEqual(c.memory.maxByNode, { n1: 120 * MB, n2: 90 * MB });
    assert.deepEqual(verdict.perSession['s1']?.epochs, ['e1', 'e2']);
    assert.equal(verdict.perSession['s1']?.headSeq, 3);
  });

  it('fails the clean history without allowEpochChange, only for the epoch change', () => {
    const verdict = checkHistory(cleanHistory().ops, { ...CLEAN_OPTIONS, allowEpochChange: false });
    assert.deepEqual(kinds(verdict), ['unexpected_epoch_change']);
    assert.match(verdict.violations[0]!.message, /from epoch e1 to epoch e2/);
  });

  for (const c of CASES) {
    it(`fails ${c.name} with ${c.kind}`, () => {
      const h = new History();
      c.build(h);
      const verdict = checkHistory(h.ops, c.options ?? {});
      assert.equal(verdict.ok, false);
      assert.deepEqual(kinds(verdict), [c.kind], formatSummary(verdict));
      const v = verdict.violations.find((x) => x.kind === c.kind)!;
      assert.equal(v.session, c.kind === 'memory_unbounded' ? '' : 's1');
      assert.ok(v.message.length > 20, v.message);
      if (c.seq !== undefined) {
        assert.equal(v.seq, c.seq, v.message);
        assert.match(v.message, new RegExp(`\\bseqs? ${c.seq}\\b|\\bseq ${c.seq}\\b|${c.seq}`), v.message);
      }
    });
  }

  it('takes a 4009 after a resume of the subscriber for a takeover, not for a lost record', () => {
    const h = new History();
    CASES.find((c) => c.kind === 'unprovoked_supersede')!.build(h);
    const verdict = checkHistory(h.ops);
    assert.equal(verdict.violationTotals.unprovoked_supersede, 1, formatSummary(verdict));
    assert.equal(verdict.violations[0]!.conn, 'A#1');
  });

  it('names the missing seqs in a connection gap', () => {
    const h = new History();
    subscribed(h, 'A#1', 'subA').deliver('A#1', [1, 2, 5]);
    const v = checkHistory(h.ops).violations[0];
    assert.ok(v);
    assert.equal(v.conn, 'A#1');
    assert.match(v.message, /expected seq 3 next on A#1 \(after seq 2\), got seq 5, skipping seqs 3\.\.4/);
  });

  it('reports a skipped seq that turns up later as client_reorder', () => {
    const h = new History();
    subscribed(h, 'A#1', 'subA').deliver('A#1', [1, 3]).close('A#1', 1006, true);
    h.hello('A#2', { resume: { subscriberId: 'subA', lastSeq: 1 } }).welcome('A#2', {
      sub: 'subA',
      head: 3,
      after: 1,
      resumed: true,
    });
    h.deliver('A#2', [2, 3]);
    const verdict = checkHistory(h.ops);
    assert.deepEqual(kinds(verdict), ['client_reorder', 'conn_order']);
    assert.equal(verdict.violations.find((v) => v.kind === 'client_reorder')?.seq, 2);
  });

  it('reports puback_mismatch when an acked event is stored at another seq', () => {
    const h = new History();
    h.publish('P#1', 'x', 'ok', { seq: 2 }).final('e1', ['x', 'y']);
    const verdict = checkHistory(h.ops);
    assert.ok(kinds(verdict).includes('puback_mismatch'), formatSummary(verdict));
    assert.match(
      verdict.violations.find((v) => v.kind === 'puback_mismatch')!.message,
      /acked at seq 2 .* at seq 1/,
    );
  });

  it('does not take a 4011 answering a bogus resume epoch as news of an epoch change', () => {
    const h = new History();
    subscribed(h, 'A#1', 'subA').close('A#1', 1006, true);
    h.hello('A#2', { resume: { subscriberId: 'subA', lastSeq: 0, epoch: 'bogus-A#2' } }).close('A#2', 4011);
    h.publish('P#1', 'x1', 'ok', { seq: 1 }).final('e2', [], { headSeq: 0 });
    const verdict = checkHistory(h.ops, { allowEpochChange: true });
    assert.deepEqual(kinds(verdict), ['silent_epoch_change']);
    assert.match(verdict.violations[0]!.message, /1 acked events of epoch e1 vanished silently/);
  });

  it('treats a retryable nack as unknown: stored is fine', () => {
    const h = new History();
    h.publish('P#1', 'u1', 'fail', { code: 'unavailable' }).final('e1', ['u1']);
    const verdict = checkHistory(h.ops);
    assert.equal(verdict.ok, true, formatSummary(verdict));
    assert.equal(verdict.counts.unknownStored, 1);
  });

  it('lets a checkpoint follow an ack sent ahead of delivery (the events were in flight)', () => {
    const h = new History();
    subscribed(h, 'A#1', 'subA').deliver('A#1', [1, 2, 3]).ack('A#1', 3).ack('A#1', 5, 'ahead');
    h.close('A#1', 1006, true);
    h.hello('A#2', { resume: { subscriberId: 'subA' } }).welcome('A#2', {
      sub: 'subA',
      head: 6,
      after: 5,
      resumed: true,
    });
    h.checkpoint('A', 'subA', 5).deliver('A#2', [6]);
    const verdict = checkHistory(h.ops);
    assert.equal(verdict.ok, true, formatSummary(verdict));
    assert.equal(verdict.counts.checkpointsFromAheadAcks, 1);
    assert.equal(verdict.counts.skippedByClientClaim, 2);
    assert.equal(verdict.counts.ackAhead.unanswered, 1);
  });

  it('does not compare checkpoint readings of concurrent resumes', () => {
    const h = new History();
    subscribed(h, 'A#1', 'subA').deliver('A#1', [1, 2, 3, 4]).ack('A#1', 2);
    h.hello('A#2', { resume: { subscriberId: 'subA' }, race: 'A/r1' });
    h.hello('A#3', { resume: { subscriberId: 'subA' }, race: 'A/r1' });
    h.ack('A#1', 4);
    // A#3's takeover read 4, A#2's read 2 earlier, but A#3's welcome arrived first.
    h.welcome('A#3', { sub: 'subA', head: 4, after: 4, resumed: true }).checkpoint('A', 'subA', 4);
    h.welcome('A#2', { sub: 'subA', head: 4, after: 2, resumed: true }).checkpoint('A', 'subA', 2);
    h.close('A#1', 4009).close('A#2', 4009);
    h.raceSettled('A', 'A/r1', 'subA', ['A#1', 'A#2', 'A#3'], ['A#3']);
    const verdict = checkHistory(h.ops);
    assert.equal(verdict.ok, true, formatSummary(verdict));
    assert.equal(verdict.counts.checkpointsConcurrent, 1);
  });

  it('does not count fresh subscribers a race connection created as survivors of the raced one', () => {
    // From a checkpoints run: A/r1's bogus-epoch resume A#3 got its 4011 after A#2 had been
    // welcomed as the resume; the client took that 4011 for its own and sent fresh hellos in
    // its next race. The gateway rightly made two new subscribers beside A#2: no duplicates.
    const h = new History();
    subscribed(h, 'A#1', 'subA').deliver('A#1', [1]).ack('A#1', 1);
    h.hello('A#2', { resume: { subscriberId: 'subA', lastSeq: 1, epoch: 'e1' }, race: 'A/r1' });
    h.hello('A#3', { resume: { subscriberId: 'subA', lastSeq: 1, epoch: 'bogus-A#3' }, race: 'A/r1' });
    h.welcome('A#2', { sub: 'subA', head: 1, after: 1, resumed: true }).close('A#1', 4009);
    h.close('A#3', 4011);
    h.raceSettled('A', 'A/r1', 'subA', ['A#1', 'A#2', 'A#3'], ['A#2']);
    h.hello('A#4', { after: 0 }).hello('A#5', { after: 0 });
    h.welcome('A#4', { sub: 'subA2', head: 1, after: 0 }).welcome('A#5', { sub: 'subA3', head: 1, after: 0 });
    h.raceSettled('A', 'A/r2', 'subA3', ['A#2', 'A#4', 'A#5'], ['A#2', 'A#4', 'A#5']);
    h.deliver('A#4', [1]).deliver('A#5', [1]);
    h.close('A#2', 1000, true).close('A#4', 1000, true).close('A#5', 1000, true);
    const verdict = checkHistory(h.ops);
    assert.deepEqual(verdict.violations, [], formatSummary(verdict));
    assert.equal(verdict.counts.races, 2);
  });

  it('excuses a race with several survivors when a node was killed during it', () => {
    const h = new History();
    subscribed(h, 'A#1', 'subA');
    h.hello('A#2', { resume: { subscriberId: 'subA', lastSeq: 0 }, race: 'A/r1' });
    h.fault('node_kill', 'n1');
    h.welcome('A#2', { sub: 'subA', head: 0, after: 0, resumed: true });
    h.raceSettled('A', 'A/r1', 'subA', ['A#1', 'A#2'], ['A#1', 'A#2']);
    h.close('A#1', 1006).close('A#2', 1000, true);
    const verdict = checkHistory(h.ops);
    assert.equal(verdict.ok, true, formatSummary(verdict));
    assert.equal(verdict.counts.racesDisturbed, 1);
  });

  it('keeps the first violations and a few of every kind, with exact totals', () => {
    const h = new History();
    subscribed(h, 'A#1', 'subA');
    for (let seq = 1; seq <= 40; seq += 2) h.deliver('A#1', [seq + 1]); // every delivery skips one
    h.memory('n1', 10 * MB);
    const verdict = checkHistory(h.ops, { maxViolations: 5, maxRssBytes: MB });
    assert.equal(verdict.violationCount, 21);
    assert.deepEqual(verdict.violationTotals, { conn_order: 20, memory_unbounded: 1 });
    assert.equal(verdict.violations.length, 6);
    assert.equal(verdict.violations.at(-1)?.kind, 'memory_unbounded');
  });

  it('checks live with record/finish exactly as checkHistory does', () => {
    const checker = new Checker(CLEAN_OPTIONS);
    for (const op of cleanHistory().ops) checker.record(op);
    const verdict = checker.finish();
    assert.deepEqual(verdict, checkHistory(cleanHistory().ops, CLEAN_OPTIONS));
    assert.equal(checker.finish(), verdict);
    // A close landing after the run ended changes nothing.
    checker.record({ op: 'memory', t: 1e9, node: 'n1', rssBytes: 1e12 });
    assert.equal(checker.lateOps, 1);
    assert.deepEqual(checker.finish(), checkHistory(cleanHistory().ops, CLEAN_OPTIONS));
  });

  it('round-trips a history through JSONL and re-checks it to the same verdict', () => {
    for (const [name, h, options] of [
      ['clean', cleanHistory(), CLEAN_OPTIONS],
      [
        'lost',
        (() => {
          const x = new History();
          CASES[0]!.build(x);
          return x;
        })(),
        {},
      ],
    ] as const) {
      const file = path.join(dir, `${name}.jsonl`);
      writeHistory(file, h.ops);
      const text = readFileSync(file, 'utf8');
      assert.equal(text.trimEnd().split('\n').length, h.ops.length);
      assert.deepEqual([...readHistory(file)], JSON.parse(JSON.stringify(h.ops)));
      const live = checkHistory(h.ops, options);
      const offline = checkHistory(readHistory(file), options);
      assert.deepEqual(offline, live);
      const verdictFile = path.join(dir, name, 'verdict.json');
      writeVerdict(verdictFile, offline);
      assert.deepEqual(JSON.parse(readFileSync(verdictFile, 'utf8')), JSON.parse(JSON.stringify(offline)));
    }
  });

  it('reads files in chunks, skips blank lines and names a bad line', () => {
    const file = path.join(dir, 'big.jsonl');
    const op = { op: 'memory', t: 1, node: 'n'.repeat(300), rssBytes: 1 };
    const lines = Array.from({ length: 5000 }, (_, i) => JSON.stringify({ ...op, t: i }));
    writeFileSync(file, lines.join('\n\n') + '\n'); // > 1 MiB: crosses chunk boundaries
    const ops = [...readHistory(file)];
    assert.equal(ops.length, 5000);
    assert.equal(ops[4999]?.t, 4999);
    const bad = path.join(dir, 'bad.jsonl');
    writeFileSync(bad, `${JSON.stringify(op)}\n{"op":\n`);
    assert.throws(() => [...readHistory(bad)], /bad\.jsonl:2: not JSON/);
  });

  it('summarises a pass and a fail on one screen', () => {
    const pass = formatSummary(checkHistory(cleanHistory().ops, CLEAN_OPTIONS), {
      scenario: 'clean',
      seed: 7,
    });
    assert.match(pass, /^scenario: clean\nseed: 7\n/);
    assert.match(pass, /deliveries 19 · duplicates dropped 3/);
    assert.match(pass, /publishes +ok 8 · fail 2 · unknown 1/);
    assert.match(pass, /4009 ×2 · 4010 ×0 · 4011 ×2 · 4101 ×0 · other: 1000 ×2, 1006 ×2/);
    assert.match(pass, /races 1 \(survivors 1/);
    assert.match(pass, /checkpoints +observed 3/);
    assert.match(pass, /epochs seen 2 \(changes 1\)/);
    assert.match(pass, /n1 max 120\.0 MB · n2 max 90\.0 MB \(bound 500\.0 MB\)/);
    assert.match(pass, /violations +none/);
    assert.match(pass, /\nVERDICT: PASS$/);
    assert.ok(pass.split('\n').length <= 25, pass);

    const h = new History();
    CASES[0]!.build(h);
    const fail = formatSummary(checkHistory(h.ops));
    assert.match(fail, /acked_publish_lost ×1 — /);
    assert.match(fail, /event "x2" was acked at seq 2/);
    assert.match(fail, /\nVERDICT: FAIL \(1 violations\)$/);
  });
});
