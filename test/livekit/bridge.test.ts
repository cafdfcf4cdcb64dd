/**
 * The bridge's failure paths, with its ports faked (the store is the real memory store,
 * the signatures real): a webhook whose processing fails answers an error, leaves its
 * claim and presence as they were, and LiveKit's retry is processed exactly once; a
 * reconciler tick on a node without the lease does nothing. Also what the bridge counts
 * in its metrics (read from the Metrics registry).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AppendOutcome } from '../../src/engine/engine.ts';
import { MemoryLiveKitStore } from '../../src/engine/memory/livekit-store.ts';
import { GatewayError } from '../../src/errors/gateway-error.ts';
import { LiveKitBridge } from '../../src/livekit/bridge.ts';
import type { EventSink, SessionLifecycle } from '../../src/livekit/ports.ts';
import { Reconciler } from '../../src/livekit/reconciler.ts';
import { countingRoomErrors, type RoomProvider } from '../../src/livekit/room-service.ts';
import { EventIdSeal } from '../../src/auth/event-id-seal.ts';
import { reconciledEventId, roomOf, translate, webhookEventId } from '../../src/livekit/translate.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import type { Envelope } from '../../src/protocol/envelope.ts';
import { ManualClock } from '../../src/util/clock.ts';
import type { WebhookEvent as SdkWebhookEvent } from 'livekit-server-sdk';
import { LK_KEY, LK_SECRET, ParticipantInfo, signWebhook, webhookEvent } from '../helpers/livekit.ts';

/** The value of the series of `counter` with exactly `labels` (0 when it has none). */
async function count(
  counter: { get(): Promise<{ values: { labels: object; value: number }[] }> },
  labels: Record<string, string> = {},
): Promise<number> {
  const { values } = await counter.get();
  const found = values.filter((v) => JSON.stringify(v.labels) === JSON.stringify(labels));
  assert.ok(found.length <= 1, `one series ${JSON.stringify(labels)}`);
  return found[0]?.value ?? 0;
}

class FakeStream implements EventSink {
  readonly events: Envelope[] = [];
  failures = 0;
  async publish(_sessionId: string, event: Envelope): Promise<AppendOutcome> {
    if (this.failures > 0) {
      this.failures--;
      throw new GatewayError('unavailable', 'the engine is down (fake)');
    }
    const i = this.events.findIndex((e) => e.eventId === event.eventId);
    if (i >= 0) return { seq: i + 1, duplicate: true };
    this.events.push(event);
    return { seq: this.events.length, duplicate: false };
  }
}

class FakeLifecycle implements SessionLifecycle {
  state = 'active';
  ended: string[] = [];
  failures = 0;
  async status() {
    return { state: this.state, ended: this.state === 'ended' };
  }
  /** As src/app.ts's: ends an active or ending session; whether it has ended. */
  async endFromProvider(sessionId: string) {
    if (this.failures > 0) {
      this.failures--;
      throw new GatewayError('unavailable', 'fake');
    }
    if (this.state === 'active' || this.state === 'ending') {
      this.ended.push(sessionId);
      this.state = 'ended';
    }
    return this.state === 'ended' || this.state === 'failed';
  }
}

function setup() {
  const clock = new ManualClock(Date.now());
  const store = new MemoryLiveKitStore(clock);
  const stream = new FakeStream();
  const lifecycle = new FakeLifecycle();
  const metrics = new Metrics();
  const bridge = new LiveKitBridge(
    {
      apiKey: LK_KEY,
      apiSecret: LK_SECRET,
      url: '',
      tokenTtlS: 600,
      webhookMaxAgeS: 300,
      emptyTimeoutS: 300,
      maxParticipants: 0,
      retentionS: 3600,
    },
    { store, lifecycle, events: stream, rooms: undefined, clock, logger: silentLogger(), metrics },
  );
  return { clock, store, stream, lifecycle, bridge, metrics };
}

async function signed(event: ReturnType<typeof webhookEvent>): Promise<[Buffer, string]> {
  const body = Buffer.from(event.toJsonString());
  return [body, await signWebhook(body)];
}

