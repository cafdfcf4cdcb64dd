import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import type {
  Engine,
  EngineLimits,
  NewSession,
  SessionNotice,
  SessionRecord,
} from '../../src/engine/engine.ts';
import { GatewayError } from '../../src/errors/gateway-error.ts';
import type { Envelope } from '../../src/protocol/envelope.ts';
import { ManualClock } from '../../src/util/clock.ts';

/**
 * The engine contract (src/engine/engine.ts), run against every engine. A factory must
 * build its engine with CONTRACT_LIMITS and the clock it is given, on fresh, isolated
 * storage: each test gets its own engine.
 */
export const CONTRACT_LIMITS: EngineLimits = { historyMaxEvents: 5, historyTtlAfterEndS: 3600 };

export type EngineFactory = (clock: ManualClock) => Promise<{ engine: Engine; cleanup(): Promise<void> }>;

const WINDOW_MS = 120_000;

export function uniqueId(prefix: string): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

export function makeEvent(
  sessionId: string,
  eventId: string,
  payload: Record<string, unknown> = {},
): Envelope {
  return {
    eventId,
    sessionId,
    ts: '2026-11-28T12:00:00.000Z',
    type: 'transcript.partial',
    payload: { segmentId: 'seg-1', revision: 0, text: `text of ${eventId}`, ...payload },
    schemaVersion: 1,
  };
}

function isSessionEnded(err: unknown): boolean {
  assert.ok(err instanceof GatewayError, `expected a GatewayError, got ${String(err)}`);
  assert.equal(err.code, 'session_ended');
  return true;
}

/** The record after a change of `current` (what a caller of transitionSession would store). */
function changed(current: SessionRecord, state: SessionRecord['state'], extra: Partial<SessionRecord> = {}) {
  return {
    ...current,
    state,
    version: current.version + 1,
    lastTransition: { to: state, at: '2026-11-28T12:00:01.000Z' },
    ...extra,
  };
}

