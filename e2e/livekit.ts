/**
 * Live end-to-end check of the LiveKit bridge against a real LiveKit server:
 *
 *   LIVEKIT_URL=ws://127.0.0.1:7880 LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=… npm run e2e:livekit
 *
 * Without LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET it prints
 * `skipped: LIVEKIT_URL not set` and exits 0 (no LiveKit server can run on the build
 * machines, so CI skips it). With them it:
 *
 * 1. starts a gateway in this process on LIVEKIT_E2E_PORT (default 8090, all interfaces),
 *    whose webhook URL LiveKit must be configured to call with the same key:
 *    `http://<this host>:<port>/v1/webhooks/livekit` (docs/livekit.md, "Webhook setup");
 * 2. creates a session, asks the gateway for two LiveKit tokens (an agent and the owner),
 *    and moves the session to `active`;
 * 3. joins both with @livekit/rtc-node: the agent publishes an audio track (a tone) and a
 *    data message, the owner receives audio frames and the message;
 * 4. watches the session's stream over the realtime protocol and waits for the translated
 *    events (participants joined, the track published), then deletes the room and waits
 *    for `call.room_finished` and `call.ended`;
 * 5. writes what it saw to e2e/evidence/livekit-<time>.json and exits 0 only if every
 *    check passed.
 *
 * @livekit/rtc-node (a dev dependency, with a native FFI binary per platform) is imported
 * dynamically and typed by the small interface below, so typecheck and lint pass where
 * it is not installed.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import { startGateway, type Gateway } from '../src/app.ts';
import { loadConfig } from '../src/config/load.ts';
import { LiveKitRoomService } from '../src/livekit/room-service.ts';
import { createLogger } from '../src/observability/logger.ts';

const { LIVEKIT_URL = '', LIVEKIT_API_KEY = '', LIVEKIT_API_SECRET = '' } = process.env;

/** The part of @livekit/rtc-node this script uses. */
interface RtcNode {
  Room: new () => RtcRoom;
  AudioSource: new (sampleRate: number, channels: number) => { captureFrame(frame: unknown): Promise<void> };
  AudioFrame: new (
    data: Int16Array,
    sampleRate: number,
    channels: number,
    samplesPerChannel: number,
  ) => unknown;
  LocalAudioTrack: { createAudioTrack(name: string, source: unknown): { sid?: string } };
  AudioStream: new (track: unknown) => AsyncIterable<{ samplesPerChannel: number }>;
  TrackPublishOptions: new (init: { source: number }) => unknown;
  TrackSource: { SOURCE_MICROPHONE: number };
  TrackKind: { KIND_AUDIO: number };
  dispose(): Promise<void>;
}
interface RtcRoom {
  connect(url: string, token: string, opts?: { autoSubscribe?: boolean }): Promise<void>;
  disconnect(): Promise<void>;
  on(event: string, listener: (...args: any[]) => void): void;
  localParticipant?: {
    identity: string;
    publishTrack(track: unknown, options: unknown): Promise<{ sid?: string }>;
    publishData(data: Uint8Array, options: { reliable?: boolean; topic?: string }): Promise<void>;
  };
}

interface Check {
  name: string;
  ok: boolean;
  detail?: unknown;
}

