/**
 * The LiveKit bridge with LIVEKIT_URL set, against a Twirp stand-in for LiveKit's
 * RoomService (test/helpers/livekit-twirp-standin.ts, which verifies the JWT of every
 * request): rooms created once with the configured limits, and reconciliation of live
 * rooms' participants (corrections marked `reconciled: true`), bounded per tick. The
 * reconciler is driven tick by tick (LIVEKIT_RECONCILE_INTERVAL_MS=0) and the clock by
 * hand. Runs on both engines.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { ReconcileReport } from '../../src/livekit/reconciler.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import {
  deliver,
  LK_ENV,
  LK_KEY,
  LK_SECRET,
  ParticipantInfo,
  ParticipantInfo_State,
  webhookEvent,
} from '../helpers/livekit.ts';
import { TwirpStandin } from '../helpers/livekit-twirp-standin.ts';
import { api, history, newSession, type Session } from './support.ts';

let standin: TwirpStandin;
let clock: ManualClock;
let gw: TestGateway;

async function startGateway(extra: Record<string, string> = {}): Promise<TestGateway> {
  return startTestGateway(
    {
      ...LK_ENV,
      LIVEKIT_URL: standin.url,
      LIVEKIT_RECONCILE_INTERVAL_MS: '0',
      LIVEKIT_MAX_PARTICIPANTS: '7',
      LIVEKIT_EMPTY_TIMEOUT_S: '45',
      ...extra,
    },
    { clock },
  );
}

before(async () => {
  standin = await TwirpStandin.start(LK_KEY, LK_SECRET);
  clock = new ManualClock(Date.now());
  gw = await startGateway();
});
after(async () => {
  await gw.stop();
  await standin.stop();
});
beforeEach(() => {
  standin.failing = false;
});

const tokenPath = (s: Session) => `/v1/call/sessions/${s.sessionId}/livekit-token`;
const nowS = () => Math.floor(clock.now() / 1000);
const tick = (g: TestGateway = gw): Promise<ReconcileReport> => g.gateway.livekit!.reconciler!.tick();

async function liveCall(g: TestGateway = gw): Promise<Session & { room: string; roomSid: string }> {
  const s = await newSession(g);
  const res = await api(g, 'POST', tokenPath(s), s.ownerToken);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const room = standin.rooms.get(res.body.room)!.room;
  return { ...s, room: room.name, roomSid: room.sid };
}

function participant(sid: string, identity: string): ParticipantInfo {
  return new ParticipantInfo({ sid, identity, state: ParticipantInfo_State.ACTIVE });
}

async function corrections(s: Session): Promise<Array<[string, string, boolean | undefined]>> {
  return (await history(gw, s))
    .filter((e) => e.event.type.startsWith('call.participant'))
    .map((e) => [e.event.type, e.event.payload.participantId, e.event.payload.reconciled]);
}

describe('LiveKit rooms (RoomService via the stand-in)', () => {
  it('creates the room once, with emptyTimeout and maxParticipants from the config; url is LIVEKIT_URL', async () => {
    const s = await newSession(gw);
    const before = standin.callsOf('CreateRoom').length;
    const replies = await Promise.all(
      Array.from({ length: 8 }, (_, i) => api(gw, 'POST', tokenPath(s), i % 2 ? s.agentToken : s.ownerToken)),
    );
    for (const r of replies) assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(replies[0]!.body.url, standin.url);
    const created = standin.callsOf('CreateRoom').slice(before);
    assert.equal(created.length, 1, 'one CreateRoom for the session');
    assert.equal(created[0]!.body.name, `lifeos-${s.sessionId}`);
    assert.equal(created[0]!.body.emptyTimeout, 45);
    assert.equal(created[0]!.body.maxParticipants, 7);
    assert.deepEqual(JSON.parse(created[0]!.body.metadata), { sessionId: s.sessionId });
    assert.equal(created[0]!.grant.roomCreate, true);
    assert.deepEqual(standin.refused, [], 'every request carried a valid JWT');
    // later tokens do not call LiveKit again
    await api(gw, 'POST', tokenPath(s), s.ownerToken);
    assert.equal(standin.callsOf('CreateRoom').length, before + 1);
  });

  it('503 livekit_unavailable when LiveKit fails to create the room; the retry creates it', async () => {
    const s = await newSession(gw);
    standin.failing = true;
    const failed = await api(gw, 'POST', tokenPath(s), s.ownerToken);
    assert.deepEqual([failed.status, failed.body.error.code], [503, 'livekit_unavailable']);
    standin.failing = false;
    const ok = await api(gw, 'POST', tokenPath(s), s.ownerToken);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.ok(standin.rooms.has(ok.body.room));
  });

  it('the stand-in refuses a request signed with the wrong secret (the adapter is really checked)', async () => {
    const { LiveKitRoomService } = await import('../../src/livekit/room-service.ts');
    const wrong = new LiveKitRoomService(standin.url, LK_KEY, 'w'.repeat(40), { requestTimeoutS: 2 });
    await assert.rejects(wrong.listRooms(['x']), /invalid token|unauthenticated/i);
    assert.ok(standin.refused.length > 0);
    standin.refused.length = 0;
    const right = new LiveKitRoomService(standin.url, LK_KEY, LK_SECRET, { requestTimeoutS: 2 });
    assert.equal(await right.listParticipants('no-such-room'), undefined, 'not_found is "no room"');
  });
});

describe('LiveKit reconciliation', () => {
  it('emits a lost participant_joined, then a lost participant_left, marked reconciled; late webhooks change nothing', async () => {
    const c = await liveCall();
    const room = { sid: c.roomSid, name: c.room };
    // A's join arrives by webhook; B's is lost
    await deliver(
      gw.url,
      webhookEvent('participant_joined', {
        room,
        participant: { sid: 'PA_A', identity: 'user:a' },
        createdAtS: nowS(),
      }),
    );
    standin.setParticipants(c.room, [participant('PA_A', 'user:a'), participant('PA_B', 'agent:b')]);
    const report = await tick();
    assert.equal(report.joined >= 1, true, JSON.stringify(report));
    assert.deepEqual(await corrections(c), [
      ['call.participant_joined', 'PA_A', undefined],
      ['call.participant_joined', 'PA_B', true],
    ]);
    const listCalls = standin.callsOf('ListParticipants');
    assert.equal(listCalls.at(-1)!.grant.roomAdmin, true);
    assert.equal(listCalls.at(-1)!.grant.room, c.room);

    // A leaves and the webhook is lost; within the grace period nothing is said
    standin.setParticipants(c.room, [participant('PA_B', 'agent:b')]);
    await tick();
    assert.deepEqual((await corrections(c)).length, 2, 'A joined moments ago: not declared gone yet');
    clock.advance(10_000);
    await tick();
    assert.deepEqual((await corrections(c)).at(-1), ['call.participant_left', 'PA_A', true]);
    const left = (await history(gw, c)).at(-1)!.event;
    assert.equal(left.payload.reason, 'not_in_room');
    assert.equal(left.payload.roomId, c.roomSid);
    assert.equal(left.payload.roomName, c.room);

    // the late webhooks are acknowledged and ignored
    const lateJoin = await deliver(
      gw.url,
      webhookEvent('participant_joined', {
        room,
        participant: { sid: 'PA_B', identity: 'agent:b' },
        createdAtS: nowS(),
      }),
    );
    const lateLeft = await deliver(
      gw.url,
      webhookEvent('participant_left', {
        room,
        participant: { sid: 'PA_A', identity: 'user:a' },
        createdAtS: nowS(),
      }),
    );
    assert.deepEqual([lateJoin.status, lateJoin.body.status], [200, 'ignored']);
    assert.deepEqual([lateLeft.status, lateLeft.body.status], [200, 'ignored']);
    // a further tick finds nothing to correct
    const count = (await corrections(c)).length;
    await tick();
    assert.equal((await corrections(c)).length, count);
  });

  it('a room that closed without its room_finished: everyone still present leaves, and it is no longer walked', async () => {
    const c = await liveCall();
    standin.setParticipants(c.room, [participant('PA_C', 'user:c')]);
    await tick();
    clock.advance(10_000);
    standin.closeRoom(c.room);
    await tick();
    assert.deepEqual(
      (await corrections(c)).map(([t, p, r]) => [t, p, r]),
      [
        ['call.participant_joined', 'PA_C', true],
        ['call.participant_left', 'PA_C', true],
      ],
    );
    const before = standin
      .callsOf('ListRooms')
      .map((call) => call.body.names ?? [])
      .flat().length;
    await tick();
    const names = standin.callsOf('ListRooms').slice(-1)[0]?.body.names ?? [];
    assert.ok(!names.includes(c.room), 'a retired room is not listed again');
    assert.ok(before > 0);
  });

  it('a room that closed while its session goes on: created again by the next token request', async () => {
    const c = await liveCall();
    const creates = standin.callsOf('CreateRoom').length;
    standin.closeRoom(c.room); // its emptyTimeout passed before anyone joined
    const report = await tick();
    assert.ok(report.closed >= 1 && report.retired === 0, JSON.stringify(report));
    const again = await api(gw, 'POST', tokenPath(c), c.ownerToken);
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(standin.callsOf('CreateRoom').length, creates + 1, 'LiveKit was asked to create it again');
    assert.ok(standin.rooms.has(c.room));
  });

  it('an ended session is retired from reconciliation', async () => {
    const c = await liveCall();
    const failed = await api(gw, 'POST', `/v1/call/sessions/${c.sessionId}/transitions`, c.ownerToken, {
      to: 'failed',
      reason: 'test',
    });
    assert.equal(failed.status, 200);
    standin.setParticipants(c.room, [participant('PA_D', 'user:d')]);
    const report = await tick();
    assert.ok(report.retired >= 1, JSON.stringify(report));
    assert.deepEqual(await corrections(c), []);
  });

  it('looks at no more than 50 rooms per tick (one ListRooms), and walks on next tick', async () => {
    const g = await startGateway();
    try {
      const calls = [];
      for (let i = 0; i < 55; i++) calls.push(await liveCall(g));
      const before = standin.callsOf('ListRooms').length;
      const first = await tick(g);
      const second = await tick(g);
      const listRooms = standin.callsOf('ListRooms').slice(before);
      assert.equal(listRooms.length, 2, 'one ListRooms per tick');
      assert.ok(listRooms.every((c) => c.body.names.length <= 50 && c.body.names.length > 0));
      assert.ok(first.rooms <= 50 && second.rooms <= 50, `${first.rooms} ${second.rooms}`);
      const seen = new Set(listRooms.flatMap((c) => c.body.names as string[]));
      for (const c of calls) assert.ok(seen.has(c.room), `${c.room} walked within two ticks`);
    } finally {
      await g.stop();
    }
  });
});
