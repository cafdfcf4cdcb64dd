/**
 * Fuzzed LiveKit webhooks, signed for real (fast-check, real gateway): every event LiveKit
 * sends and some it does not, with room, participant, track and egress fields right,
 * wrong, missing or of the wrong type, repeated ids, old and future `createdAt`, and now
 * and then a signature over other bytes or none. The session bound to the room is not
 * active, so nothing may end it. Whatever arrives:
 *  - the answer is 200, or an error of the registry in the documented shape, never
 *    `internal`;
 *  - every event the webhooks appended is a valid schema v1 event (what the gateway
 *    translates is held to the same contract as what clients publish);
 *  - a subscriber of the session keeps receiving every event, once, in order.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { ErrorCodes } from '../../src/errors/codes.ts';
import { normalizeEnvelope, validateEventBody } from '../../src/protocol/envelope.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { LK_ENV, postWebhook, signWebhook } from '../helpers/livekit.ts';
import { api, closeAll, history, newSession } from '../protocol/support.ts';
import {
  anyJson,
  assertEveryEventOnce,
  bystanderOn,
  count,
  mostly,
  othersUnharmed,
  RUNS,
  withStrayKey,
} from './fuzz-support.ts';

const EVENTS = [
  'room_started',
  'room_finished',
  'participant_joined',
  'participant_left',
  'participant_connection_aborted',
  'track_published',
  'track_unpublished',
  'egress_started',
  'egress_updated',
  'egress_ended',
  'ingress_started',
];

/** Inside an object: each of its many fields only now and then odd, so some objects are whole. */
const usually = <T>(usual: fc.Arbitrary<T>, odd: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> =>
  fc.oneof({ weight: 20, arbitrary: usual }, { weight: 1, arbitrary: odd });
/** A string field: mostly short, often past the schema's limits (ids 128, texts 256, errors 1,024). */
const text = (max: number): fc.Arbitrary<unknown> =>
  fc.oneof(
    { weight: 10, arbitrary: fc.string({ minLength: 1, maxLength: max }) },
    { weight: 2, arbitrary: fc.constantFrom('i'.repeat(129), 't'.repeat(257), 'e'.repeat(1025)) },
    { weight: 1, arbitrary: fc.oneof(fc.constantFrom('', '\u0000'), anyJson) },
  );
const int64 = usually(
  fc.bigInt({ min: 0n, max: 2n ** 62n }).map(String),
  fc.oneof(fc.constantFrom('-1', '0', 'x', '18446744073709551616', ''), anyJson),
);
/** Names swapped for the real room once the gateway runs. */
const roomArb = usually(
  fc.record(
    {
      sid: usually(fc.constantFrom('RM_fuzz', 'RM_other'), anyJson),
      name: usually(fc.constant('@room'), text(20)),
    },
    { requiredKeys: [] },
  ),
  anyJson,
);
const participantArb = fc.record(
  {
    sid: usually(fc.constantFrom('PA_1', 'PA_2', 'PA_3'), text(10)),
    identity: usually(fc.constantFrom('user:a', 'agent:b'), text(10)),
    name: text(20),
    kind: usually(fc.constantFrom('STANDARD', 'AGENT', 'SIP', 'EGRESS'), anyJson),
    state: usually(fc.constantFrom('JOINING', 'JOINED', 'ACTIVE', 'DISCONNECTED'), anyJson),
    disconnectReason: usually(fc.constantFrom('CLIENT_INITIATED', 'ROOM_DELETED', 'UNKNOWN_REASON'), anyJson),
    joinedAt: int64,
  },
  { requiredKeys: [] },
);
const trackArb = fc.record(
  {
    sid: usually(fc.constantFrom('TR_1', 'TR_2'), text(10)),
    type: usually(fc.constantFrom('AUDIO', 'VIDEO', 'DATA'), anyJson),
    source: usually(fc.constantFrom('MICROPHONE', 'CAMERA', 'SCREEN_SHARE', 'UNKNOWN'), anyJson),
    name: text(20),
  },
  { requiredKeys: [] },
);
const egressArb = fc.record(
  {
    egressId: usually(fc.constantFrom('EG_1', 'EG_2'), text(10)),
    roomId: usually(fc.constant('RM_fuzz'), text(10)),
    roomName: usually(fc.constant('@room'), text(10)),
    status: usually(
      fc.constantFrom(
        'EGRESS_STARTING',
        'EGRESS_ACTIVE',
        'EGRESS_ENDING',
        'EGRESS_COMPLETE',
        'EGRESS_FAILED',
      ),
      anyJson,
    ),
    startedAt: int64,
    endedAt: int64,
    error: text(40),
  },
  { requiredKeys: [] },
);
const webhookArb = withStrayKey(
  fc.record(
    {
      event: mostly(
        fc.constantFrom(...EVENTS),
        fc.oneof(fc.constant(''), fc.string({ maxLength: 12 }), anyJson),
      ),
      id: mostly(fc.oneof(fc.constantFrom('EV_dup_1', 'EV_dup_2'), fc.uuid()), anyJson),
      createdAt: mostly(
        fc.constantFrom('@now', '@now', '@now', '@old', '@future'),
        fc.oneof(int64, fc.integer().map(String)),
      ),
      room: roomArb,
      participant: usually(participantArb, anyJson),
      track: usually(trackArb, anyJson),
      egressInfo: usually(egressArb, anyJson),
    },
    { requiredKeys: ['event', 'id', 'createdAt'] },
  ),
);
const signing = fc.constantFrom('exact', 'exact', 'exact', 'exact', 'exact', 'exact', 'other-bytes', 'none');

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway({ ...LK_ENV });
});
after(async () => {
  await closeAll();
  await gw.stop();
});

