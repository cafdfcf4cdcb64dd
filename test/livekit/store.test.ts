/**
 * The LiveKit bridge's store contract (src/livekit/store.ts), one suite run against both
 * implementations: memory (ManualClock) and Redis (a private redis-server, fresh key
 * prefix per test).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { MemoryLiveKitStore } from '../../src/engine/memory/livekit-store.ts';
import { RedisLiveKitStore } from '../../src/engine/redis/livekit-store.ts';
import type { LiveKitStore, ParticipantChange } from '../../src/livekit/store.ts';
import { ManualClock } from '../../src/util/clock.ts';

interface Harness {
  store(): Promise<LiveKitStore>;
  /** Lets `ms` pass for the store's expiries. */
  pass(ms: number): Promise<void>;
}

const change = (to: 'joined' | 'left', eventId: string, sid = 'PA_1'): ParticipantChange => ({
  participantSid: sid,
  identity: 'user:a|b', // a `|` in an identity must survive the redis encoding
  to,
  eventId,
  at: 1_000,
});

function contract(name: string, harness: () => Harness): void {
  describe(`LiveKit store contract: ${name}`, () => {
    it('binds one room per session, whatever the candidates, also concurrently; the index finds it', async () => {
      const store = await harness().store();
      const bindings = await Promise.all(
        Array.from({ length: 50 }, (_, i) => store.bindRoom('cs_1', `room-${i}`)),
      );
      const rooms = new Set(bindings.map((b) => b.room));
      assert.equal(rooms.size, 1);
      const [room] = [...rooms];
      assert.equal((await store.bindRoom('cs_1', 'another')).room, room);
      assert.equal(await store.sessionOfRoom(room!), 'cs_1');
      assert.equal(await store.sessionOfRoom('room-never'), undefined);
      assert.deepEqual(await store.getBinding('cs_1'), { sessionId: 'cs_1', room, roomCreated: false });
      assert.equal(await store.getBinding('cs_2'), undefined);
      await store.close();
    });

    it('one createRoom claim until released or created; room sid noted', async () => {
      const store = await harness().store();
      assert.equal(await store.claimRoomCreation('cs_1', 10_000), false, 'no binding, no claim');
      await store.bindRoom('cs_1', 'r1');
      const claims = await Promise.all(
        Array.from({ length: 20 }, () => store.claimRoomCreation('cs_1', 10_000)),
      );
      assert.equal(claims.filter(Boolean).length, 1);
      await store.releaseRoomCreation('cs_1');
      assert.equal(await store.claimRoomCreation('cs_1', 10_000), true);
      await store.markRoomCreated('cs_1');
      await store.noteRoomSid('cs_1', 'RM_1', 1_000);
      assert.equal(await store.claimRoomCreation('cs_1', 10_000), false, 'created: never again');
      assert.deepEqual(await store.getBinding('cs_1'), {
        sessionId: 'cs_1',
        room: 'r1',
        roomCreated: true,
        roomSid: 'RM_1',
      });
      await store.close();
    });

    it('the room sid is the newest instance: a late webhook of an older one does not take it back', async () => {
      const store = await harness().store();
      await store.noteRoomSid('cs_1', 'RM_a', 1_000);
      assert.equal(await store.getBinding('cs_1'), undefined, 'no binding: nothing noted');
      await store.bindRoom('cs_1', 'r1');
      await store.noteRoomSid('cs_1', 'RM_a', 1_000);
      await store.noteRoomSid('cs_1', 'RM_b', 5_000); // reopened
      assert.equal((await store.getBinding('cs_1'))?.roomSid, 'RM_b');
      await store.noteRoomSid('cs_1', 'RM_a', 1_000); // A's room_started, retried late
      assert.equal((await store.getBinding('cs_1'))?.roomSid, 'RM_b', 'the older instance is ignored');
      await store.noteRoomSid('cs_1', 'RM_b', 0); // B again, its time unknown: changes nothing
      await store.noteRoomSid('cs_1', 'RM_a', 4_000);
      assert.equal((await store.getBinding('cs_1'))?.roomSid, 'RM_b', "B's own time is kept");
      // as new as B (times in seconds): the later seen; the answer is the current sid
      assert.equal(await store.noteRoomSid('cs_1', 'RM_c', 5_000), 'RM_c');
      assert.equal(await store.noteRoomSid('cs_1', 'RM_a', 1_000), 'RM_c');
      assert.equal((await store.getBinding('cs_1'))?.roomSid, 'RM_c');
      await store.close();
    });

    it('roomClosed: off the live rooms, the room to be created again, and nothing expires', async () => {
      const h = harness();
      const store = await h.store();
      await store.bindRoom('cs_1', 'r1');
      await store.markRoomCreated('cs_1');
      await store.markLive('cs_1');
      await store.roomClosed('cs_1');
      assert.deepEqual((await store.liveSessions(0, 10)).sessionIds, []);
      assert.equal((await store.getBinding('cs_1'))?.roomCreated, false);
      assert.equal(await store.claimRoomCreation('cs_1', 10_000), true, 'the next token creates it again');
      await h.pass(1_500);
      assert.equal(await store.sessionOfRoom('r1'), 'cs_1', 'kept');
      await store.markLive('cs_1'); // reopened
      assert.deepEqual((await store.liveSessions(0, 10)).sessionIds, ['cs_1']);
      await store.close();
    });

    it('a createRoom claim expires', async () => {
      const h = harness();
      const store = await h.store();
      await store.bindRoom('cs_1', 'r1');
      assert.equal(await store.claimRoomCreation('cs_1', 200), true);
      assert.equal(await store.claimRoomCreation('cs_1', 200), false);
      await h.pass(400);
      assert.equal(await store.claimRoomCreation('cs_1', 200), true);
      await store.close();
    });

    it('claims a webhook id once among 50 parallel claimants; release and expiry free it', async () => {
      const h = harness();
      const store = await h.store();
      const claims = await Promise.all(Array.from({ length: 50 }, () => store.claimWebhook('EV_1', 60_000)));
      assert.equal(claims.filter(Boolean).length, 1);
      await store.releaseWebhook('EV_1');
      assert.equal(await store.claimWebhook('EV_1', 200), true);
      assert.equal(await store.claimWebhook('EV_1', 200), false);
      await h.pass(400);
      assert.equal(await store.claimWebhook('EV_1', 200), true);
      await store.close();
    });

    it('participant transitions: joined once, left final, a repeat of the same event applies again', async () => {
      const store = await harness().store();
      await store.bindRoom('cs_1', 'r1');
      let r = await store.transitionParticipant('cs_1', 'RM_1', change('joined', 'e1'));
      assert.deepEqual(r, { applied: true, previous: undefined });
      r = await store.transitionParticipant('cs_1', 'RM_1', change('joined', 'e1'));
      assert.equal(r.applied, true, 'same event again: a retry');
      r = await store.transitionParticipant('cs_1', 'RM_1', change('joined', 'e2'));
      assert.equal(r.applied, false, 'joined by another event: already joined');
      assert.equal(r.previous?.status, 'joined');
      r = await store.transitionParticipant('cs_1', 'RM_1', change('left', 'e3'));
      assert.equal(r.applied, true);
      assert.deepEqual(r.previous, {
        participantSid: 'PA_1',
        identity: 'user:a|b',
        status: 'joined',
        eventId: 'e1',
        at: 1000,
      });
      assert.equal(
        (await store.transitionParticipant('cs_1', 'RM_1', change('joined', 'e4'))).applied,
        false,
      );
      assert.equal((await store.transitionParticipant('cs_1', 'RM_1', change('left', 'e5'))).applied, false);
      // left before joined
      assert.equal(
        (await store.transitionParticipant('cs_1', 'RM_1', change('left', 'e6', 'PA_2'))).applied,
        true,
      );
      assert.equal(
        (await store.transitionParticipant('cs_1', 'RM_1', change('joined', 'e7', 'PA_2'))).applied,
        false,
      );
      // another room instance is another world
      assert.equal((await store.transitionParticipant('cs_1', 'RM_2', change('joined', 'e8'))).applied, true);
      const inRoom1 = (await store.participants('cs_1', 'RM_1')).sort((a, b) =>
        a.participantSid.localeCompare(b.participantSid),
      );
      assert.deepEqual(
        inRoom1.map((p) => [p.participantSid, p.status, p.eventId, p.identity]),
        [
          ['PA_1', 'left', 'e3', 'user:a|b'],
          ['PA_2', 'left', 'e6', 'user:a|b'],
        ],
      );
      assert.deepEqual(
        (await store.participants('cs_1', 'RM_2')).map((p) => p.status),
        ['joined'],
      );
      // without a binding nothing moves
      assert.equal(
        (await store.transitionParticipant('cs_9', 'RM_1', change('joined', 'e9'))).applied,
        false,
      );
      await store.close();
    });

    it('revert undoes a transition only while it is the current state', async () => {
      const store = await harness().store();
      await store.bindRoom('cs_1', 'r1');
      const joined = change('joined', 'e1');
      const first = await store.transitionParticipant('cs_1', 'RM_1', joined);
      await store.revertParticipant('cs_1', 'RM_1', joined, first.previous);
      assert.deepEqual(await store.participants('cs_1', 'RM_1'), []);
      await store.transitionParticipant('cs_1', 'RM_1', joined);
      const left = change('left', 'e2');
      const second = await store.transitionParticipant('cs_1', 'RM_1', left);
      await store.revertParticipant('cs_1', 'RM_1', left, second.previous);
      assert.deepEqual(
        (await store.participants('cs_1', 'RM_1')).map((p) => [p.status, p.eventId]),
        [['joined', 'e1']],
      );
      // a stale revert (another event made the state) does nothing
      await store.transitionParticipant('cs_1', 'RM_1', change('left', 'e3'));
      await store.revertParticipant('cs_1', 'RM_1', left, second.previous);
      assert.deepEqual(
        (await store.participants('cs_1', 'RM_1')).map((p) => [p.status, p.eventId]),
        [['left', 'e3']],
      );
      await store.close();
    });

    it('walks live sessions in pages and wraps around; retire removes one and lets its state expire', async () => {
      const h = harness();
      const store = await h.store();
      for (let i = 0; i < 7; i++) {
        await store.bindRoom(`cs_${i}`, `r${i}`);
        await store.markLive(`cs_${i}`);
      }
      await store.markLive('cs_0'); // again: still once
      const seen: string[] = [];
      let cursor = 0;
      for (let page = 0; page < 3; page++) {
        const result = await store.liveSessions(cursor, 3);
        assert.ok(result.sessionIds.length <= 3);
        seen.push(...result.sessionIds);
        cursor = result.next;
      }
      assert.equal(cursor, 0, 'wrapped around');
      assert.deepEqual([...seen].sort(), ['cs_0', 'cs_1', 'cs_2', 'cs_3', 'cs_4', 'cs_5', 'cs_6']);
      await store.retire('cs_3', 0.3);
      const all = await store.liveSessions(0, 100);
      assert.equal(all.next, 0);
      assert.ok(!all.sessionIds.includes('cs_3'));
      assert.equal(all.sessionIds.length, 6);
      assert.equal((await store.getBinding('cs_3'))?.room, 'r3', 'kept for the retention');
      await h.pass(600);
      assert.equal(await store.getBinding('cs_3'), undefined);
      assert.equal(await store.sessionOfRoom('r3'), undefined);
      await store.close();
    });

    it('a lease has one holder at a time; the holder renews it; it expires', async () => {
      const h = harness();
      const store = await h.store();
      assert.equal(await store.tryLease('reconcile', 'node-a', 300), true);
      assert.equal(await store.tryLease('reconcile', 'node-b', 300), false);
      assert.equal(await store.tryLease('reconcile', 'node-a', 300), true, 'renewed');
      await h.pass(500);
      assert.equal(await store.tryLease('reconcile', 'node-b', 300), true);
      await store.close();
    });
  });
}

contract('memory', () => {
  const clock = new ManualClock(Date.now());
  return {
    store: async () => new MemoryLiveKitStore(clock),
    pass: async (ms) => clock.advance(ms),
  };
});

let redis: RedisServer;
let prefixN = 0;
before(async () => {
  redis = await RedisServer.start({ aof: false });
});
after(() => redis.stop());

contract('redis', () => ({
  store: () =>
    RedisLiveKitStore.connect({
      url: redis.url,
      keyPrefix: `lk${process.pid}-${++prefixN}:`,
      commandTimeoutMs: 2000,
    }),
  pass: (ms) => sleep(ms),
}));
