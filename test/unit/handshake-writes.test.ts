/**
 * The handshake's server writes (issue 6, handshakes per server CPU-second): `welcome`
 * and what the first pump sends after it (`replayed`, and the events of a catch-up from
 * the cache) leave in one corked write, i.e. one syscall, on fresh and resumed hellos.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { makeEvent } from '../engine/contract.ts';
import { realtimeHarness as setup, SESSION, TOKEN, turnsUntil } from '../helpers/realtime-harness.ts';

describe('handshake writes', () => {
  it('a fresh hello gets welcome and replayed in one write', async () => {
    const { hello } = await setup();
    const { sink } = await hello({ op: 'hello', sessionId: SESSION, token: TOKEN });
    assert.deepEqual(sink.writes, [['welcome', 'replayed']]);
  });

  it('a hello from seq 0 gets welcome, the cached events and replayed in one write', async () => {
    const { engine, hello } = await setup();
    // an actor with these events in its cache: a first subscriber saw them arrive
    const first = await hello({ op: 'hello', sessionId: SESSION, token: TOKEN });
    await engine.append(SESSION, [makeEvent(SESSION, 'e1'), makeEvent(SESSION, 'e2')]);
    await turnsUntil(() => first.sink.writes.flat().filter((op) => op === 'ev').length >= 2);
    const { sink } = await hello({ op: 'hello', sessionId: SESSION, token: TOKEN, after: 0 });
    assert.deepEqual(sink.writes, [['welcome', 'ev', 'ev', 'replayed']]);
  });

  it('a resume gets welcome and replayed in one write', async () => {
    const { hello } = await setup();
    const first = await hello({ op: 'hello', sessionId: SESSION, token: TOKEN });
    first.conn.close(4100, 'test'); // the socket goes away (the sink reports the close)
    const welcome = first.sink.writes[0]!;
    assert.equal(welcome[0], 'welcome');
    const { sink } = await hello({
      op: 'hello',
      sessionId: SESSION,
      resume: { token: first.sink.frames[0]!['resumeToken'], lastSeq: 0 },
    });
    assert.deepEqual(sink.writes, [['welcome', 'replayed']]);
  });
});
