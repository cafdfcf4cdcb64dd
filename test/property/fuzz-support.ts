/**
 * What the fuzz properties share (frame-fuzz, hello-fuzz): value arbitraries, the check
 * of what a fuzzed connection was sent, and the check that a bystander on the session
 * noticed nothing.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ErrorCodes } from '../../src/errors/codes.ts';
import type { TestGateway } from '../helpers/gateway.ts';
import type { TestClient } from '../helpers/ws-client.ts';
import {
  autoAck,
  hello,
  publish,
  publisher,
  transcriptPub,
  waitFor,
  waitSeq,
  type Frame,
  type Session,
  type Sub,
} from '../protocol/support.ts';

/** FC_RUNS sets the run count of each fuzz property. */
export const RUNS = Number(process.env.FC_RUNS ?? 200);

export const anyJson = fc.jsonValue({ maxDepth: 3 });

/** Mostly what a client would send, sometimes anything. */
export const mostly = <T>(usual: fc.Arbitrary<T>, odd: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> =>
  fc.oneof({ weight: 6, arbitrary: usual }, { weight: 1, arbitrary: odd });

/** A seq where the protocol wants one: mostly a small one, sometimes no seq at all. */
export const seqArb = mostly(
  fc.integer({ min: 0, max: 40 }),
  fc.oneof(
    fc.integer({ min: -3, max: -1 }),
    fc.double(),
    fc.constantFrom(Number.MAX_SAFE_INTEGER, 2 ** 53 + 2, 0.5, -0),
    fc.string({ maxLength: 4 }),
    anyJson,
  ),
);

/** Now and then one key too many: `{ [key]: value, ...frame }`. */
export function withStrayKey<T extends object>(
  frames: fc.Arbitrary<T>,
): fc.Arbitrary<Record<string, unknown>> {
  return fc
    .tuple(
      frames,
      fc.oneof(
        { weight: 7, arbitrary: fc.constant(null) },
        { weight: 1, arbitrary: fc.tuple(fc.string({ maxLength: 10 }), anyJson) },
      ),
    )
    .map(([frame, extra]): Record<string, unknown> =>
      Object.assign(extra ? { [extra[0]]: extra[1] } : {}, frame),
    );
}

/** Counts one more `key` in `tally`: what a property's runs reached, for its diagnostic. */
export function count(tally: Record<string, number>, key: string | number): void {
  tally[key] = (tally[key] ?? 0) + 1;
}

/** What a gateway may send a client (PROTOCOL.md §3, §4). */
const SERVER_OPS = new Set(['welcome', 'ev', 'replayed', 'puback', 'nack', 'pong', 'error', 'eos']);

/**
 * Checks every frame `client` was sent: an op the protocol defines, and for `nack` and
 * `error` a registered code that is not `internal` (a bad frame has a specific answer).
 * Tallies them into `answers` (by op, or op:code).
 */
export function checkAnswers(client: TestClient, answers: Record<string, number>): void {
  for (const frame of client.frames) {
    const failed = frame.op === 'nack' || frame.op === 'error';
    const key = failed ? `${String(frame.op)}:${String(frame.code)}` : String(frame.op);
    count(answers, key);
    assert.ok(SERVER_OPS.has(frame.op), `the gateway sent op ${JSON.stringify(frame.op)}`);
    if (failed) {
      const code = String(frame.code);
      assert.ok(code in ErrorCodes, `unknown code ${code}`);
      assert.notEqual(code, 'internal', `an internal ${String(frame.op)}: ${String(frame.message)}`);
    }
  }
}

/** Resolves with the pong of `n`, or undefined once the socket closed. */
export async function pongOrClose(client: TestClient, n: string): Promise<Frame | undefined> {
  if (client.closeInfo) return undefined;
  client.send({ op: 'ping', n });
  try {
    return await waitFor(client, (f) => f.op === 'pong' && f.n === n, 5000);
  } catch (err) {
    if (client.closeInfo) return undefined;
    throw err;
  }
}

/**
 * Who a fuzz property watches on `session`: an agent connection to publish with, and the
 * owner's subscriber from seq 1, which acks everything (so flow control never pauses it).
 */
export async function bystanderOn(
  gw: TestGateway,
  session: Session,
  sub: Sub = 'json',
): Promise<{ pub: TestClient; bystander: TestClient }> {
  const pub = await publisher(gw, session, sub);
  const { client: bystander } = await hello(gw, sub, {
    sessionId: session.sessionId,
    token: session.ownerToken,
    after: 0,
  });
  autoAck(bystander);
  return { pub, bystander };
}

/**
 * Everyone else is fine: a publish on `pub` reaches `bystander`. Whatever a fuzzed
 * connection published was queued before it, so its answers are out by then too.
 */
export async function othersUnharmed(pub: TestClient, bystander: TestClient, text: string): Promise<void> {
  const answer = await publish(pub, transcriptPub(text));
  assert.equal(answer.op, 'puback', JSON.stringify(answer));
  await waitSeq(bystander, answer.seq as number);
}

/** The bystander held every event of the session once, in order, from seq 1. */
export function assertEveryEventOnce(bystander: TestClient): void {
  const seqs = bystander.frames.filter((f) => f.op === 'ev').map((f) => f.seq as number);
  assert.deepEqual(
    seqs,
    Array.from({ length: seqs.length }, (_, i) => i + 1),
    'the bystander got every event once, in order',
  );
}