async function main(): Promise<number> {
  if (LIVEKIT_URL === '' || LIVEKIT_API_KEY === '' || LIVEKIT_API_SECRET === '') {
    console.log('skipped: LIVEKIT_URL not set');
    return 0;
  }
  const specifier = '@livekit/rtc-node';
  let rtc: RtcNode;
  try {
    rtc = (await import(specifier)) as RtcNode;
  } catch (err) {
    console.error(`e2e:livekit needs ${specifier} (a dev dependency: npm ci): ${(err as Error).message}`);
    return 1;
  }

  const port = process.env.LIVEKIT_E2E_PORT ?? '8090';
  const { config } = loadConfig({
    ...process.env,
    HOST: process.env.LIVEKIT_E2E_HOST ?? '0.0.0.0',
    PORT: port,
    AUTH_JWT_SECRET: randomBytes(32).toString('base64url'),
    LIVEKIT_RECONCILE_INTERVAL_MS: '2000',
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
  });
  const gateway = await startGateway({
    config,
    logger: createLogger({ level: config.LOG_LEVEL, nodeId: 'e2e' }),
  });
  const base = `http://127.0.0.1:${gateway.port}`;
  const checks: Check[] = [];
  const check = (name: string, ok: boolean, detail?: unknown): void => {
    checks.push({ name, ok, ...(detail !== undefined ? { detail } : {}) });
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}`);
  };
  const evidence: Record<string, unknown> = {
    startedAt: new Date().toISOString(),
    livekitHost: new URL(LIVEKIT_URL).host,
    webhookUrl: `http://<this host>:${gateway.port}/v1/webhooks/livekit`,
  };
  const stream: Array<{ seq: number; type: string; payload: Record<string, unknown> }> = [];
  let ws: WebSocket | undefined;
  const rooms: RtcRoom[] = [];
  try {
    const owner = await gateway.jwt.sign({ sub: 'e2e-owner', tid: 'e2e', role: 'user' });
    const agent = await gateway.jwt.sign({ sub: 'e2e-agent', tid: 'e2e', role: 'agent' });
    const session = (await http(base, 'POST', '/v1/call/sessions', owner)) as { id: string };
    const ownerGrant = (await http(
      base,
      'POST',
      `/v1/call/sessions/${session.id}/livekit-token`,
      owner,
    )) as Grant;
    const agentGrant = (await http(
      base,
      'POST',
      `/v1/call/sessions/${session.id}/livekit-token`,
      agent,
    )) as Grant;
    check('both tokens name the same room', ownerGrant.room === agentGrant.room, ownerGrant.room);
    Object.assign(evidence, {
      sessionId: session.id,
      room: ownerGrant.room,
      identities: [ownerGrant.identity, agentGrant.identity],
    });
    const transitions = `/v1/call/sessions/${session.id}/transitions`;
    await http(base, 'POST', transitions, owner, { to: 'connecting', provider: 'livekit' });
    await http(base, 'POST', transitions, owner, {
      to: 'active',
      provider: 'livekit',
      providerRoomId: ownerGrant.room,
    });

    ws = watch(gateway, session.id, owner, stream);

    // the owner listens first, so it sees the agent's track and data
    const listener = new rtc.Room();
    rooms.push(listener);
    let audioFrames = 0;
    let dataReceived = '';
    const gotAudio = new Promise<void>((resolve) => {
      listener.on('trackSubscribed', (track: { kind?: number }) => {
        if (track.kind !== rtc.TrackKind.KIND_AUDIO) return;
        void (async () => {
          for await (const frame of new rtc.AudioStream(track)) {
            if (frame.samplesPerChannel > 0 && ++audioFrames >= 10) break;
          }
          resolve();
        })();
      });
    });
    const gotData = new Promise<void>((resolve) => {
      listener.on('dataReceived', (payload: Uint8Array) => {
        dataReceived = Buffer.from(payload).toString('utf8');
        resolve();
      });
    });
    await listener.connect(ownerGrant.url ?? LIVEKIT_URL, ownerGrant.token, { autoSubscribe: true });

    const speaker = new rtc.Room();
    rooms.push(speaker);
    await speaker.connect(agentGrant.url ?? LIVEKIT_URL, agentGrant.token, { autoSubscribe: true });
    const source = new rtc.AudioSource(48_000, 1);
    const track = rtc.LocalAudioTrack.createAudioTrack('e2e-tone', source);
    const publication = await speaker.localParticipant!.publishTrack(
      track,
      new rtc.TrackPublishOptions({ source: rtc.TrackSource.SOURCE_MICROPHONE }),
    );
    const tone = playTone(rtc, source, 3_000);
    await sleep(500);
    const message = `hello from ${agentGrant.identity} ${Date.now()}`;
    await speaker.localParticipant!.publishData(new TextEncoder().encode(message), {
      reliable: true,
      topic: 'e2e',
    });

    await Promise.race([Promise.all([gotAudio, gotData]), sleep(15_000)]);
    await tone;
    check('the owner received audio frames from the agent', audioFrames >= 10, { audioFrames });
    check('the owner received the agent’s data message', dataReceived === message, { dataReceived });

    const seen = await waitFor(stream, 20_000, (events) => {
      const joined = new Set(
        events.filter((e) => e.type === 'call.participant_joined').map((e) => e.payload.identity),
      );
      return (
        joined.has(ownerGrant.identity) &&
        joined.has(agentGrant.identity) &&
        events.some(
          (e) => e.type === 'call.track_published' && e.payload.participantIdentity === agentGrant.identity,
        )
      );
    });
    check('the stream shows both participants joined and the agent’s track published', seen);
    const trackEvent = stream.find((e) => e.type === 'call.track_published');
    check(
      'the track event keeps LiveKit’s ids',
      trackEvent !== undefined &&
        trackEvent.payload.trackId === publication.sid &&
        typeof trackEvent.payload.roomId === 'string',
      trackEvent?.payload,
    );

    for (const room of rooms.splice(0)) await room.disconnect();
    // the SDK's own default timeout (10 s), as when this called RoomServiceClient directly
    const roomService = new LiveKitRoomService(LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET, {
      requestTimeoutS: 10,
    });
    await roomService.deleteRoom(ownerGrant.room);
    const ended = await waitFor(stream, 20_000, (events) =>
      ['call.room_finished', 'call.ended'].every((t) => events.some((e) => e.type === t)),
    );
    check('deleting the room ends the session (call.room_finished, call.ended)', ended);
  } catch (err) {
    check('the run completed', false, (err as Error).stack ?? String(err));
  } finally {
    for (const room of rooms) await room.disconnect().catch(() => {});
    ws?.close();
    await gateway.shutdown();
    await rtc.dispose().catch(() => {});
  }

  const passed = checks.every((c) => c.ok);
  Object.assign(evidence, { finishedAt: new Date().toISOString(), passed, checks, stream });
  mkdirSync(new URL('./evidence/', import.meta.url), { recursive: true });
  const file = new URL(
    `./evidence/livekit-${new Date().toISOString().replace(/[:.]/g, '-')}.json`,
    import.meta.url,
  );
  writeFileSync(file, `${JSON.stringify(evidence, null, 2)}\n`);
  console.log(`${passed ? 'passed' : 'FAILED'}: evidence in ${file.pathname}`);
  return passed ? 0 : 1;
}