describe('LiveKit bridge failures', () => {
  it('an append that fails: the webhook errors (5xx), presence and claim are undone, the retry is processed once', async () => {
    const { store, stream, bridge, metrics } = setup();
    await store.bindRoom('cs_1', 'lifeos-cs_1');
    const event = webhookEvent('participant_joined', {
      room: { sid: 'RM_1', name: 'lifeos-cs_1' },
      participant: { sid: 'PA_1', identity: 'user:a' },
    });
    const [body, auth] = await signed(event);
    stream.failures = 1;
    await assert.rejects(
      bridge.receiveWebhook(body, auth),
      (err: GatewayError) => err.code === 'unavailable',
    );
    assert.deepEqual(await store.participants('cs_1', 'RM_1'), [], 'presence reverted');
    const retry = await bridge.receiveWebhook(body, auth);
    assert.equal(retry.status, 'processed');
    assert.equal((await bridge.receiveWebhook(body, auth)).status, 'duplicate');
    assert.deepEqual(
      stream.events.map((e) => [e.type, e.eventId]),
      [['call.participant_joined', webhookEventId(event.id)]],
    );
    const webhooks = metrics.livekitWebhooks;
    assert.equal(await count(webhooks, { outcome: 'error' }), 1, 'the failure counts as error');
    assert.equal(await count(webhooks, { outcome: 'processed' }), 1);
    assert.equal(await count(webhooks, { outcome: 'duplicate' }), 1);
  });

  it('counts refused and ignored webhooks by outcome', async () => {
    const { bridge, metrics } = setup();
    const [body, auth] = await signed(
      webhookEvent('room_started', { room: { sid: 'RM_x', name: 'nobody' } }),
    );
    assert.equal((await bridge.receiveWebhook(body, auth)).status, 'ignored');
    await assert.rejects(bridge.receiveWebhook(body, 'not-a-jwt'));
    const junk = Buffer.from('{"event": 42}');
    await assert.rejects(bridge.receiveWebhook(junk, await signWebhook(junk)));
    const [old, oldAuth] = await signed(webhookEvent('room_started', { createdAtS: 1 }));
    await assert.rejects(bridge.receiveWebhook(old, oldAuth));
    const counts: Record<string, number> = {};
    for (const outcome of [
      'processed',
      'duplicate',
      'ignored',
      'bad_signature',
      'stale',
      'bad_request',
      'error',
    ])
      counts[outcome] = await count(metrics.livekitWebhooks, { outcome });
    assert.deepEqual(counts, {
      processed: 0,
      duplicate: 0,
      ignored: 1,
      bad_signature: 1,
      stale: 1,
      bad_request: 1,
      error: 0,
    });
  });

  it('room_finished whose session end fails: retried, the room event is stored once and the session ends', async () => {
    const { store, stream, lifecycle, bridge } = setup();
    await store.bindRoom('cs_1', 'lifeos-cs_1');
    const [body, auth] = await signed(
      webhookEvent('room_finished', { room: { sid: 'RM_1', name: 'lifeos-cs_1' } }),
    );
    lifecycle.failures = 1;
    await assert.rejects(bridge.receiveWebhook(body, auth));
    assert.equal(stream.events.length, 1, 'the event was appended before the failure');
    const retry = await bridge.receiveWebhook(body, auth);
    assert.equal(retry.status, 'processed');
    assert.equal(stream.events.length, 1, 'the retry deduped in the stream');
    assert.deepEqual(lifecycle.ended, ['cs_1']);
  });

  it('a finished earlier instance of the room ends nothing', async () => {
    const { store, lifecycle, bridge } = setup();
    await store.bindRoom('cs_1', 'lifeos-cs_1');
    await store.noteRoomSid('cs_1', 'RM_new', Date.now());
    const [body, auth] = await signed(
      webhookEvent('room_finished', { room: { sid: 'RM_old', name: 'lifeos-cs_1' } }),
    );
    assert.equal((await bridge.receiveWebhook(body, auth)).status, 'processed');
    assert.deepEqual(lifecycle.ended, []);
  });

  it('event ids stay valid for any provider id (hashed when they would not be)', () => {
    assert.equal(webhookEventId('EV_abc'), 'lk.EV_abc');
    assert.match(webhookEventId('weird id/with spaces'), /^lk\.h\.[0-9a-f]{48}$/);
    assert.match(webhookEventId('x'.repeat(200)), /^lk\.h\./);
  });

  it('long provider strings are cut at 256 characters, never inside a character', () => {
    const identity = `${'a'.repeat(255)}\u{1F600}`; // the emoji's two halves are units 256 and 257
    // the receiver's type: what WebhookReceiver.receive gives the bridge
    const event = webhookEvent('participant_joined', {
      room: { sid: 'RM_1', name: 'r' },
      participant: { sid: 'PA_1', identity },
    }) as unknown as SdkWebhookEvent;
    const translation = translate(event, roomOf(event));
    assert.ok('payload' in translation);
    const clipped = (translation.payload as { identity: string }).identity;
    assert.equal(clipped, 'a'.repeat(255), 'the whole emoji is dropped, not half of it');
    assert.doesNotMatch(clipped, /[\uD800-\uDFFF]/, 'no lone surrogate');
  });

  it('reconciled event ids are the same for every node with the secret, and sealed: no client can make one', () => {
    const id = reconciledEventId(new EventIdSeal('s1'), 'RM_1', 'PA_1', 'left');
    assert.match(id, /^lk\.rc\.RM_1\.PA_1\.left\.[A-Za-z0-9_-]{16}$/);
    assert.equal(reconciledEventId(new EventIdSeal('s1'), 'RM_1', 'PA_1', 'left'), id, 'deterministic');
    assert.notEqual(reconciledEventId(new EventIdSeal('s2'), 'RM_1', 'PA_1', 'left'), id, 'keyed');
    assert.notEqual(reconciledEventId(new EventIdSeal('s1'), 'RM_1', 'PA_1', 'joined'), id);
    assert.match(
      reconciledEventId(new EventIdSeal('s1'), 'RM_1', 'x'.repeat(200), 'left'),
      /^lk\.h\.[0-9a-f]{48}\./,
    );
    // valid and under 128 characters, but too long for the MAC after it: hashed too
    const long = reconciledEventId(new EventIdSeal('s1'), 'RM_1', 'x'.repeat(100), 'left');
    assert.match(long, /^lk\.h\.[0-9a-f]{48}\./);
    assert.ok(long.length <= 128);
  });
});