/** Polls until `check` holds (notices arrive asynchronously). */
async function until(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function events(sessionId: string, ...ids: string[]): Envelope[] {
  return ids.map((id) => makeEvent(sessionId, id));
}

function newSession(overrides: Partial<NewSession> = {}): NewSession {
  return {
    id: uniqueId('ses'),
    tenantId: 'tenant-a',
    ownerId: 'user-1',
    createdAt: '2026-11-28T12:00:00.000Z',
    ...overrides,
  };
}

export function engineContract(name: string, makeEngine: EngineFactory): void {
  /** Registers a test that gets a fresh engine and clock, and always cleans up. */
  function test(title: string, body: (engine: Engine, clock: ManualClock) => Promise<void>): void {
    it(title, async () => {
      const clock = new ManualClock();
      const { engine, cleanup } = await makeEngine(clock);
      try {
        await body(engine, clock);
      } finally {
        await cleanup();
      }
    });
  }

  describe(`engine contract: ${name}`, () => {
    describe('append', () => {
      test('assigns contiguous seqs from 1, in input order, across batches', async (engine) => {
        const sid = uniqueId('s');
        const first = await engine.append(sid, events(sid, 'a', 'b', 'c'));
        assert.deepEqual(first.outcomes, [
          { seq: 1, duplicate: false },
          { seq: 2, duplicate: false },
          { seq: 3, duplicate: false },
        ]);
        assert.equal(first.headSeq, 3);
        const second = await engine.append(sid, events(sid, 'd', 'e'));
        assert.deepEqual(
          second.outcomes.map((o) => o.seq),
          [4, 5],
        );
        assert.equal(second.headSeq, 5);
        const read = await engine.read(sid, 0, 100);
        assert.deepEqual(
          read.events.map((e) => [e.seq, e.event.eventId]),
          [
            [1, 'a'],
            [2, 'b'],
            [3, 'c'],
            [4, 'd'],
            [5, 'e'],
          ],
        );
      });

      test('sessions are sequenced independently', async (engine) => {
        const s1 = uniqueId('s');
        const s2 = uniqueId('s');
        await engine.append(s1, events(s1, 'a', 'b'));
        const other = await engine.append(s2, events(s2, 'x'));
        assert.deepEqual(other.outcomes, [{ seq: 1, duplicate: false }]);
        assert.equal((await engine.head(s1)).headSeq, 2);
      });

      test('dedupes within a batch: a repeated eventId gets the first seq and appends nothing', async (engine) => {
        const sid = uniqueId('s');
        const result = await engine.append(sid, events(sid, 'a', 'b', 'a', 'c', 'b'));
        assert.deepEqual(result.outcomes, [
          { seq: 1, duplicate: false },
          { seq: 2, duplicate: false },
          { seq: 1, duplicate: true },
          { seq: 3, duplicate: false },
          { seq: 2, duplicate: true },
        ]);
        assert.equal(result.headSeq, 3);
        const read = await engine.read(sid, 0, 100);
        assert.deepEqual(
          read.events.map((e) => e.event.eventId),
          ['a', 'b', 'c'],
        );
      });

      test('dedupes across batches: a retried batch returns the original seqs and appends nothing', async (engine) => {
        const sid = uniqueId('s');
        await engine.append(sid, events(sid, 'a', 'b'));
        const retry = await engine.append(sid, events(sid, 'a', 'b'));
        assert.deepEqual(retry.outcomes, [
          { seq: 1, duplicate: true },
          { seq: 2, duplicate: true },
        ]);
        assert.equal(retry.headSeq, 2);
        assert.equal((await engine.read(sid, 0, 100)).events.length, 2);
      });

      test('a batch of known and new eventIds appends only the new ones, contiguously', async (engine) => {
        const sid = uniqueId('s');
        await engine.append(sid, events(sid, 'a', 'b'));
        const mixed = await engine.append(sid, events(sid, 'c', 'a', 'd'));
        assert.deepEqual(mixed.outcomes, [
          { seq: 3, duplicate: false },
          { seq: 1, duplicate: true },
          { seq: 4, duplicate: false },
        ]);
        assert.equal(mixed.headSeq, 4);
      });

      test('dedupe is per session: one eventId in two sessions is two events', async (engine) => {
        const s1 = uniqueId('s');
        const s2 = uniqueId('s');
        await engine.append(s1, events(s1, 'shared'));
        const other = await engine.append(s2, events(s2, 'shared'));
        assert.deepEqual(other.outcomes, [{ seq: 1, duplicate: false }]);
      });

      test('an empty batch appends nothing', async (engine) => {
        const sid = uniqueId('s');
        await engine.append(sid, events(sid, 'a'));
        const empty = await engine.append(sid, []);
        assert.deepEqual(empty.outcomes, []);
        assert.equal(empty.headSeq, 1);
      });

      test('stores each envelope unchanged', async (engine) => {
        const sid = uniqueId('s');
        const event = makeEvent(sid, 'rich', {
          text: 'héllo “wörld” 🎙️',
          speaker: 'agent',
          startMs: 10,
          endMs: 2500,
        });
        await engine.append(sid, [event]);
        const read = await engine.read(sid, 0, 1);
        assert.deepEqual(read.events, [{ seq: 1, event }]);
      });
    });

    describe('read', () => {
      test('returns up to limit events with seq > after, in order', async (engine) => {
        const sid = uniqueId('s');
        await engine.append(sid, events(sid, 'e1', 'e2', 'e3', 'e4', 'e5'));
        const page = await engine.read(sid, 1, 3);
        assert.deepEqual(
          page.events.map((e) => e.seq),
          [2, 3, 4],
        );
        assert.equal(page.firstSeq, 1);
        assert.equal(page.headSeq, 5);
        const rest = await engine.read(sid, 4, 100);
        assert.deepEqual(
          rest.events.map((e) => e.seq),
          [5],
        );
      });

      test('after = head reads nothing; limit 0 reads nothing', async (engine) => {
        const sid = uniqueId('s');
        await engine.append(sid, events(sid, 'a', 'b'));
        assert.deepEqual((await engine.read(sid, 2, 10)).events, []);
        assert.deepEqual((await engine.read(sid, 9, 10)).events, []);
        const none = await engine.read(sid, 0, 0);
        assert.deepEqual(none.events, []);
        assert.equal(none.headSeq, 2);
      });

      test('a stream never written reads empty: head 0, firstSeq 1, with an epoch', async (engine) => {
        const sid = uniqueId('s');
        const read = await engine.read(sid, 0, 10);
        assert.deepEqual(read.events, []);
        assert.equal(read.headSeq, 0);
        assert.equal(read.firstSeq, 1);
        assert.equal(typeof read.epoch, 'string');
        assert.ok(read.epoch.length > 0);
        assert.equal(read.endedAt, undefined);
      });
    });

    describe('retention (historyMaxEvents = 5)', () => {
      test('keeps the newest events: firstSeq moves up and older history is gone', async (engine) => {
        const sid = uniqueId('s');
        await engine.append(sid, events(sid, 'e1', 'e2', 'e3', 'e4'));
        await engine.append(sid, events(sid, 'e5', 'e6', 'e7', 'e8'));
        const all = await engine.read(sid, 0, 100);
        assert.equal(all.firstSeq, 4);
        assert.equal(all.headSeq, 8);
        assert.deepEqual(
          all.events.map((e) => e.seq),
          [4, 5, 6, 7, 8],
        );
        // a reader behind firstSeq gets what is retained and can see the gap itself
        const behind = await engine.read(sid, 1, 100);
        assert.equal(behind.events[0]?.seq, 4);
        assert.ok(2 < behind.firstSeq);
        await engine.append(sid, events(sid, 'e9'));
        assert.equal((await engine.read(sid, 0, 1)).firstSeq, 5);
      });

      test('a trimmed eventId still dedupes to its original seq', async (engine) => {
        const sid = uniqueId('s');
        await engine.append(sid, events(sid, 'e1', 'e2', 'e3', 'e4', 'e5', 'e6', 'e7'));
        const retry = await engine.append(sid, events(sid, 'e1'));
        assert.deepEqual(retry.outcomes, [{ seq: 1, duplicate: true }]);
        assert.equal(retry.headSeq, 7);
      });
    });

    describe('head and epoch', () => {
      test('head() reports head and epoch without reading', async (engine) => {
        const sid = uniqueId('s');
        assert.equal((await engine.head(sid)).headSeq, 0);
        const appended = await engine.append(sid, events(sid, 'a', 'b', 'c'));
        const head = await engine.head(sid);
        assert.equal(head.headSeq, 3);
        assert.equal(head.epoch, appended.epoch);
        assert.equal(head.endedAt, undefined);
      });

      test('peekHeads reads many heads in one call, in the order asked, and starts nothing', async (engine) => {
        const [a, b, never] = [uniqueId('s'), uniqueId('s'), uniqueId('s')];
        assert.deepEqual(await engine.peekHeads([]), []);
        const appended = await engine.append(a, events(a, 'a1', 'a2'));
        await engine.append(b, events(b, 'b1'));
        const ended = await engine.endStream(b);
        const headOfA = { headSeq: 2, epoch: appended.epoch };
        assert.deepEqual(await engine.peekHeads([b, never, a, a]), [ended, undefined, headOfA, headOfA]);
        // read only: a stream never written has no epoch after a peek either
        assert.deepEqual(await engine.peekHeads([never]), [undefined]);
        await engine.append(a, events(a, 'a3'));
        assert.deepEqual(await engine.peekHeads([a]), [{ headSeq: 3, epoch: appended.epoch }]);
      });

      test('the epoch is stable across head, append, read and endStream', async (engine) => {
        const sid = uniqueId('s');
        const seen = new Set<string>();
        seen.add((await engine.head(sid)).epoch);
        seen.add((await engine.append(sid, events(sid, 'a'))).epoch);
        seen.add((await engine.read(sid, 0, 10)).epoch);
        seen.add((await engine.append(sid, events(sid, 'b'))).epoch);
        seen.add((await engine.head(sid)).epoch);
        seen.add((await engine.endStream(sid)).epoch);
        seen.add((await engine.head(sid)).epoch);
        assert.equal(seen.size, 1);
      });
    });

    describe('endStream', () => {
      test('ends the stream at its head; head and read report endedAt', async (engine) => {
        const sid = uniqueId('s');
        await engine.append(sid, events(sid, 'a', 'b'));
        const ended = await engine.endStream(sid);
        assert.equal(ended.endedAt, 2);
        assert.equal(ended.headSeq, 2);
        assert.equal((await engine.head(sid)).endedAt, 2);
        const read = await engine.read(sid, 0, 10);
        assert.equal(read.endedAt, 2);
        assert.equal(read.events.length, 2);
      });

      test('is idempotent: later calls keep the first endedAt', async (engine) => {
        const sid = uniqueId('s');
        await engine.append(sid, events(sid, 'a', 'b'));
        const first = await engine.endStream(sid);
        const again = await engine.endStream(sid);
        assert.deepEqual(again, first);
        assert.deepEqual(await engine.head(sid), first);
      });

      test('nothing new follows the end: an append with a new event is refused and appends nothing', async (engine) => {
        const sid = uniqueId('s');
        await engine.append(sid, events(sid, 'a', 'b'));
        await engine.endStream(sid);
        await assert.rejects(engine.append(sid, events(sid, 'late')), isSessionEnded);
        // a batch holding one new event is refused whole
        await assert.rejects(engine.append(sid, events(sid, 'a', 'late')), isSessionEnded);
        // a retry of what was stored still gets its seqs
        const retry = await engine.append(sid, events(sid, 'b', 'a'));
        assert.deepEqual(retry.outcomes, [
          { seq: 2, duplicate: true },
          { seq: 1, duplicate: true },
        ]);
        assert.deepEqual(
          (await engine.read(sid, 0, 10)).events.map((e) => e.event.eventId),
          ['a', 'b'],
        );
        assert.deepEqual(await engine.head(sid), { headSeq: 2, epoch: retry.epoch, endedAt: 2 });
      });

      test('an empty stream ends at 0', async (engine) => {
        const sid = uniqueId('s');
        const ended = await engine.endStream(sid);
        assert.equal(ended.endedAt, 0);
        assert.equal(ended.headSeq, 0);
      });
    });

    describe('sessions', () => {
      test('createSession stores a created, version 1 record that getSession returns', async (engine) => {
        const input = newSession({ metadata: { topic: 'intake', lang: 'de' } });
        const { session, created } = await engine.createSession(input);
        assert.equal(created, true);
        assert.deepEqual(session, { ...input, state: 'created', version: 1 });
        assert.deepEqual(await engine.getSession(input.id), session);
      });

      test('getSession of an unknown id is undefined', async (engine) => {
        assert.equal(await engine.getSession(uniqueId('nope')), undefined);
      });

      test('one idempotency key returns the first session, created: false', async (engine) => {
        const first = await engine.createSession(newSession(), 'key-1');
        const retry = await engine.createSession(newSession(), 'key-1');
        assert.equal(first.created, true);
        assert.equal(retry.created, false);
        assert.equal(retry.session.id, first.session.id);
        assert.deepEqual(retry.session, first.session);
      });

      test('an idempotency key is scoped by tenant and owner', async (engine) => {
        const base = await engine.createSession(newSession(), 'key-1');
        const otherOwner = await engine.createSession(newSession({ ownerId: 'user-2' }), 'key-1');
        const otherTenant = await engine.createSession(newSession({ tenantId: 'tenant-b' }), 'key-1');
        const otherKey = await engine.createSession(newSession(), 'key-2');
        for (const r of [otherOwner, otherTenant, otherKey]) {
          assert.equal(r.created, true);
          assert.notEqual(r.session.id, base.session.id);
        }
      });

      test('concurrent creates with one key create exactly one session', async (engine) => {
        const inputs = Array.from({ length: 12 }, () => newSession());
        const results = await Promise.all(inputs.map((input) => engine.createSession(input, 'same-key')));
        const created = results.filter((r) => r.created);
        assert.equal(created.length, 1);
        const winner = created[0]!.session.id;
        for (const r of results) assert.equal(r.session.id, winner);
        const stored = await Promise.all(inputs.map((input) => engine.getSession(input.id)));
        assert.deepEqual(
          stored.filter((s) => s !== undefined).map((s) => s.id),
          [winner],
        );
      });

      test('createSession appends its event to the new stream in the same step; a repeat appends nothing', async (engine) => {
        const input = newSession();
        const created = makeEvent(input.id, `call.created:${input.id}`);
        const first = await engine.createSession(input, 'key-ev', created);
        assert.equal(first.created, true);
        const again = await engine.createSession(newSession(), 'key-ev', makeEvent('other', 'other-created'));
        assert.equal(again.created, false);
        assert.equal(again.session.id, input.id);
        const read = await engine.read(input.id, 0, 10);
        assert.deepEqual(read.events, [{ seq: 1, event: created }]);
        // without a key too
        const plain = newSession();
        await engine.createSession(plain, undefined, makeEvent(plain.id, 'c'));
        assert.deepEqual(
          (await engine.read(plain.id, 0, 10)).events.map((e) => [e.seq, e.event.eventId]),
          [[1, 'c']],
        );
      });

      test('without a key every call creates its own session', async (engine) => {
        const a = await engine.createSession(newSession());
        const b = await engine.createSession(newSession());
        assert.equal(a.created && b.created, true);
        assert.notEqual(a.session.id, b.session.id);
        assert.ok(await engine.getSession(a.session.id));
        assert.ok(await engine.getSession(b.session.id));
      });
    });

    describe('transitionSession (compare-and-set with its event)', () => {
      test('applies at the expected version: the record changes and the event is appended at the next seq', async (engine) => {
        const input = newSession();
        const { session } = await engine.createSession(input, undefined, makeEvent(input.id, 'created'));
        const next = changed(session, 'connecting');
        const event = makeEvent(input.id, 'connecting-v2');
        const result = await engine.transitionSession(input.id, {
          expectedVersion: 1,
          next,
          event,
          endStream: false,
        });
        assert.equal(result.status, 'applied');
        assert.ok(result.status === 'applied');
        assert.deepEqual(result.session, next);
        assert.deepEqual(result.outcome, { seq: 2, duplicate: false });
        assert.equal(result.head.headSeq, 2);
        assert.equal(result.head.endedAt, undefined);
        assert.deepEqual(await engine.getSession(input.id), next);
        assert.deepEqual((await engine.read(input.id, 0, 10)).events.at(-1), { seq: 2, event });
      });

      test('another version is a conflict with the current record, and changes nothing', async (engine) => {
        const input = newSession();
        const { session } = await engine.createSession(input);
        await engine.append(input.id, events(input.id, 'a'));
        const result = await engine.transitionSession(input.id, {
          expectedVersion: 7,
          next: { ...changed(session, 'failed'), version: 8 },
          event: makeEvent(input.id, 'nope'),
          endStream: true,
        });
        assert.deepEqual(result, { status: 'conflict', current: session });
        assert.deepEqual(await engine.getSession(input.id), session);
        const head = await engine.head(input.id);
        assert.equal(head.headSeq, 1);
        assert.equal(head.endedAt, undefined);
      });

      test('an unknown session is not_found, and nothing is appended', async (engine) => {
        const sid = uniqueId('nope');
        const result = await engine.transitionSession(sid, {
          expectedVersion: 1,
          next: changed({ ...newSession({ id: sid }), state: 'created', version: 1 }, 'connecting'),
          event: makeEvent(sid, 'x'),
          endStream: false,
        });
        assert.deepEqual(result, { status: 'not_found' });
        assert.equal((await engine.head(sid)).headSeq, 0);
      });

      test('a terminal change ends the stream at its event; nothing new follows', async (engine) => {
        const input = newSession();
        const { session } = await engine.createSession(input, undefined, makeEvent(input.id, 'created'));
        await engine.append(input.id, events(input.id, 'a'));
        const failed = changed(session, 'failed');
        const result = await engine.transitionSession(input.id, {
          expectedVersion: 1,
          next: failed,
          event: makeEvent(input.id, 'failed-v2'),
          endStream: true,
        });
        assert.ok(result.status === 'applied');
        assert.deepEqual(result.outcome, { seq: 3, duplicate: false });
        assert.equal(result.head.endedAt, 3);
        assert.equal((await engine.head(input.id)).endedAt, 3);
        assert.equal((await engine.read(input.id, 0, 10)).endedAt, 3);
        await assert.rejects(engine.append(input.id, events(input.id, 'late')), isSessionEnded);
        // even a change at the right version: the stream is over
        await assert.rejects(
          engine.transitionSession(input.id, {
            expectedVersion: 2,
            next: changed(failed, 'ended'),
            event: makeEvent(input.id, 'ended-v3'),
            endStream: true,
          }),
          isSessionEnded,
        );
        assert.deepEqual(await engine.getSession(input.id), failed);
        assert.equal((await engine.head(input.id)).headSeq, 3);
      });

      test('concurrent changes from one version: exactly one applies, the others conflict', async (engine) => {
        const input = newSession();
        const { session } = await engine.createSession(input, undefined, makeEvent(input.id, 'created'));
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            engine.transitionSession(input.id, {
              expectedVersion: 1,
              next: changed(session, i % 2 === 0 ? 'connecting' : 'failed', { metadata: { n: String(i) } }),
              event: makeEvent(input.id, `change-${i}`),
              endStream: i % 2 === 1,
            }),
          ),
        );
        const applied = results.filter((r) => r.status === 'applied');
        assert.equal(applied.length, 1);
        assert.equal(results.filter((r) => r.status === 'conflict').length, 9);
        const winner = applied[0]!.session;
        for (const r of results) if (r.status === 'conflict') assert.deepEqual(r.current, winner);
        assert.deepEqual(await engine.getSession(input.id), winner);
        const read = await engine.read(input.id, 0, 100);
        assert.equal(read.events.length, 2, 'one event for the one change');
        assert.equal(read.endedAt, winner.state === 'failed' ? 2 : undefined);
      });

      test('watchers hear of a change like of any append', async (engine) => {
        const input = newSession();
        const { session } = await engine.createSession(input, undefined, makeEvent(input.id, 'created'));
        const notices: SessionNotice[] = [];
        const watch = engine.watch(input.id, (n) => notices.push(n));
        try {
          await watch.ready;
          const result = await engine.transitionSession(input.id, {
            expectedVersion: 1,
            next: changed(session, 'connecting'),
            event: makeEvent(input.id, 'connecting-v2'),
            endStream: false,
          });
          assert.ok(result.status === 'applied');
          await until(() => notices.some((n) => n.kind === 'head' && n.headSeq === 2), 'the head notice');
          assert.deepEqual(
            notices.find((n) => n.kind === 'head'),
            { kind: 'head', headSeq: 2, epoch: result.head.epoch },
          );
        } finally {
          watch.stop();
        }
      });
    });

    describe('listSessions', () => {
      /** Sessions of one tenant: owners alternate, createdAt steps back a second each, with ties. */
      async function seed(engine: Engine, tenantId: string, count: number): Promise<NewSession[]> {
        const inputs = Array.from({ length: count }, (_, i) =>
          newSession({
            id: `s${String(i).padStart(3, '0')}_${uniqueId('x')}`,
            tenantId,
            ownerId: i % 3 === 0 ? 'owner-b' : 'owner-a',
            // pairs share a createdAt: ties are ordered by id
            createdAt: new Date(Date.UTC(2026, 10, 28, 12) - Math.floor(i / 2) * 1000).toISOString(),
          }),
        );
        for (const input of inputs) await engine.createSession(input);
        return inputs;
      }

      /** Listing order: createdAt descending, then id ascending. */
      function expectedOrder(inputs: readonly NewSession[]): string[] {
        return [...inputs]
          .sort((a, b) =>
            a.createdAt === b.createdAt ? (a.id < b.id ? -1 : 1) : a.createdAt < b.createdAt ? 1 : -1,
          )
          .map((s) => s.id);
      }

      async function walk(engine: Engine, query: { tenantId: string; ownerId?: string }, limit: number) {
        const ids: string[] = [];
        let after;
        for (let pages = 0; pages < 100; pages++) {
          const page = await engine.listSessions({ ...query, limit, ...(after ? { after } : {}) });
          assert.ok(page.sessions.length <= limit);
          ids.push(...page.sessions.map((s) => s.id));
          if (!page.next) return ids;
          after = page.next;
        }
        throw new Error('the listing does not end');
      }

      test('newest first; a cursor walk visits every session exactly once, in order', async (engine) => {
        const tenant = uniqueId('tenant');
        const inputs = await seed(engine, tenant, 23);
        for (const limit of [1, 5, 7, 23, 50]) {
          assert.deepEqual(
            await walk(engine, { tenantId: tenant }, limit),
            expectedOrder(inputs),
            `limit ${limit}`,
          );
        }
        const first = await engine.listSessions({ tenantId: tenant, limit: 3 });
        assert.deepEqual(
          first.sessions.map((s) => s.id),
          expectedOrder(inputs).slice(0, 3),
        );
        assert.deepEqual(first.sessions[0], { ...inputs[0]!, state: 'created', version: 1 });
        // the last page has no next
        const all = await engine.listSessions({ tenantId: tenant, limit: 23 });
        assert.equal(all.sessions.length, 23);
        assert.equal(all.next, undefined);
      });

      test('by owner, and scoped by tenant', async (engine) => {
        const tenant = uniqueId('tenant');
        const inputs = await seed(engine, tenant, 12);
        const other = await seed(engine, uniqueId('tenant'), 4);
        const mine = inputs.filter((s) => s.ownerId === 'owner-a');
        assert.deepEqual(
          await walk(engine, { tenantId: tenant, ownerId: 'owner-a' }, 3),
          expectedOrder(mine),
        );
        assert.deepEqual(
          await walk(engine, { tenantId: tenant, ownerId: 'owner-b' }, 3),
          expectedOrder(inputs.filter((s) => s.ownerId === 'owner-b')),
        );
        const tenantIds = await walk(engine, { tenantId: tenant }, 100);
        for (const s of other) assert.ok(!tenantIds.includes(s.id), 'another tenant’s session is not listed');
        assert.deepEqual(await engine.listSessions({ tenantId: uniqueId('empty'), limit: 5 }), {
          sessions: [],
        });
        assert.deepEqual(await engine.listSessions({ tenantId: tenant, ownerId: 'nobody', limit: 5 }), {
          sessions: [],
        });
      });

      test('lists records as they are now, and one idempotent create once', async (engine) => {
        const tenant = uniqueId('tenant');
        const input = newSession({ tenantId: tenant });
        const { session } = await engine.createSession(input, 'once');
        await engine.createSession(newSession({ tenantId: tenant }), 'once');
        const next = changed(session, 'connecting');
        await engine.transitionSession(input.id, {
          expectedVersion: 1,
          next,
          event: makeEvent(input.id, 'c'),
          endStream: false,
        });
        assert.deepEqual(await engine.listSessions({ tenantId: tenant, limit: 10 }), { sessions: [next] });
      });
    });

    describe('subscribers', () => {
      const sub = { id: 'sub-1', userId: 'user-1', tenantId: 'tenant-a', after: 7 };

      test('createSubscriber: generation 1, connected, checkpoint = after', async (engine) => {
        const sid = uniqueId('s');
        const expected = {
          ...sub,
          generation: 1,
          checkpoint: 7,
          connected: true,
          disconnectedAt: 0,
          ended: false,
        };
        assert.deepEqual(await engine.createSubscriber(sid, sub), expected);
        assert.deepEqual(await engine.getSubscriber(sid, sub.id), expected);
      });

      test('getSubscriber is undefined for an unknown id or another session', async (engine) => {
        const sid = uniqueId('s');
        await engine.createSubscriber(sid, sub);
        assert.equal(await engine.getSubscriber(sid, 'other'), undefined);
        assert.equal(await engine.getSubscriber(uniqueId('s'), sub.id), undefined);
      });

      test('takeover of a connected subscriber increments the generation', async (engine, clock) => {
        const sid = uniqueId('s');
        await engine.createSubscriber(sid, sub);
        const t1 = await engine.takeoverSubscriber(sid, sub.id, clock.now(), WINDOW_MS);
        assert.equal(t1?.generation, 2);
        assert.equal(t1?.connected, true);
        assert.equal(t1?.checkpoint, 7);
        const t2 = await engine.takeoverSubscriber(sid, sub.id, clock.now(), WINDOW_MS);
        assert.equal(t2?.generation, 3);
        assert.equal((await engine.getSubscriber(sid, sub.id))?.generation, 3);
      });

      test("a takeover with acked (a resume's lastSeq) raises the checkpoint, never lowers it", async (engine, clock) => {
        const sid = uniqueId('s');
        await engine.createSubscriber(sid, sub); // checkpoint 7
        const lower = await engine.takeoverSubscriber(sid, sub.id, clock.now(), WINDOW_MS, undefined, 3);
        assert.equal(lower?.checkpoint, 7);
        const higher = await engine.takeoverSubscriber(sid, sub.id, clock.now(), WINDOW_MS, 'n1', 12);
        assert.equal(higher?.checkpoint, 12);
        assert.equal(higher?.generation, 3);
        assert.equal((await engine.getSubscriber(sid, sub.id))?.checkpoint, 12);
        // The next resume without lastSeq starts from there, and the old generation is fenced.
        assert.equal((await engine.takeoverSubscriber(sid, sub.id, clock.now(), WINDOW_MS))?.checkpoint, 12);
        assert.equal(await engine.saveCheckpoint(sid, sub.id, 3, 20), 12);
        // A refused takeover stores nothing.
        await engine.endSubscriber(sid, sub.id);
        assert.equal(
          await engine.takeoverSubscriber(sid, sub.id, clock.now(), WINDOW_MS, undefined, 30),
          undefined,
        );
      });

      test('concurrent takeovers each get their own generation', async (engine, clock) => {
        const sid = uniqueId('s');
        await engine.createSubscriber(sid, sub);
        const results = await Promise.all(
          Array.from({ length: 6 }, () => engine.takeoverSubscriber(sid, sub.id, clock.now(), WINDOW_MS)),
        );
        const generations = results.map((r) => r?.generation).sort((a, b) => (a ?? 0) - (b ?? 0));
        assert.deepEqual(generations, [2, 3, 4, 5, 6, 7]);
        assert.equal((await engine.getSubscriber(sid, sub.id))?.generation, 7);
      });

      test('release marks it disconnected; a takeover within the window resumes it', async (engine, clock) => {
        const sid = uniqueId('s');
        await engine.createSubscriber(sid, sub);
        const releasedAt = clock.now();
        await engine.releaseSubscriber(sid, sub.id, 1, releasedAt, WINDOW_MS);
        const released = await engine.getSubscriber(sid, sub.id);
        assert.equal(released?.connected, false);
        assert.equal(released?.disconnectedAt, releasedAt);
        clock.advance(WINDOW_MS - 1);
        const resumed = await engine.takeoverSubscriber(sid, sub.id, clock.now(), WINDOW_MS);
        assert.equal(resumed?.generation, 2);
        assert.equal(resumed?.connected, true);
        assert.equal(resumed?.disconnectedAt, 0);
        // resumed: the old window no longer applies
        clock.advance(10 * WINDOW_MS);
        assert.equal((await engine.getSubscriber(sid, sub.id))?.connected, true);
        assert.equal((await engine.takeoverSubscriber(sid, sub.id, clock.now(), WINDOW_MS))?.generation, 3);
      });

      test('takeover is refused once the window has passed, and the record is gone', async (engine, clock) => {
        const sid = uniqueId('s');
        await engine.createSubscriber(sid, sub);
        await engine.releaseSubscriber(sid, sub.id, 1, clock.now(), WINDOW_MS);
        clock.advance(WINDOW_MS + 1);
        assert.equal(await engine.takeoverSubscriber(sid, sub.id, clock.now(), WINDOW_MS), undefined);
        assert.equal(await engine.getSubscriber(sid, sub.id), undefined);
        assert.equal(await engine.saveCheckpoint(sid, sub.id, 1, 50), 0);
      });

      test('a checkpoint moves while the resume window is open, and is refused once it has passed', async (engine, clock) => {
        const sid = uniqueId('s');
        await engine.createSubscriber(sid, { ...sub, after: 0 });
        await engine.releaseSubscriber(sid, sub.id, 1, clock.now(), WINDOW_MS);
        clock.advance(WINDOW_MS - 1);
        assert.equal(await engine.saveCheckpoint(sid, sub.id, 1, 4), 4);
        clock.advance(2);
        // the first call to touch it after the window: nothing saved, and the record is gone
        assert.deepEqual(
          await engine.saveCheckpoints(sid, [{ subscriberId: sub.id, generation: 1, seq: 9 }]),
          [0],
        );
        assert.equal(await engine.getSubscriber(sid, sub.id), undefined);
      });

      test('takeover judges the window by the `now` it is given', async (engine, clock) => {
        const sid = uniqueId('s');
        await engine.createSubscriber(sid, sub);
        const releasedAt = clock.now();
        await engine.releaseSubscriber(sid, sub.id, 1, releasedAt, WINDOW_MS);
        assert.equal(
          await engine.takeoverSubscriber(sid, sub.id, releasedAt + WINDOW_MS + 1, WINDOW_MS),
          undefined,
        );
        assert.equal(
          (await engine.takeoverSubscriber(sid, sub.id, releasedAt + 10, WINDOW_MS))?.generation,
          2,
        );
      });

      test('endSubscriber ends it for good: no takeover, no record, no checkpoint', async (engine, clock) => {
        const sid = uniqueId('s');
        await engine.createSubscriber(sid, sub);
        await engine.endSubscriber(sid, sub.id);
        assert.equal(await engine.getSubscriber(sid, sub.id), undefined);
        assert.equal(await engine.takeoverSubscriber(sid, sub.id, clock.now(), WINDOW_MS), undefined);
        assert.equal(await engine.saveCheckpoint(sid, sub.id, 1, 50), 0);
      });

      test('a checkpoint only grows', async (engine) => {
        const sid = uniqueId('s');
        await engine.createSubscriber(sid, { ...sub, after: 0 });
        assert.equal(await engine.saveCheckpoint(sid, sub.id, 1, 5), 5);
        assert.equal(await engine.saveCheckpoint(sid, sub.id, 1, 3), 5);
        assert.equal(await engine.saveCheckpoint(sid, sub.id, 1, 5), 5);
        assert.equal(await engine.saveCheckpoint(sid, sub.id, 1, 9), 9);
        assert.equal((await engine.getSubscriber(sid, sub.id))?.checkpoint, 9);
      });

      test('a checkpoint is fenced by generation', async (engine, clock) => {
        const sid = uniqueId('s');
        await engine.createSubscriber(sid, { ...sub, after: 0 });
        assert.equal(await engine.saveCheckpoint(sid, sub.id, 1, 4), 4);
        await engine.takeoverSubscriber(sid, sub.id, clock.now(), WINDOW_MS);
        // the superseded connection (generation 1) can no longer move it
        assert.equal(await engine.saveCheckpoint(sid, sub.id, 1, 10), 4);
        assert.equal(await engine.saveCheckpoint(sid, sub.id, 3, 10), 4);
        assert.equal((await engine.getSubscriber(sid, sub.id))?.checkpoint, 4);
        assert.equal(await engine.saveCheckpoint(sid, sub.id, 2, 10), 10);
      });

      test('saveCheckpoints applies each write as saveCheckpoint would, in order', async (engine, clock) => {
        const sid = uniqueId('s');
        const other = { ...sub, id: uniqueId('other') };
        await engine.createSubscriber(sid, { ...sub, after: 0 });
        await engine.createSubscriber(sid, { ...other, after: 2 });
        await engine.takeoverSubscriber(sid, other.id, clock.now(), WINDOW_MS); // generation 2
        const stored = await engine.saveCheckpoints(sid, [
          { subscriberId: sub.id, generation: 1, seq: 6 },
          { subscriberId: other.id, generation: 1, seq: 9 }, // superseded generation: fenced
          { subscriberId: sub.id, generation: 1, seq: 4 }, // lower: ignored
          { subscriberId: other.id, generation: 2, seq: 7 },
          { subscriberId: uniqueId('missing'), generation: 1, seq: 3 },
          { subscriberId: sub.id, generation: 1, seq: 8 }, // after the 6 of the same call
        ]);
        assert.deepEqual(stored, [6, 2, 6, 7, 0, 8]);
        assert.equal((await engine.getSubscriber(sid, sub.id))?.checkpoint, 8);
        assert.equal((await engine.getSubscriber(sid, other.id))?.checkpoint, 7);
        assert.deepEqual(await engine.saveCheckpoints(sid, []), []);
      });

      test('a release by an old generation is ignored', async (engine, clock) => {
        const sid = uniqueId('s');
        await engine.createSubscriber(sid, sub);
        await engine.takeoverSubscriber(sid, sub.id, clock.now(), WINDOW_MS);
        await engine.releaseSubscriber(sid, sub.id, 1, clock.now(), WINDOW_MS);
        const record = await engine.getSubscriber(sid, sub.id);
        assert.equal(record?.connected, true);
        assert.equal(record?.disconnectedAt, 0);
        // still connected, so still resumable long after the stale release's window
        clock.advance(10 * WINDOW_MS);
        assert.equal((await engine.takeoverSubscriber(sid, sub.id, clock.now(), WINDOW_MS))?.generation, 3);
      });

      test('a new createSubscriber with the same id starts over', async (engine, clock) => {
        const sid = uniqueId('s');
        await engine.createSubscriber(sid, sub);
        await engine.takeoverSubscriber(sid, sub.id, clock.now(), WINDOW_MS);
        await engine.saveCheckpoint(sid, sub.id, 2, 20);
        const again = await engine.createSubscriber(sid, { ...sub, after: 3 });
        assert.equal(again.generation, 1);
        assert.equal((await engine.getSubscriber(sid, sub.id))?.checkpoint, 3);
      });
    });
  });
}
