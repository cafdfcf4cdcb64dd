import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import type { Engine, EngineLimits, NewSession } from '../../src/engine/engine.ts';
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
        // the caller may still append the event that ends the session
        const last = await engine.append(sid, events(sid, 'ended'));
        assert.deepEqual(last.outcomes, [{ seq: 3, duplicate: false }]);
        assert.equal(last.endedAt, 2);
        const third = await engine.endStream(sid);
        assert.equal(third.endedAt, 2);
        assert.equal(third.headSeq, 3);
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

      test('without a key every call creates its own session', async (engine) => {
        const a = await engine.createSession(newSession());
        const b = await engine.createSession(newSession());
        assert.equal(a.created && b.created, true);
        assert.notEqual(a.session.id, b.session.id);
        assert.ok(await engine.getSession(a.session.id));
        assert.ok(await engine.getSession(b.session.id));
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
