/**
 * The LiveKit webhook route (`POST /v1/webhooks/livekit`): real signatures (an
 * AccessToken with the body's sha256, exactly as LiveKit signs), checked against the raw
 * bytes; the age window; exactly-once processing of an event id; translation of every
 * event type into the mapped session's stream; out-of-order and missing webhooks; a
 * finished room ending an active session (eos); the webhook and token counters on
 * /metrics. Runs on both engines (the store follows the engine: TEST_ENGINE=redis gives
 * the gateway a REDIS_URL).
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import {
  deliver,
  DisconnectReason,
  EgressStatus,
  LK_ENV,
  ParticipantInfo_Kind,
  postWebhook,
  signWebhook,
  TrackSource,
  TrackType,
  webhookEvent,
} from '../helpers/livekit.ts';
import { api, closeAll, hello, history, newSession, waitFor, type Session } from './support.ts';

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway({ ...LK_ENV });
});
afterEach(closeAll);
after(() => gw.stop());

interface Call extends Session {
  room: string;
  roomSid: string;
}

let roomN = 0;

/** A session whose LiveKit room is bound (by a token request), with a room sid for its webhooks. */
async function call(): Promise<Call> {
  const session = await newSession(gw);
  const res = await api(
    gw,
    'POST',
    `/v1/call/sessions/${session.sessionId}/livekit-token`,
    session.ownerToken,
  );
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return { ...session, room: res.body.room, roomSid: `RM_${process.pid}_${++roomN}` };
}

/** The stream's events after `call.created`, as [type, payload]. */
async function translated(c: Call): Promise<Array<[string, any]>> {
  return (await history(gw, c))
    .filter((e) => e.event.type !== 'call.created')
    .map((e) => [e.event.type, e.event.payload]);
}

const room = (c: Call) => ({ sid: c.roomSid, name: c.room });

