import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestGateway } from '../helpers/gateway.ts';
import { subscribe, TestClient } from '../helpers/ws-client.ts';

function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`));
  assert.ok(line, `metric ${name} missing`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('/metrics', () => {
  it('counts appends, deliveries, connections, resumes and engine latency', async () => {
    const gw = await startTestGateway();
    try {
      const owner = await gw.token('alice');
      const agent = await gw.token('bot', 'agent');
      const sessionId = await gw.createSession(owner);
      const subs = await Promise.all(
        [1, 2, 3].map(() => subscribe(gw.wsUrl, { sessionId, token: owner, after: 0 }, 'json')),
      );
      const pub = (await subscribe(gw.wsUrl, { sessionId, token: agent }, 'msgpack')).client;
      for (let i = 0; i < 4; i++) {
        pub.send({
          op: 'pub',
          id: `m${i}`,
          type: 'transcript.final',
          payload: { segmentId: 's', revision: i, text: 'x' },
        });
        await pub.op('puback');
      }
      pub.send({
        op: 'pub',
        id: 'm0',
        type: 'transcript.final',
        payload: { segmentId: 's', revision: 0, text: 'x' },
      });
      await pub.op('puback');
      for (const { client } of subs) await client.events(5);

      const resumer = await TestClient.connect(gw.wsUrl);
      resumer.send({ op: 'hello', sessionId, resume: { token: subs[0]!.welcome.resumeToken } });
      await resumer.op('welcome');

      const text = (await gw.http('GET', '/metrics')).body as string;
      assert.equal(metric(text, 'lifeos_events_appended_total'), 5); // call.created + 4
      assert.equal(metric(text, 'lifeos_events_duplicate_total'), 1);
      assert.ok(metric(text, 'lifeos_events_delivered_total') >= 15, 'three subscribers × five events');
      // two subscribers and the resumer; the superseded one is gone
      assert.match(text, /lifeos_ws_connections\{codec="json",node="[^"]+"\} 3/);
      assert.match(text, /lifeos_ws_connections\{codec="msgpack",node="[^"]+"\} 1/);
      assert.match(text, /lifeos_resumes_total\{outcome="ok",node="[^"]+"\} 1/);
      assert.match(text, /lifeos_ws_closes_total\{code="4009",node="[^"]+"\} 1/);
      assert.match(text, /lifeos_engine_call_seconds_count\{node="[^"]+",op="append"\} \d+/);
      assert.equal(metric(text, 'lifeos_session_actors'), 1);
      // five events cached, each counted at 512 bytes at least
      assert.ok(metric(text, 'lifeos_event_cache_bytes') >= 5 * 512);
      for (const { client } of subs) client.close();
      pub.close();
      resumer.close();
    } finally {
      await gw.stop();
    }
  });
});
