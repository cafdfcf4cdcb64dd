import { httpJson } from '../../chaos/toolkit/http.ts';
/**
 * LiveKit test helpers: webhooks signed exactly the way LiveKit signs them (an
 * AccessToken whose `sha256` claim is the base64 SHA-256 of the body, sent raw in
 * `Authorization`), built with @livekit/protocol's WebhookEvent; and the raw POST that
 * delivers them byte for byte.
 */
import { createHash } from 'node:crypto';
import {
  EgressInfo,
  EgressStatus,
  ParticipantInfo,
  ParticipantInfo_Kind,
  ParticipantInfo_State,
  Room,
  TrackInfo,
  TrackSource,
  TrackType,
  WebhookEvent,
  DisconnectReason,
} from '@livekit/protocol';
import { AccessToken } from 'livekit-server-sdk';

export {
  DisconnectReason,
  EgressInfo,
  EgressStatus,
  ParticipantInfo,
  ParticipantInfo_Kind,
  ParticipantInfo_State,
  Room,
  TrackInfo,
  TrackSource,
  TrackType,
  WebhookEvent,
};

export const LK_KEY = 'APIlifeosTestKey';
export const LK_SECRET = 'lk-test-secret-0123456789abcdef0123456789abcdef';

/** The LiveKit env of a test gateway (no LIVEKIT_URL: tokens and webhooks only). */
export const LK_ENV = { LIVEKIT_API_KEY: LK_KEY, LIVEKIT_API_SECRET: LK_SECRET } as const;

/** What LiveKit puts in `Authorization` for `body`. */
export async function signWebhook(body: string | Buffer, key = LK_KEY, secret = LK_SECRET): Promise<string> {
  const at = new AccessToken(key, secret, { ttl: '5m' });
  at.sha256 = createHash('sha256').update(body).digest('base64');
  return at.toJwt();
}

let webhookN = 0;

/** A unique webhook id. */
export function webhookId(): string {
  return `EV_${process.pid}_${++webhookN}_${Math.random().toString(36).slice(2, 8)}`;
}

/** A webhook event (createdAt now unless given), as LiveKit serialises it. */
export function webhookEvent(
  event: string,
  fields: Partial<{
    id: string;
    createdAtS: number;
    /** creationTime: seconds, as LiveKit sends it in every webhook's room. */
    room: { sid: string; name: string; creationTime?: bigint };
    participant: Partial<{
      sid: string;
      identity: string;
      name: string;
      kind: ParticipantInfo_Kind;
      state: ParticipantInfo_State;
      disconnectReason: DisconnectReason;
    }>;
    track: Partial<{ sid: string; type: TrackType; source: TrackSource; name: string }>;
    egress: Partial<{
      egressId: string;
      roomId: string;
      roomName: string;
      status: EgressStatus;
      startedAtNs: bigint;
      endedAtNs: bigint;
      error: string;
    }>;
  }> = {},
): WebhookEvent {
  const e = fields.egress;
  return new WebhookEvent({
    event,
    id: fields.id ?? webhookId(),
    createdAt: BigInt(fields.createdAtS ?? Math.floor(Date.now() / 1000)),
    ...(fields.room ? { room: new Room(fields.room) } : {}),
    ...(fields.participant ? { participant: new ParticipantInfo(fields.participant) } : {}),
    ...(fields.track ? { track: new TrackInfo(fields.track) } : {}),
    ...(e
      ? {
          egressInfo: new EgressInfo({
            egressId: e.egressId ?? 'EG_1',
            roomId: e.roomId ?? '',
            roomName: e.roomName ?? '',
            status: e.status ?? EgressStatus.EGRESS_ACTIVE,
            startedAt: e.startedAtNs ?? 0n,
            endedAt: e.endedAtNs ?? 0n,
            error: e.error ?? '',
          }),
        }
      : {}),
  });
}

/**
 * POSTs `body` to the gateway's webhook route byte for byte, with `authorization` as
 * given (omitted when undefined), the way LiveKit does (`application/webhook+json`).
 */
export async function postWebhook(
  baseUrl: string,
  body: string | Buffer,
  authorization: string | undefined,
): Promise<{ status: number; body: any }> {
  // The raw body goes out byte for byte: the signature covers exactly these bytes.
  return httpJson(baseUrl, 'POST', '/v1/webhooks/livekit', {
    body,
    timeoutMs: 10_000,
    headers: {
      'content-type': 'application/webhook+json',
      ...(authorization !== undefined ? { authorization } : {}),
    },
  });
}

/** Signs and delivers one event. */
export async function deliver(baseUrl: string, event: WebhookEvent): Promise<{ status: number; body: any }> {
  const body = event.toJsonString();
  return postWebhook(baseUrl, body, await signWebhook(body));
}