async function activate(c: Call): Promise<void> {
  const path = `/v1/call/sessions/${c.sessionId}/transitions`;
  let res = await api(gw, 'POST', path, c.ownerToken, { to: 'connecting', provider: 'livekit' });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  res = await api(gw, 'POST', path, c.ownerToken, {
    to: 'active',
    provider: 'livekit',
    providerRoomId: c.room,
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

describe('LiveKit webhook signatures', () => {
  it('accepts a correctly signed webhook (200) and appends its translation', async () => {
    const c = await call();
    const res = await deliver(
      gw.url,
      webhookEvent('participant_joined', { room: room(c), participant: { sid: 'PA_a', identity: 'user:a' } }),
    );
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.status, 'processed');
    assert.equal(res.body.type, 'call.participant_joined');
    assert.deepEqual(
      (await translated(c)).map(([t]) => t),
      ['call.participant_joined'],
    );
  });

  it('401 without an Authorization header, with a garbage one, and with a plain bearer token', async () => {
    const c = await call();
    const body = webhookEvent('room_started', { room: room(c) }).toJsonString();
    for (const authorization of [undefined, '', 'not-a-jwt', `Bearer ${await signWebhook(body)}`]) {
      const res = await postWebhook(gw.url, body, authorization);
      assert.equal(res.status, 401, `${String(authorization)}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, 'webhook_signature_invalid');
    }
    assert.deepEqual(await translated(c), []);
  });

  it('401 when one byte of the body changed after signing', async () => {
    const c = await call();
    const body = Buffer.from(webhookEvent('room_started', { room: room(c) }).toJsonString());
    const authorization = await signWebhook(body);
    const tampered = Buffer.from(body);
    const i = tampered.indexOf('room_started');
    tampered[i] = 'R'.charCodeAt(0); // "Room_started": still JSON, still one byte
    const res = await postWebhook(gw.url, tampered, authorization);
    assert.equal(res.status, 401);
    assert.equal(res.body.error.code, 'webhook_signature_invalid');
    // and the untouched body with the same header is fine
    assert.equal((await postWebhook(gw.url, body, authorization)).status, 200);
  });

  it('401 for a body re-serialised after signing (same JSON, different bytes)', async () => {
    const c = await call();
    const body = webhookEvent('room_started', { room: room(c) }).toJsonString();
    const authorization = await signWebhook(body);
    const reserialised = JSON.stringify(JSON.parse(body), null, 2);
    assert.notEqual(reserialised, body);
    assert.deepEqual(JSON.parse(reserialised), JSON.parse(body));
    const res = await postWebhook(gw.url, reserialised, authorization);
    assert.equal(res.status, 401);
    assert.deepEqual(await translated(c), []);
  });

  it('401 for a webhook signed with another key or another secret', async () => {
    const c = await call();
    const body = webhookEvent('room_started', { room: room(c) }).toJsonString();
    const otherKey = await signWebhook(body, 'APIsomeoneElse', LK_ENV.LIVEKIT_API_SECRET);
    const otherSecret = await signWebhook(body, LK_ENV.LIVEKIT_API_KEY, 'x'.repeat(48));
    for (const authorization of [otherKey, otherSecret]) {
      const res = await postWebhook(gw.url, body, authorization);
      assert.equal(res.status, 401, JSON.stringify(res.body));
    }
  });

  it('400 for a signed body that is not a webhook event', async () => {
    const body = '{"event": 42, "createdAt": {"nested": true}}';
    const res = await postWebhook(gw.url, body, await signWebhook(body));
    assert.equal(res.status, 400, JSON.stringify(res.body));
    assert.equal(res.body.error.code, 'bad_request');
  });

  it('400 for a createdAt older than LIVEKIT_WEBHOOK_MAX_AGE_S or over 30 s in the future; fine just inside', async () => {
    const c = await call();
    const now = Math.floor(Date.now() / 1000);
    const maxAge = gw.config.LIVEKIT_WEBHOOK_MAX_AGE_S;
    for (const createdAtS of [now - maxAge - 5, now + 45, now - 100_000]) {
      const res = await deliver(gw.url, webhookEvent('room_started', { room: room(c), createdAtS }));
      assert.equal(res.status, 400, `${createdAtS - now}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, 'webhook_stale');
    }
    assert.deepEqual(await translated(c), []);
    for (const createdAtS of [now - maxAge + 10, now + 20]) {
      const res = await deliver(gw.url, webhookEvent('room_started', { room: room(c), createdAtS }));
      assert.equal(res.status, 200, `${createdAtS - now}: ${JSON.stringify(res.body)}`);
    }
  });

  it('answers 501 livekit_not_configured on a gateway without LiveKit', async () => {
    const plain = await startTestGateway();
    try {
      const body = webhookEvent('room_started', { room: { sid: 'RM_x', name: 'x' } }).toJsonString();
      const res = await postWebhook(plain.url, body, await signWebhook(body));
      assert.equal(res.status, 501);
      assert.equal(res.body.error.code, 'livekit_not_configured');
    } finally {
      await plain.stop();
    }
  });
});

describe('LiveKit webhooks are processed once', () => {
  it('50 parallel copies of one event: all 2xx, exactly one appended', async () => {
    const c = await call();
    const body = webhookEvent('participant_joined', {
      room: room(c),
      participant: { sid: 'PA_dup', identity: 'user:dup' },
    }).toJsonString();
    const authorization = await signWebhook(body);
    const results = await Promise.all(
      Array.from({ length: 50 }, () => postWebhook(gw.url, body, authorization)),
    );
    assert.deepEqual(
      results.filter((r) => r.status !== 200),
      [],
    );
    const statuses = results.map((r) => r.body.status).sort();
    assert.equal(statuses.filter((s) => s === 'processed').length, 1, statuses.join());
    assert.equal(statuses.filter((s) => s === 'duplicate').length, 49);
    assert.deepEqual(
      (await translated(c)).map(([t]) => t),
      ['call.participant_joined'],
    );
  });

  it('the appended event id is derived from the webhook id (a retry dedupes in the stream too)', async () => {
    const c = await call();
    const event = webhookEvent('track_published', {
      room: room(c),
      participant: { sid: 'PA_t', identity: 'user:t' },
      track: { sid: 'TR_t', type: TrackType.AUDIO, source: TrackSource.MICROPHONE },
    });
    assert.equal((await deliver(gw.url, event)).body.status, 'processed');
    const events = await history(gw, c);
    const appended = events.find((e) => e.event.type === 'call.track_published');
    assert.equal(appended?.event.eventId, `lk.${event.id}`);
  });
});

describe('LiveKit webhooks → canonical events', () => {
  it('translates every event type, keeping the provider ids', async () => {
    const c = await call();
    const r = room(c);
    const createdAtS = Math.floor(Date.now() / 1000);
    const participant = {
      sid: 'PA_1',
      identity: 'user:ana',
      name: 'Ana',
      kind: ParticipantInfo_Kind.STANDARD,
    };
    const agent = { sid: 'PA_2', identity: 'agent:concierge', kind: ParticipantInfo_Kind.AGENT };
    const startedAtNs = BigInt(createdAtS) * 1_000_000_000n;
    const egress = { egressId: 'EG_1', roomId: c.roomSid, roomName: c.room, startedAtNs };
    const webhooks = [
      webhookEvent('room_started', { room: r, createdAtS }),
      webhookEvent('participant_joined', { room: r, participant, createdAtS }),
      webhookEvent('participant_joined', { room: r, participant: agent, createdAtS }),
      webhookEvent('track_published', {
        room: r,
        participant,
        track: { sid: 'TR_1', type: TrackType.AUDIO, source: TrackSource.MICROPHONE, name: 'mic' },
        createdAtS,
      }),
      webhookEvent('track_unpublished', {
        room: r,
        participant,
        track: { sid: 'TR_1', type: TrackType.AUDIO, source: TrackSource.MICROPHONE, name: 'mic' },
        createdAtS,
      }),
      webhookEvent('egress_started', {
        egress: { ...egress, status: EgressStatus.EGRESS_STARTING },
        createdAtS,
      }),
      webhookEvent('egress_updated', {
        egress: { ...egress, status: EgressStatus.EGRESS_ACTIVE },
        createdAtS,
      }),
      webhookEvent('egress_ended', {
        egress: {
          ...egress,
          status: EgressStatus.EGRESS_FAILED,
          endedAtNs: startedAtNs + 5_000_000_000n,
          error: 'upload failed',
        },
        createdAtS,
      }),
      webhookEvent('participant_left', {
        room: r,
        participant: { ...participant, disconnectReason: DisconnectReason.CLIENT_INITIATED },
        createdAtS,
      }),
      webhookEvent('participant_connection_aborted', {
        room: r,
        participant: { sid: 'PA_3', identity: 'user:bob' },
        createdAtS,
      }),
      webhookEvent('room_finished', { room: r, createdAtS }),
    ];
    for (const w of webhooks) {
      const res = await deliver(gw.url, w);
      assert.equal(res.status, 200, `${w.event}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.status, 'processed', `${w.event}: ${JSON.stringify(res.body)}`);
    }
    const providerTs = new Date(createdAtS * 1000).toISOString();
    const ref = (i: number) => ({
      roomId: c.roomSid,
      roomName: c.room,
      providerEventId: webhooks[i]!.id,
      providerTs,
    });
    assert.deepEqual(await translated(c), [
      ['call.room_started', ref(0)],
      [
        'call.participant_joined',
        { participantId: 'PA_1', identity: 'user:ana', kind: 'user', name: 'Ana', ...ref(1) },
      ],
      [
        'call.participant_joined',
        { participantId: 'PA_2', identity: 'agent:concierge', kind: 'agent', ...ref(2) },
      ],
      [
        'call.track_published',
        {
          trackId: 'TR_1',
          participantIdentity: 'user:ana',
          participantId: 'PA_1',
          kind: 'audio',
          source: 'microphone',
          name: 'mic',
          ...ref(3),
        },
      ],
      [
        'call.track_unpublished',
        {
          trackId: 'TR_1',
          participantIdentity: 'user:ana',
          participantId: 'PA_1',
          kind: 'audio',
          source: 'microphone',
          name: 'mic',
          ...ref(4),
        },
      ],
      ['call.recording.started', { egressId: 'EG_1', status: 'starting', startedAt: providerTs, ...ref(5) }],
      ['call.recording.updated', { egressId: 'EG_1', status: 'active', startedAt: providerTs, ...ref(6) }],
      [
        'call.recording.ended',
        {
          egressId: 'EG_1',
          status: 'failed',
          startedAt: providerTs,
          endedAt: new Date(createdAtS * 1000 + 5000).toISOString(),
          error: 'upload failed',
          ...ref(7),
        },
      ],
      [
        'call.participant_left',
        {
          participantId: 'PA_1',
          identity: 'user:ana',
          kind: 'user',
          name: 'Ana',
          reason: 'client_initiated',
          ...ref(8),
        },
      ],
      [
        'call.participant_connection_aborted',
        { participantId: 'PA_3', identity: 'user:bob', kind: 'user', ...ref(9) },
      ],
      ['call.room_finished', ref(10)],
    ]);
  });

  it('a webhook for a room the gateway never bound: 200, ignored', async () => {
    const res = await deliver(
      gw.url,
      webhookEvent('room_finished', { room: { sid: 'RM_nobody', name: 'lifeos-cs_unknown' } }),
    );
    assert.equal(res.status, 200);
    assert.deepEqual([res.body.status, res.body.reason], ['ignored', 'unknown_room']);
  });

  it('ingress events and data tracks are acknowledged and ignored', async () => {
    const c = await call();
    const data = await deliver(
      gw.url,
      webhookEvent('track_published', {
        room: room(c),
        participant: { sid: 'PA_d', identity: 'user:d' },
        track: { sid: 'TR_d', type: TrackType.DATA },
      }),
    );
    assert.deepEqual([data.status, data.body.status], [200, 'ignored']);
    const ingress = await deliver(gw.url, webhookEvent('ingress_started', { room: room(c) }));
    assert.deepEqual([ingress.status, ingress.body.status], [200, 'ignored']);
    assert.deepEqual(await translated(c), []);
  });
});

describe('LiveKit webhooks out of order and missing', () => {
  it('participant_left before its participant_joined: the left counts, the late joined is ignored', async () => {
    const c = await call();
    const p = { sid: 'PA_late', identity: 'user:late' };
    const joined = webhookEvent('participant_joined', { room: room(c), participant: p });
    const left = webhookEvent('participant_left', { room: room(c), participant: p });
    assert.equal((await deliver(gw.url, left)).body.status, 'processed');
    const late = await deliver(gw.url, joined);
    assert.equal(late.status, 200);
    assert.deepEqual([late.body.status, late.body.reason], ['ignored', 'participant_already_left']);
    assert.deepEqual(
      (await translated(c)).map(([t]) => t),
      ['call.participant_left'],
    );
  });

  it('a participant_left whose joined never came is appended; a second left for it is ignored', async () => {
    const c = await call();
    const p = { sid: 'PA_gap', identity: 'user:gap' };
    assert.equal(
      (await deliver(gw.url, webhookEvent('participant_left', { room: room(c), participant: p }))).body
        .status,
      'processed',
    );
    const again = await deliver(
      gw.url,
      webhookEvent('participant_connection_aborted', { room: room(c), participant: p }),
    );
    assert.deepEqual([again.status, again.body.status], [200, 'ignored']);
    assert.deepEqual(
      (await translated(c)).map(([t]) => t),
      ['call.participant_left'],
    );
  });

  it('presence is per room instance: the same participant sid in a reopened room is new', async () => {
    const c = await call();
    const p = { sid: 'PA_same', identity: 'user:same' };
    await deliver(gw.url, webhookEvent('participant_left', { room: room(c), participant: p }));
    const reopened = { sid: `${c.roomSid}_2`, name: c.room };
    const res = await deliver(gw.url, webhookEvent('participant_joined', { room: reopened, participant: p }));
    assert.equal(res.body.status, 'processed');
  });

  it('egress events arriving before room_started are still translated', async () => {
    const c = await call();
    const egress = {
      egressId: 'EG_early',
      roomId: c.roomSid,
      roomName: c.room,
      status: EgressStatus.EGRESS_STARTING,
    };
    assert.equal(
      (await deliver(gw.url, webhookEvent('egress_started', { egress }))).body.status,
      'processed',
    );
    assert.equal(
      (await deliver(gw.url, webhookEvent('room_started', { room: room(c) }))).body.status,
      'processed',
    );
    assert.deepEqual(
      (await translated(c)).map(([t]) => t),
      ['call.recording.started', 'call.room_started'],
    );
  });
});

describe('room_finished ends the session', () => {
  it('an active session moves to ended; subscribers get call.room_finished, call.ended, then eos', async () => {
    const c = await call();
    await activate(c);
    const { client } = await hello(gw, 'json', { sessionId: c.sessionId, token: c.ownerToken, after: 0 });
    const res = await deliver(gw.url, webhookEvent('room_finished', { room: room(c) }));
    assert.deepEqual([res.status, res.body.status], [200, 'processed']);
    const eos = await waitFor(client, (f) => f.op === 'eos');
    const types = client.frames.filter((f) => f.op === 'ev').map((f) => f.event.type);
    assert.deepEqual(types.slice(-2), ['call.room_finished', 'call.ended']);
    assert.equal(eos.seq, client.frames.filter((f) => f.op === 'ev').at(-1)!.seq);
    const session = await api(gw, 'GET', `/v1/call/sessions/${c.sessionId}`, c.ownerToken);
    assert.equal(session.body.state, 'ended');
    // what arrives later is acknowledged and dropped: the stream has ended
    const late = await deliver(
      gw.url,
      webhookEvent('egress_ended', {
        egress: {
          egressId: 'EG_late',
          roomId: c.roomSid,
          roomName: c.room,
          status: EgressStatus.EGRESS_COMPLETE,
        },
      }),
    );
    assert.equal(late.status, 200);
    assert.equal(late.body.status, 'ignored');
    // and no new token is issued for it
    const token = await api(gw, 'POST', `/v1/call/sessions/${c.sessionId}/livekit-token`, c.ownerToken);
    assert.equal(token.status, 409);
    assert.equal(token.body.error.code, 'session_ended');
  });

  it('a session that is not active is not ended by its room finishing', async () => {
    const c = await call();
    const res = await deliver(gw.url, webhookEvent('room_finished', { room: room(c) }));
    assert.deepEqual([res.status, res.body.status], [200, 'processed']);
    const session = await api(gw, 'GET', `/v1/call/sessions/${c.sessionId}`, c.ownerToken);
    assert.equal(session.body.state, 'created');
  });

  it("a late room_started of an earlier instance does not take the room back: the current one's room_finished ends the session", async () => {
    const c = await call();
    await activate(c);
    const now = Math.floor(Date.now() / 1000);
    const current = { sid: `${c.roomSid}_b`, name: c.room };
    assert.equal(
      (await deliver(gw.url, webhookEvent('room_started', { room: current }))).body.status,
      'processed',
    );
    // the first instance's room_started, retried by LiveKit: sent 60 s ago, no creation time
    const late = webhookEvent('room_started', {
      room: { sid: `${c.roomSid}_a`, name: c.room },
      createdAtS: now - 60,
    });
    assert.equal((await deliver(gw.url, late)).status, 200);
    await deliver(gw.url, webhookEvent('room_finished', { room: current }));
    const session = await api(gw, 'GET', `/v1/call/sessions/${c.sessionId}`, c.ownerToken);
    assert.equal(session.body.state, 'ended', 'the current instance finished');
  });

  it('a late room_finished of an earlier instance ends nothing, even after its late room_started', async () => {
    const c = await call();
    await activate(c);
    const now = BigInt(Math.floor(Date.now() / 1000));
    const first = { sid: `${c.roomSid}_a`, name: c.room, creationTime: now - 90n };
    const current = { sid: `${c.roomSid}_b`, name: c.room, creationTime: now };
    await deliver(gw.url, webhookEvent('room_started', { room: current }));
    await deliver(gw.url, webhookEvent('room_started', { room: first }));
    const res = await deliver(gw.url, webhookEvent('room_finished', { room: first }));
    assert.deepEqual([res.status, res.body.status], [200, 'processed']);
    const session = await api(gw, 'GET', `/v1/call/sessions/${c.sessionId}`, c.ownerToken);
    assert.equal(session.body.state, 'active', 'the current instance is still open');
  });
});

describe('a lost room_started', () => {
  it('a webhook of the reopened room that says when it was created makes it current: its room_finished ends the session', async () => {
    const c = await call();
    const now = BigInt(Math.floor(Date.now() / 1000));
    const first = { sid: `${c.roomSid}_a`, name: c.room, creationTime: now - 600n };
    await deliver(gw.url, webhookEvent('room_started', { room: first }));
    await deliver(gw.url, webhookEvent('room_finished', { room: first })); // before the call was active
    await activate(c);
    // the reopened room's room_started never came
    const reopened = { sid: `${c.roomSid}_b`, name: c.room, creationTime: now };
    const joined = await deliver(
      gw.url,
      webhookEvent('participant_joined', {
        room: reopened,
        participant: { sid: 'PA_1', identity: 'user:x' },
      }),
    );
    assert.equal(joined.body.status, 'processed');
    await deliver(gw.url, webhookEvent('room_finished', { room: reopened }));
    const session = await api(gw, 'GET', `/v1/call/sessions/${c.sessionId}`, c.ownerToken);
    assert.equal(session.body.state, 'ended');
  });
});

describe('room_finished before the call is active', () => {
  let short: TestGateway;
  before(async () => {
    short = await startTestGateway({ ...LK_ENV, HISTORY_TTL_AFTER_END_S: '1' });
  });
  after(() => short.stop());

  it("keeps the session's room: once the retention of an ended stream has passed, the reopened room's webhooks still find it", async () => {
    const session = await newSession(short);
    const path = `/v1/call/sessions/${session.sessionId}`;
    const token = await api(short, 'POST', `${path}/livekit-token`, session.ownerToken);
    assert.equal(token.status, 200, JSON.stringify(token.body));
    const name: string = token.body.room;
    // the room LiveKit opened closes before anyone joined; the session is still `created`
    const finished = await deliver(
      short.url,
      webhookEvent('room_finished', { room: { sid: 'RM_first', name } }),
    );
    assert.equal(finished.body.status, 'processed');
    await new Promise((resolve) => setTimeout(resolve, 1_300)); // past HISTORY_TTL_AFTER_END_S
    const reopened = { sid: 'RM_second', name };
    const started = await deliver(short.url, webhookEvent('room_started', { room: reopened }));
    const joined = await deliver(
      short.url,
      webhookEvent('participant_joined', {
        room: reopened,
        participant: { sid: 'PA_1', identity: 'user:x' },
      }),
    );
    assert.deepEqual([started.body.status, joined.body.status], ['processed', 'processed']);
    const types = (await history(short, session)).map((e) => e.event.type);
    assert.deepEqual(types, [
      'call.created',
      'call.room_finished',
      'call.room_started',
      'call.participant_joined',
    ]);
  });
});

describe('LiveKit metrics', () => {
  /** The value of `name`'s series whose labels include `labels`, from the gateway's /metrics. */
  function series(text: string, name: string, labels: Record<string, string> = {}): number {
    const found = text
      .split('\n')
      .filter((line) => line.startsWith(`${name}{`))
      .filter((line) => Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)));
    assert.equal(found.length, 1, `one series ${name}${JSON.stringify(labels)}`);
    return Number(found[0]!.slice(found[0]!.lastIndexOf(' ') + 1));
  }

  it('count one processed, one duplicate, one bad signature and one stale webhook, and the token', async () => {
    const fresh = await startTestGateway({ ...LK_ENV });
    try {
      const session = await newSession(fresh);
      const token = await api(
        fresh,
        'POST',
        `/v1/call/sessions/${session.sessionId}/livekit-token`,
        session.ownerToken,
      );
      assert.equal(token.status, 200, JSON.stringify(token.body));
      const r = { sid: `RM_${process.pid}_metrics`, name: token.body.room as string };

      const before = (await fresh.http('GET', '/metrics')).body as string;
      for (const outcome of [
        'processed',
        'duplicate',
        'ignored',
        'bad_signature',
        'stale',
        'bad_request',
        'error',
      ])
        assert.equal(
          series(before, 'lifeos_livekit_webhooks_total', { outcome }),
          0,
          `${outcome} starts at 0`,
        );

      const body = webhookEvent('room_started', { room: r }).toJsonString();
      const authorization = await signWebhook(body);
      assert.equal((await postWebhook(fresh.url, body, authorization)).body.status, 'processed');
      assert.equal((await postWebhook(fresh.url, body, authorization)).body.status, 'duplicate');
      const forged = await signWebhook(body, LK_ENV.LIVEKIT_API_KEY, 'x'.repeat(48));
      assert.equal((await postWebhook(fresh.url, body, forged)).status, 401);
      const stale = webhookEvent('room_started', { room: r, createdAtS: 1 });
      assert.equal((await deliver(fresh.url, stale)).status, 400);

      const text = (await fresh.http('GET', '/metrics')).body as string;
      const counts = Object.fromEntries(
        ['processed', 'duplicate', 'ignored', 'bad_signature', 'stale', 'bad_request', 'error'].map((o) => [
          o,
          series(text, 'lifeos_livekit_webhooks_total', { outcome: o }),
        ]),
      );
      assert.deepEqual(counts, {
        processed: 1,
        duplicate: 1,
        ignored: 0,
        bad_signature: 1,
        stale: 1,
        bad_request: 0,
        error: 0,
      });
      assert.match(text, /lifeos_livekit_webhooks_total\{[^}]*node="[^"]+"/, 'labelled by node');
      assert.equal(series(text, 'lifeos_livekit_tokens_issued_total'), 1);
      // no LIVEKIT_URL: no reconciler, no RoomService call, the series stay at 0
      assert.equal(series(text, 'lifeos_livekit_reconcile_corrections_total', { kind: 'joined' }), 0);
      assert.equal(series(text, 'lifeos_livekit_room_service_errors_total', { op: 'createRoom' }), 0);
    } finally {
      await fresh.stop();
    }
  });
});
