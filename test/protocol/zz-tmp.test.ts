import { it } from 'node:test';
import { startTestGateway } from '../helpers/gateway.ts';
import { autoAck, closeAll, hello, newSession, publish, publisher, seqs, sleep, transcriptPub, waitSeq } from './support.ts';
for (const bp of ['4096', '1048576']) it('debug ' + bp, async () => {
  const gw = await startTestGateway({ SOCKET_BACKPRESSURE_BYTES: bp, ACTOR_CACHE_EVENTS: '4', MAX_IN_FLIGHT: '100000' });
  const s = await newSession(gw);
  const pub = await publisher(gw, s, 'json');
  (pub.ws as any)._socket.pause();
  for (let i = 0; i < 300; i += 20) {
    await Promise.all(Array.from({ length: 20 }, () => publish(pub, transcriptPub('\u20ac'.repeat(16000)))));
  }
  const { client } = await hello(gw, 'json', { sessionId: s.sessionId, token: s.ownerToken, after: 0 });
  await sleep(3000);
  const got = seqs(client);
  const gaps = [];
  for (let i = 1; i < got.length; i++) if (got[i] !== got[i - 1]! + 1) gaps.push(`${got[i - 1]}->${got[i]}`);
  console.log(bp, 'got', got.length, 'last', got.at(-1), 'gaps', gaps.join(' '), client.closeInfo);
  await closeAll();
  await gw.stop();
});
