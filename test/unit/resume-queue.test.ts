/**
 * ResumeQueue on its own, with a host that records what it is asked and answers
 * takeovers when the test says: which resumes go out together, which wait for a result,
 * and what is refused before any takeover.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ResumeClaims } from '../../src/auth/resume-token.ts';
import type { SubscriberRecord } from '../../src/engine/engine.ts';
import type { GatewayError } from '../../src/errors/gateway-error.ts';
import type { Connection } from '../../src/session/connection.ts';
import { claimedAck, ResumeQueue, type QueuedResume } from '../../src/session/resume-queue.ts';

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function record(id: string, generation: number): SubscriberRecord {
  return { id, generation } as SubscriberRecord;
}

/** Each resume is a subscriber id and, optionally, a lastSeq and epoch. */
function harness(
  options: { head?: number; epoch?: string; max?: number; prepare?: () => Promise<void> } = {},
) {
  const log: string[] = [];
  /** Takeovers sent and not answered, in the order they were made. */
  const out: { id: string; answer(): void }[] = [];
  let generation = 0;
  const queue = new ResumeQueue<null>(
    options.max ?? 100,
    {
      prepare: options.prepare ?? (() => Promise.resolve()),
      epoch: () => options.epoch ?? 'e1',
      head: () => options.head ?? 10,
      takeover: (_owner, r) =>
        new Promise((resolve) => {
          const id = r.claims.subscriberId;
          log.push(`takeover ${id}`);
          out.push({ id, answer: () => resolve(record(id, ++generation)) });
        }),
      resumed: (_owner, r, rec) => void log.push(`resumed ${r.claims.subscriberId} g${rec!.generation}`),
      resumeAlone: (_owner, r) => {
        log.push(`alone ${r.claims.subscriberId}`);
        return Promise.resolve();
      },
    },
    null,
  );
  const conn = { state: 'pending' } as unknown as Connection;
  const resume = (id: string, lastSeq?: number, epoch?: string) =>
    queue.push(conn, { subscriberId: id } as ResumeClaims, lastSeq, epoch).then(
      () => `${id} ok`,
      (err: GatewayError) => `${id} ${err.code}`,
    );
  /** Answers every takeover sent so far, in order, then lets the queue go on. */
  const answerAll = async () => {
    for (const t of out.splice(0)) t.answer();
    await turn();
  };
  return { queue, log, out, resume, answerAll };
}

describe('ResumeQueue', () => {
  it('makes the takeovers of distinct subscribers together and applies them in arrival order', async () => {
    const h = harness();
    const results = [h.resume('a'), h.resume('b'), h.resume('c', 10)];
    await turn();
    assert.deepEqual(h.log, ['takeover a', 'takeover b', 'takeover c'], 'all out before any answer');
    // answered out of order: applied in arrival order all the same
    h.out[2]!.answer();
    h.out[0]!.answer();
    await turn();
    assert.deepEqual(h.log.slice(3), [], 'nothing applied while b is out');
    h.out[1]!.answer();
    assert.deepEqual(await Promise.all(results), ['a ok', 'b ok', 'c ok']);
    assert.deepEqual(h.log.slice(3), ['resumed a g2', 'resumed b g3', 'resumed c g1']);
  });

  it("starts a new run at a subscriber's second resume, after the first one's result", async () => {
    const h = harness();
    const results = [h.resume('a'), h.resume('b'), h.resume('a'), h.resume('c')];
    await turn();
    assert.deepEqual(h.log, ['takeover a', 'takeover b']);
    await h.answerAll();
    assert.deepEqual(h.log.slice(2), ['resumed a g1', 'resumed b g2', 'takeover a', 'takeover c']);
    await h.answerAll();
    assert.deepEqual(await Promise.all(results), ['a ok', 'b ok', 'a ok', 'c ok']);
    assert.deepEqual(h.log.slice(6), ['resumed a g3', 'resumed c g4']);
  });

  it('refuses a resume of another epoch before any takeover, and runs one past the head alone, at its place', async () => {
    const h = harness({ head: 10, epoch: 'e1' });
    const results = [h.resume('a'), h.resume('old', 3, 'e0'), h.resume('ahead', 11), h.resume('b', 10, 'e1')];
    await turn();
    assert.deepEqual(h.log, ['takeover a'], 'the resume past the head waits for the run before it');
    await h.answerAll();
    await turn();
    assert.deepEqual(h.log.slice(1), ['resumed a g1', 'alone ahead', 'takeover b']);
    await h.answerAll();
    assert.deepEqual(await Promise.all(results), ['a ok', 'old history_gone', 'ahead ok', 'b ok']);
  });

  it('refuses a resume as overloaded while its bound of resumes waits', async () => {
    const h = harness({ max: 2 });
    const results = [h.resume('a'), h.resume('b'), h.resume('c')];
    assert.equal(await results[2], 'c overloaded');
    await turn();
    await h.answerAll();
    assert.deepEqual(await Promise.all(results.slice(0, 2)), ['a ok', 'b ok']);
  });

  it('refuses every resume of a run whose preparation failed, without a takeover', async () => {
    const h = harness({ prepare: () => Promise.reject(new Error('watch failed')) });
    const conn = { state: 'pending' } as unknown as Connection;
    const results = ['a', 'b'].map((id) => h.queue.push(conn, { subscriberId: id } as ResumeClaims));
    for (const result of results) await assert.rejects(result, /watch failed/);
    assert.deepEqual(h.log, []);
  });

  it('claims no ack for a socket that closed during its hello', () => {
    const r = { conn: { state: 'closed' }, lastSeq: 5 } as unknown as QueuedResume;
    assert.equal(claimedAck(r), undefined);
    assert.equal(claimedAck({ ...r, conn: { state: 'live' } as unknown as Connection }), 5);
  });
});
