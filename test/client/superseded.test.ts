/**
 * A subscription superseded by another client sharing its storage (two tabs with one
 * localStorage key: PROTOCOL.md §3, close 4009) must leave the shared checkpoint to the
 * client that took over: neither the event its listener was still handling when the
 * 4009 came, nor a later `close({ bye: true })`, may overwrite or delete what the
 * survivor stored (a reload of the survivor would then repeat or skip events, or start
 * a new subscriber from `after`).
 */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { ConnectionRefusedError, memoryStorage, type CheckpointStorage } from '../../client/index.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { closeClients, newSession, postEvents, record, testClient, until, waitState } from './support.ts';

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway();
});
after(async () => {
  await closeClients();
  await gw.stop();
});

async function stored(storage: CheckpointStorage, key: string) {
  return (await storage.get(key)) ?? undefined;
}

it('4009 while the listener runs: the superseded client does not overwrite the survivor’s checkpoint', async () => {
  const s = await newSession(gw);
  const storage = memoryStorage();
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let inListener = false;
  const a = testClient(gw, { token: s.ownerToken, storage, acks: { every: 1, intervalMs: 10 } }).subscribe(
    s.sessionId,
    { after: 0 },
  );
  const ra = record(a);
  a.on('event', async ({ seq }) => {
    if (seq !== 2) return;
    inListener = true;
    await gate; // the application is busy with seq 2 when the other client takes over
  });
  await until(
    async () => (await stored(storage, s.sessionId))?.resumeToken !== undefined,
    5000,
    'A’s checkpoint',
  );
  await until(async () => (await stored(storage, s.sessionId))?.lastSeq === 1, 5000, 'A processed seq 1');
  await postEvents(gw, s, 1);
  await until(() => inListener, 5000, 'A handling seq 2');

  // B resumes the same subscriber from the stored checkpoint (seq 1) and processes 2 and 3.
  const b = testClient(gw, { token: s.ownerToken, storage }).subscribe(s.sessionId, { after: 0 });
  const rb = record(b);
  await waitState(b, 'live');
  await postEvents(gw, s, 1);
  await until(() => rb.seqs.at(-1) === 3, 5000, 'B processed seq 3');
  await until(async () => (await stored(storage, s.sessionId))?.lastSeq === 3, 5000, 'B’s checkpoint at 3');
  await waitState(a, 'closed');
  assert.ok(ra.errors.some((e) => e instanceof ConnectionRefusedError && e.closeCode === 4009));

  // A's application finishes seq 2 only now; its subscription is over.
  release();
  await a.close(); // resolves once A's last event and storage writes are done
  assert.deepEqual(ra.seqs, [1, 2]);
  const cp = await stored(storage, s.sessionId);
  assert.equal(cp?.lastSeq, 3, 'the checkpoint is still the survivor’s');

  // B carries on, and a new client from the same storage resumes after 3.
  assert.equal(b.state, 'live');
  await b.close();
  const c = testClient(gw, { token: s.ownerToken, storage }).subscribe(s.sessionId, { after: 0 });
  const rc = record(c);
  await waitState(c, 'live');
  await postEvents(gw, s, 1);
  await until(() => rc.seqs.length === 1, 5000, 'the next client’s first event');
  assert.deepEqual(rc.seqs, [4]);
  assert.equal(c.stats.resumes, 1);
});

it('close({ bye: true }) after a 4009 does not delete the checkpoint the survivor uses', async () => {
  const s = await newSession(gw);
  const storage = memoryStorage();
  const a = testClient(gw, { token: s.ownerToken, storage }).subscribe(s.sessionId, { after: 0 });
  await until(async () => (await stored(storage, s.sessionId))?.lastSeq === 1, 5000, 'A’s checkpoint');
  const b = testClient(gw, { token: s.ownerToken, storage }).subscribe(s.sessionId, { after: 0 });
  await waitState(b, 'live');
  await waitState(a, 'closed');
  await a.close({ bye: true }); // e.g. the superseded tab's `pagehide` handler
  const cp = await stored(storage, s.sessionId);
  assert.ok(cp?.resumeToken, 'the survivor’s checkpoint is still there');
  assert.equal(b.state, 'live');
  const rb = record(b);
  await postEvents(gw, s, 1);
  await until(() => rb.seqs.length === 1, 5000, 'the survivor keeps its subscriber');
  assert.deepEqual(rb.seqs, [2]);
});
