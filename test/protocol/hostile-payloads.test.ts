/**
 * PROTOCOL.md §1 (a payload is validated, an invalid one refused), §3 (one frame kind per
 * subprotocol) and the rule that one client's input never hurts another's: payloads that
 * are not plain JSON data, and frames of the wrong kind. Each of these once reached the
 * engine or the event loop: a BigInt or a cycle (MessagePack extensions) was stored and
 * then failed every read of its session over HTTP, which ended the process; a payload
 * nested 20,000 deep, or a MessagePack `bin` viewing the socket's buffer, took a seq and
 * failed to be copied, and the hole it left spun the catch-up loop until the gateway
 * stopped answering anyone.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { Packr } from 'msgpackr';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import {
  api,
  closeAll,
  connect,
  expectClose,
  hello,
  history,
  newSession,
  publish,
  transcriptPub,
  waitSeq,
} from './support.ts';

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway();
});
afterEach(closeAll);
after(() => gw.stop());

const bigints = new Packr({ useRecords: false, useBigIntExtension: true });
const clones = new Packr({ useRecords: false, structuredClone: true });
const plain = new Packr({ useRecords: false });

function action(id: string, args: unknown): Record<string, unknown> {
  return {
    op: 'pub',
    id,
    type: 'orchestration.action.requested',
    payload: { actionId: 'a1', action: 'do.it', args },
  };
}

const cycle = (): unknown[] => {
  const a: unknown[] = [];
  a.push(a);
  return a;
};

const msgpackCases: Array<[string, (id: string) => Buffer]> = [
  ['a BigInt (extension 0x42)', (id) => bigints.pack(action(id, { x: 2n ** 70n }))],
  ['a cycle of references', (id) => clones.pack(action(id, { x: cycle() }))],
  ['a Date (timestamp extension)', (id) => plain.pack(action(id, { when: new Date(0) }))],
  ['a bin value', (id) => plain.pack(action(id, { b: Buffer.from('ABCDEFGH') }))],
  ['a NaN', (id) => plain.pack(action(id, { x: Number.NaN }))],
];

describe('payloads that are not plain JSON data: nack invalid_event, nothing stored, everyone else served', () => {
  for (const [name, frame] of msgpackCases) {
    it(`MessagePack: ${name}`, async () => {
      await refusedAlone((id, client) => client.sendRaw(frame(id), true), 'msgpack');
    });
  }

  it('JSON: a payload nested 20,000 deep', async () => {
    const deep = `${'['.repeat(20_000)}${']'.repeat(20_000)}`;
    await refusedAlone(
      (id, client) =>
        client.sendRaw(
          `{"op":"pub","id":"${id}","type":"orchestration.action.requested","payload":{"actionId":"a1","action":"do.it","args":{"x":${deep}}}}`,
        ),
      'json',
    );
  });

  it('JSON: a lone surrogate in a string or a key', async () => {
    for (const args of ['{"x":"a\\ud800"}', '{"\\udc00":1}']) {
      await refusedAlone(
        (id, client) =>
          client.sendRaw(
            `{"op":"pub","id":"${id}","type":"orchestration.action.requested","payload":{"actionId":"a1","action":"do.it","args":${args}}}`,
          ),
        'json',
      );
    }
  });

  it('JSON: 32 levels are fine, 33 are not', async () => {
    const s = await newSession(gw);
    const { client } = await hello(gw, 'json', { sessionId: s.sessionId, token: s.ownerToken });
    // args is the payload's 1st level, so x holds 30 more
    const nested = (levels: number): unknown => (levels === 0 ? 1 : [nested(levels - 1)]);
    const ok = await publish(client, action('deep-ok', { x: nested(30) }));
    assert.equal(ok.op, 'puback', JSON.stringify(ok));
    const refused = await publish(client, action('deep-no', { x: nested(31) }));
    assert.deepEqual([refused.op, refused.code], ['nack', 'invalid_event']);
  });
});

/** Sends the hostile pub, then checks: refused, nothing stored, a bystander and HTTP served. */
async function refusedAlone(
  send: (id: string, client: Awaited<ReturnType<typeof hello>>['client']) => void,
  codec: 'json' | 'msgpack',
): Promise<void> {
  const s = await newSession(gw);
  const { client: bystander } = await hello(gw, 'json', {
    sessionId: s.sessionId,
    token: s.ownerToken,
    after: 0,
  });
  await waitSeq(bystander, 1);
  const { client: attacker } = await hello(gw, codec, { sessionId: s.sessionId, token: s.ownerToken });
  send('hostile', attacker);
  const answer = await attacker.next((f) => f.id === 'hostile');
  assert.deepEqual([answer.op, answer.code, answer.retryable], ['nack', 'invalid_event', false]);

  const { client: agent } = await hello(gw, 'json', { sessionId: s.sessionId, token: s.agentToken });
  const honest = await publish(agent, transcriptPub('honest'));
  assert.deepEqual([honest.op, honest.seq], ['puback', 2], 'no seq was taken by the refused pub');
  await waitSeq(bystander, 2);
  assert.deepEqual(
    (await history(gw, s)).map((e) => e.event.type),
    ['call.created', 'transcript.final'],
  );
  assert.equal((await api(gw, 'GET', '/healthz')).status, 200);
}

