/**
 * "Bad input never hurts anyone else", fuzzed: fast-check sends a welcomed connection
 * arbitrary frames (near-valid acks and pubs, any JSON or MessagePack value, raw bytes,
 * the wrong frame type, oversize frames) on a real gateway, over both subprotocols.
 * Whatever it sends:
 *  - it is answered only with frames the protocol defines, and no `nack` or `error` says
 *    `internal` (a bad frame has a specific answer);
 *  - it is still answered afterwards (a ping gets its pong), or it was closed with a
 *    documented code;
 *  - a bystander on the same session keeps receiving every event, once, in order.
 * A crash would end the test process. FC_RUNS sets the run count (CI: 200 per subprotocol, about 1.5 s).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import type { TestClient } from '../helpers/ws-client.ts';
import { closeAll, hello, newSession, transcriptPub, type Session, type Sub } from '../protocol/support.ts';
import {
  anyJson,
  assertEveryEventOnce,
  bystanderOn,
  checkAnswers,
  count,
  mostly,
  othersUnharmed,
  pongOrClose,
  RUNS,
  seqArb,
  withStrayKey,
} from './fuzz-support.ts';

const MAX_FRAME_BYTES = 2048;
const packr = new Packr({ useRecords: false });

/**
 * What a fuzzed connection may be closed with: 4000 for a bad frame, 1009 for one above
 * MAX_FRAME_BYTES, 1000 after its own `bye` (docs/protocol.md). A text frame that is not
 * UTF-8 is also documented there: uWebSockets.js drops the connection without a close
 * frame, so the client sees 1006; that close is allowed only after such a frame.
 */
const CLOSES = new Set([1000, 1009, 4000]);
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Whether `input` is a text frame whose bytes are not UTF-8. */
function invalidText(input: Input): boolean {
  if (input.kind !== 'raw' || input.binary) return false;
  try {
    utf8.decode(input.bytes);
    return false;
  } catch {
    return true;
  }
}

type Input =
  | { kind: 'value'; value: unknown }
  | { kind: 'raw'; bytes: Uint8Array; binary: boolean }
  | { kind: 'other-type'; value: unknown }
  | { kind: 'oversize'; text: string };

const idArb = mostly(
  fc.stringMatching(/^[A-Za-z0-9._:-]{1,24}$/),
  fc.oneof(fc.string({ maxLength: 140 }), fc.constant(''), fc.constant('x'.repeat(129)), anyJson),
);
const typeArb = mostly(
  fc.constantFrom('transcript.partial', 'transcript.final', 'orchestration.action.requested'),
  fc.oneof(
    fc.constantFrom('call.started', 'billing.usage', 'transcript', 'safety.flagged'),
    fc.string({ maxLength: 20 }),
  ),
);
const transcriptPayload = fc.record(
  {
    segmentId: mostly(fc.string({ minLength: 1, maxLength: 12 }), anyJson),
    revision: mostly(fc.integer({ min: 0, max: 5 }), fc.oneof(fc.constant(-1), anyJson)),
    text: mostly(fc.string({ maxLength: 40 }), anyJson),
    speaker: mostly(fc.string({ minLength: 1, maxLength: 8 }), anyJson),
    startMs: mostly(fc.integer({ min: 0, max: 9000 }), anyJson),
    endMs: mostly(fc.integer({ min: 0, max: 9000 }), anyJson),
  },
  { requiredKeys: ['segmentId', 'revision', 'text'] },
);
const actionPayload = fc.record(
  {
    actionId: mostly(fc.string({ minLength: 1, maxLength: 12 }), anyJson),
    action: mostly(fc.stringMatching(/^[A-Za-z][A-Za-z0-9_.:-]{0,20}$/), anyJson),
    args: mostly(fc.dictionary(fc.string({ maxLength: 6 }), anyJson, { maxKeys: 3 }), anyJson),
    segmentId: fc.string({ maxLength: 12 }),
  },
  { requiredKeys: ['actionId', 'action'] },
);
const payloadArb = mostly(fc.oneof(transcriptPayload, actionPayload), anyJson);
const tsArb = mostly(
  fc.date({ min: new Date(0), max: new Date(4e12), noInvalidDate: true }).map((d) => d.toISOString()),
  fc.oneof(fc.string({ maxLength: 30 }), fc.integer(), fc.constant('2026-02-30T25:61:00.000Z')),
);