describe('LiveKit reconciler lease', () => {
  it('only the lease holder reconciles; the other node skips until the lease lapses', async () => {
    const clock = new ManualClock(Date.now());
    const store = new MemoryLiveKitStore(clock);
    const calls: string[] = [];
    const rooms: RoomProvider = {
      createRoom: async () => ({ sid: 'RM_1', name: 'r' }),
      listRooms: async (names) => {
        calls.push(`list ${names.length}`);
        return [{ sid: 'RM_1', name: 'r' }];
      },
      listParticipants: async () => [],
    };
    const deps = {
      store,
      rooms,
      lifecycle: new FakeLifecycle(),
      events: new FakeStream(),
      clock,
      logger: silentLogger(),
      metrics: new Metrics(),
      eventIds: new EventIdSeal('test'),
    };
    const options = { intervalMs: 0, maxRoomsPerTick: 10, concurrency: 2, graceMs: 0, retentionS: 60 };
    const a = new Reconciler({ ...options, nodeId: 'a' }, deps);
    const b = new Reconciler({ ...options, nodeId: 'b' }, deps);
    await store.bindRoom('cs_1', 'r');
    await store.markLive('cs_1');
    assert.equal((await a.tick()).skipped, undefined);
    assert.equal((await b.tick()).skipped, 'lease');
    assert.equal((await a.tick()).skipped, undefined, 'the holder keeps it');
    clock.advance(60_000);
    assert.equal((await b.tick()).skipped, undefined, 'taken over once it lapsed');
    assert.equal(calls.length, 3);
  });
});

describe('LiveKit reconciler metrics', () => {
  it('counts the corrections it appends (once each) and the RoomService calls that failed', async () => {
    const clock = new ManualClock(Date.now());
    const store = new MemoryLiveKitStore(clock);
    const metrics = new Metrics();
    let listing: ParticipantInfo[] | Error = [new ParticipantInfo({ sid: 'PA_1', identity: 'user:a' })];
    const rooms = countingRoomErrors(
      {
        createRoom: async () => ({ sid: 'RM_1', name: 'r' }),
        listRooms: async () => [{ sid: 'RM_1', name: 'r' }],
        listParticipants: async () => {
          if (listing instanceof Error) throw listing;
          return listing;
        },
      },
      metrics,
    );
    const stream = new FakeStream();
    const reconciler = new Reconciler(
      { nodeId: 'a', intervalMs: 0, maxRoomsPerTick: 10, concurrency: 1, graceMs: 0, retentionS: 60 },
      {
        store,
        rooms,
        lifecycle: new FakeLifecycle(),
        events: stream,
        eventIds: new EventIdSeal('test'),
        clock,
        logger: silentLogger(),
        metrics,
      },
    );
    await store.bindRoom('cs_1', 'r');
    await store.markLive('cs_1');
    const counts = async () => ({
      joined: await count(metrics.livekitReconcileCorrections, { kind: 'joined' }),
      left: await count(metrics.livekitReconcileCorrections, { kind: 'left' }),
      createRoom: await count(metrics.livekitRoomServiceErrors, { op: 'createRoom' }),
      listRooms: await count(metrics.livekitRoomServiceErrors, { op: 'listRooms' }),
      listParticipants: await count(metrics.livekitRoomServiceErrors, { op: 'listParticipants' }),
    });
    assert.deepEqual(await counts(), {
      joined: 0,
      left: 0,
      createRoom: 0,
      listRooms: 0,
      listParticipants: 0,
    });

    assert.equal((await reconciler.tick()).joined, 1, 'a participant no webhook announced');
    listing = [];
    clock.advance(1_000);
    assert.equal((await reconciler.tick()).left, 1, 'gone without a webhook');
    const again = await reconciler.tick();
    assert.deepEqual([again.joined, again.left], [0, 0]);
    listing = new Error('LiveKit is down (fake)');
    assert.equal((await reconciler.tick()).errors, 1);

    assert.deepEqual(await counts(), {
      joined: 1,
      left: 1,
      createRoom: 0,
      listRooms: 0,
      listParticipants: 1,
    });
    assert.deepEqual(
      stream.events.map((e) => e.type),
      ['call.participant_joined', 'call.participant_left'],
    );
  });
});