describe('a lone surrogate where strings name records: refused, never internal', () => {
  it('in a JSON hello: 4000 (MessagePack carries strings as UTF-8, where it cannot occur)', async () => {
    const s = await newSession(gw);
    const json = await connect(gw, 'json');
    json.sendRaw(`{"op":"hello","sessionId":"cs_\\ud800","token":"${s.ownerToken}"}`);
    await expectClose(json, 4000);
  });

  it('in an HTTP body (session metadata, a transition reason): 400 bad_request', async () => {
    const s = await newSession(gw);
    const created = await api(gw, 'POST', '/v1/call/sessions', s.ownerToken, '{"metadata":{"k":"v\\ud800"}}');
    assert.deepEqual([created.status, created.body.error?.code], [400, 'bad_request']);
    const moved = await api(
      gw,
      'POST',
      `/v1/call/sessions/${s.sessionId}/transitions`,
      s.ownerToken,
      '{"to":"failed","reason":"x\\udc00"}',
    );
    assert.deepEqual([moved.status, moved.body.error?.code], [400, 'bad_request']);
    // nested 30,000 deep (JSON.parse takes it): the check of its strings overflowed the stack
    const deep = `{"metadata":${'['.repeat(30_000)}${']'.repeat(30_000)}}`;
    const nested = await api(gw, 'POST', '/v1/call/sessions', s.ownerToken, deep);
    assert.deepEqual([nested.status, nested.body.error?.code], [400, 'bad_request']);
    // and the session still moves
    const failed = await api(gw, 'POST', `/v1/call/sessions/${s.sessionId}/transitions`, s.ownerToken, {
      to: 'failed',
      reason: 'x',
    });
    assert.equal(failed.status, 200, JSON.stringify(failed.body));
  });
});

describe('frames of the wrong kind for the subprotocol: 4000', () => {
  it('lifeos.v1.json: a binary frame', async () => {
    const s = await newSession(gw);
    const { client } = await hello(gw, 'json', { sessionId: s.sessionId, token: s.ownerToken });
    client.sendRaw(Buffer.from(JSON.stringify({ op: 'ping' })), true);
    await expectClose(client, 4000);
  });

  it('lifeos.v1.msgpack: a text frame', async () => {
    const s = await newSession(gw);
    const { client } = await hello(gw, 'msgpack', { sessionId: s.sessionId, token: s.ownerToken });
    client.sendRaw(JSON.stringify({ op: 'ping' }));
    await expectClose(client, 4000);
  });
});