const ackFrame = fc.record({ op: fc.constant('ack'), seq: seqArb });
/** A pub whose payload usually fits its type, so some are stored (and their odd strings with them). */
const pubFrame = typeArb.chain((type) =>
  fc.record(
    {
      op: fc.constant('pub'),
      id: idArb,
      type: fc.constant(type),
      payload:
        type === 'orchestration.action.requested'
          ? mostly(actionPayload, payloadArb)
          : typeof type === 'string' && type.startsWith('transcript.')
            ? mostly(transcriptPayload, payloadArb)
            : payloadArb,
      ts: tsArb,
    },
    { requiredKeys: ['op', 'id', 'type', 'payload'] },
  ),
);
const pingFrame = fc.record(
  { op: fc.constant('ping'), n: mostly(fc.integer(), anyJson) },
  { requiredKeys: ['op'] },
);
const otherFrame = fc.record(
  {
    op: fc.oneof(fc.constantFrom('hello', 'bye', 'ACK', 'dance', ''), fc.string({ maxLength: 8 }), anyJson),
    seq: seqArb,
    sessionId: fc.string({ maxLength: 12 }),
    token: fc.string({ maxLength: 12 }),
  },
  { requiredKeys: ['op'] },
);
/** A frame shaped like the protocol's: any op's fields right or wrong, now and then a key too many. */
const nearFrame = withStrayKey(
  fc.oneof(
    { weight: 3, arbitrary: ackFrame },
    { weight: 4, arbitrary: pubFrame },
    { weight: 2, arbitrary: pingFrame },
    { weight: 1, arbitrary: otherFrame },
  ),
);

/** Most inputs are frames a connection survives (a nack, an error frame); the rest close it. */
const inputArb: fc.Arbitrary<Input> = fc.oneof(
  { weight: 12, arbitrary: nearFrame.map((value) => ({ kind: 'value' as const, value })) },
  { weight: 1, arbitrary: anyJson.map((value) => ({ kind: 'value' as const, value })) },
  {
    weight: 1,
    arbitrary: fc
      .record({ bytes: fc.uint8Array({ maxLength: 48 }), binary: fc.boolean() })
      .map((r) => ({ kind: 'raw' as const, ...r })),
  },
  { weight: 1, arbitrary: nearFrame.map((value) => ({ kind: 'other-type' as const, value })) },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: MAX_FRAME_BYTES - 64, max: MAX_FRAME_BYTES * 2 })
      .map((n) => ({ kind: 'oversize' as const, text: 'x'.repeat(n) })),
  },
);

/** Sends one fuzzed input the way its kind says. */
function sendInput(victim: TestClient, input: Input): void {
  switch (input.kind) {
    case 'value':
      if (victim.sub === 'json') victim.sendRaw(JSON.stringify(input.value) ?? 'null', false);
      else victim.sendRaw(packr.pack(input.value), true);
      return;
    case 'other-type':
      // The other subprotocol's encoding, in the other frame type.
      if (victim.sub === 'json') victim.sendRaw(packr.pack(input.value), true);
      else victim.sendRaw(JSON.stringify(input.value), false);
      return;
    case 'raw':
      victim.sendRaw(Buffer.from(input.bytes), input.binary);
      return;
    case 'oversize':
      victim.send(transcriptPub(input.text));
      return;
  }
}

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway({ MAX_FRAME_BYTES: String(MAX_FRAME_BYTES) });
});
after(async () => {
  await closeAll();
  await gw.stop();
});

describe('fuzzed frames after welcome', () => {
  for (const sub of ['json', 'msgpack'] as Sub[]) {
    it(`[${sub}] get defined answers or a documented close, and hurt no one else`, async (t) => {
      const s: Session = await newSession(gw);
      const { pub, bystander } = await bystanderOn(gw, s, sub);
      let marks = 0;
      const closes: Record<string, number> = {};
      const answers: Record<string, number> = {};

      await fc.assert(
        fc.asyncProperty(fc.array(inputArb, { minLength: 1, maxLength: 6 }), async (inputs) => {
          const { client: victim } = await hello(gw, sub, {
            sessionId: s.sessionId,
            token: s.agentToken,
            after: 'latest',
          });
          let sentInvalidText = false;
          for (const input of inputs) {
            if (victim.closeInfo) break;
            sendInput(victim, input);
            sentInvalidText ||= invalidText(input);
          }
          const n = `mark-${++marks}`;
          const pong = await pongOrClose(victim, n);
          if (!pong) {
            const code = victim.closeInfo!.code;
            count(closes, code);
            assert.ok(
              CLOSES.has(code) || (code === 1006 && sentInvalidText),
              `closed with ${code} (${victim.closeInfo!.reason})`,
            );
          }
          await othersUnharmed(pub, bystander, n);
          checkAnswers(victim, answers);
          victim.ws.terminate();
        }),
        { numRuns: RUNS },
      );

      assertEveryEventOnce(bystander);
      t.diagnostic(`closes ${JSON.stringify(closes)}; answers ${JSON.stringify(answers)}`);
      // The runs reached both ends: connections closed for a bad frame, and connections
      // that took their bad frames' answers and went on (about 70 % and 35 % of runs).
      assert.ok((closes[4000] ?? 0) > 0, `no 4000 closes in ${RUNS} runs: ${JSON.stringify(closes)}`);
      assert.ok((answers.pong ?? 0) > 0, `no connection survived its frames: ${JSON.stringify(answers)}`);
    });
  }
});