interface Grant {
  token: string;
  url: string | null;
  room: string;
  identity: string;
}

async function http(
  base: string,
  method: string,
  path: string,
  token: string,
  body?: unknown,
): Promise<unknown> {
  const res = await fetch(base + path, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text) as unknown;
}

/** Subscribes to the session from seq 1 and records every event (acking as it goes). */
function watch(
  gateway: Gateway,
  sessionId: string,
  token: string,
  into: Array<{ seq: number; type: string; payload: Record<string, unknown> }>,
): WebSocket {
  const ws = new WebSocket(`ws://127.0.0.1:${gateway.port}/v1/realtime`, 'lifeos.v1.json');
  ws.on('open', () => ws.send(JSON.stringify({ op: 'hello', sessionId, token, after: 0 })));
  ws.on('message', (data: Buffer) => {
    const frame = JSON.parse(data.toString()) as {
      op: string;
      seq?: number;
      event?: { type: string; payload: Record<string, unknown> };
    };
    if (frame.op === 'ev' && frame.event && frame.seq !== undefined) {
      into.push({ seq: frame.seq, type: frame.event.type, payload: frame.event.payload });
      ws.send(JSON.stringify({ op: 'ack', seq: frame.seq }));
    }
  });
  return ws;
}

async function waitFor<T>(events: T[], timeoutMs: number, done: (events: T[]) => boolean): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (done(events)) return true;
    await sleep(200);
  }
  return done(events);
}

/** A 440 Hz tone in 10 ms frames, in real time. */
async function playTone(
  rtc: RtcNode,
  source: { captureFrame(frame: unknown): Promise<void> },
  ms: number,
): Promise<void> {
  const rate = 48_000;
  const samples = rate / 100;
  for (let t = 0, n = 0; t < ms; t += 10) {
    const data = new Int16Array(samples);
    for (let i = 0; i < samples; i++, n++)
      data[i] = Math.round(8000 * Math.sin((2 * Math.PI * 440 * n) / rate));
    await source.captureFrame(new rtc.AudioFrame(data, rate, 1, samples));
  }
}

process.exit(await main());
