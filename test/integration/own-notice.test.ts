/**
 * An append's head notice and its reply reach the node on two Redis connections, in
 * either order (docs/architecture.md, "Fan-out across nodes"). A notice that overtakes
 * the reply of the node's own append must not cost an engine read (issue 6: that was a
 * read per event for a share of the events under load); a notice announcing more than
 * that reply covers (another node appended meanwhile) must still be filled.
 *
 * The order is forced: the memory engine delivers notices from setImmediate, and this
 * engine answers appends a few milliseconds late, so every notice arrives first.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import type { AppendResult, ReadResult } from '../../src/engine/engine.ts';
import { MemoryEngine } from '../../src/engine/memory/memory-engine.ts';
import type { Envelope } from '../../src/protocol/envelope.ts';
import { systemClock } from '../../src/util/clock.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import {
  assertContiguous,
  autoAck,
  closeAll,
  hello,
  newSession,
  publish,
  publisher,
  seqs,
  sleep,
  transcriptPub,
  waitSeq,
} from '../protocol/support.ts';

const REPLY_DELAY_MS = 5;

class LateReplies extends MemoryEngine {
  reads = 0;
  /** Called after each append is applied and before its reply: another node's turn. */
  meanwhile: ((sessionId: string) => Promise<void>) | undefined;

  override async append(sessionId: string, events: readonly Envelope[]): Promise<AppendResult> {
    const result = await super.append(sessionId, events);
    const other = this.meanwhile;
    this.meanwhile = undefined;
    await other?.(sessionId);
    await sleep(REPLY_DELAY_MS); // the notice (setImmediate) is delivered meanwhile
    return result;
  }

  override read(sessionId: string, after: number, limit: number): Promise<ReadResult> {
    this.reads++;
    return super.read(sessionId, after, limit);
  }
}

let engine: LateReplies;
let gw: TestGateway;
before(async () => {
  engine = new LateReplies(systemClock, { historyMaxEvents: 100_000, historyTtlAfterEndS: 3600 });
  gw = await startTestGateway({}, { engine });
});
afterEach(closeAll);
after(() => gw.stop());

/** A new session with an acking subscriber and an agent publisher, and the reads so far. */
async function subscriberAndPublisher() {
  const s = await newSession(gw);
  const { client: sub } = await hello(gw, 'json', { sessionId: s.sessionId, token: s.ownerToken });
  autoAck(sub);
  const pub = await publisher(gw, s);
  return { sub, pub, readsBefore: engine.reads };
}

describe('head notices that overtake the append reply', () => {
  it('the notice of the node’s own append reads nothing: the reply brings the event', async () => {
    const { sub, pub, readsBefore } = await subscriberAndPublisher();
    const published: number[] = [];
    for (let i = 0; i < 20; i++) {
      const answer = await publish(pub, transcriptPub(`n${i}`));
      assert.equal(answer.op, 'puback', JSON.stringify(answer));
      published.push(answer.seq as number);
    }
    await waitSeq(sub, published.at(-1)!);
    assert.deepEqual(seqs(sub), published);
    assertContiguous(seqs(sub), 1);
    assert.equal(engine.reads - readsBefore, 0, 'engine reads while publishing');
  });

  it('a notice beyond the reply (another node appended meanwhile) is filled after the reply', async () => {
    const { sub, pub, readsBefore } = await subscriberAndPublisher();
    // Another node's event lands right after ours, before our reply comes back.
    engine.meanwhile = async (sessionId) => {
      const frame = transcriptPub('from another node');
      await engine.append(sessionId, [
        {
          eventId: frame.id as string,
          sessionId,
          ts: new Date().toISOString(),
          type: 'transcript.final',
          payload: frame.payload as Envelope['payload'],
          schemaVersion: 1,
        },
      ]);
    };
    const answer = await publish(pub, transcriptPub('ours'));
    assert.equal(answer.op, 'puback', JSON.stringify(answer));
    const ours = answer.seq as number;
    await waitSeq(sub, ours + 1);
    assert.deepEqual(seqs(sub), [ours, ours + 1]);
    assert.ok(engine.reads - readsBefore >= 1, 'the other node’s event came from a gap-fill read');
  });
});