describe('fuzzed LiveKit webhooks', () => {
  it('get 200 or a registered error, append only valid events, and lose no one an event', async (t) => {
    const session = await newSession(gw);
    const token = await api(
      gw,
      'POST',
      `/v1/call/sessions/${session.sessionId}/livekit-token`,
      session.ownerToken,
    );
    assert.equal(token.status, 200, JSON.stringify(token.body));
    const room = token.body.room as string;
    const { pub, bystander: subscriber } = await bystanderOn(gw, session);
    let marks = 0;
    const outcomes: Record<string, number> = {};

    await fc.assert(
      fc.asyncProperty(webhookArb, signing, async (webhook, how) => {
        const nowS = Math.floor(Date.now() / 1000);
        const createdAt = { '@now': nowS, '@old': nowS - 3600, '@future': nowS + 120 } as Record<
          string,
          number
        >;
        const body = JSON.stringify(webhook)
          .replaceAll('"@room"', JSON.stringify(room))
          .replace(/"@(now|old|future)"/, (name) => `"${String(createdAt[name.slice(1, -1)])}"`);
        const authorization =
          how === 'none' ? undefined : await signWebhook(how === 'exact' ? body : `${body} `);
        const res = await postWebhook(gw.url, body, authorization);
        const key =
          res.status === 200
            ? `200 ${String(res.body?.status)}${res.body?.reason ? ` (${String(res.body.reason).replace(/^event .* is not translated$/s, 'event not translated')})` : ''}`
            : `${res.status} ${String(res.body?.error?.code)}`;
        count(outcomes, key);
        if (res.status !== 200) {
          const code = String(res.body?.error?.code);
          assert.ok(code in ErrorCodes, `${res.status}: ${JSON.stringify(res.body)}`);
          assert.notEqual(code, 'internal', `internal for ${body}`);
          assert.equal(
            res.status,
            ErrorCodes[code as keyof typeof ErrorCodes].status,
            `${code} answered ${res.status}`,
          );
          if (how !== 'exact') assert.equal(code, 'webhook_signature_invalid');
        } else {
          assert.equal(how, 'exact', 'a webhook not signed over its bytes was taken');
          // The gateway checks its own translations and drops one that is not a valid
          // event: the translator must never make one (clipped ids and texts, known enums).
          assert.notEqual(res.body?.reason, 'invalid_translation', `an invalid translation of ${body}`);
        }
        await othersUnharmed(pub, subscriber, `mark-${++marks}`);
      }),
      // Webhooks are cheap and their shapes many: five times the other fuzz properties' runs.
      { numRuns: RUNS * 5 },
    );

    assertEveryEventOnce(subscriber);
    const stored = await history(gw, session);
    assert.equal(stored.at(-1)?.seq, stored.length, 'the history is contiguous');
    for (const { seq, event } of stored) {
      const normalized = normalizeEnvelope(event);
      const valid = normalized.ok ? validateEventBody(normalized.value) : normalized;
      assert.ok(
        valid.ok,
        `seq ${seq} is not a valid event: ${valid.ok ? '' : valid.message} ${JSON.stringify(event)}`,
      );
    }
    t.diagnostic(`outcomes ${JSON.stringify(outcomes)}; ${stored.length} events stored`);
    assert.ok((outcomes['200 processed'] ?? 0) > 0, `no webhook was processed: ${JSON.stringify(outcomes)}`);
  });
});
