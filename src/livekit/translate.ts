import { SEALED_NAME_MAX, type EventIdSeal } from '../auth/event-id-seal.ts';
import { createHash } from 'node:crypto';
import {
  EgressInfo,
  ParticipantInfo,
  ParticipantInfo_State,
  TrackInfo,
  TrackType,
  type WebhookEvent,
} from 'livekit-server-sdk';
import { EventIdPattern } from '../protocol/events/common.ts';
import type { EventType } from '../protocol/event-types.ts';
import { isoTimestamp } from '../protocol/envelope.ts';
import type { PresenceStatus } from './store.ts';

/**
 * LiveKit webhooks → canonical `call.*` events (docs/livekit.md has the table). Pure: no
 * I/O, no clock. Every event keeps the provider's ids (room sid and name, participant
 * sid and identity, track sid, egress id) and the webhook's id and time.
 */

/** What a webhook becomes: an event to append (maybe with a presence change), or nothing. */
export type Translation =
  | {
      type: EventType;
      payload: Record<string, unknown>;
      /** Participant events move presence first (see LiveKitStore.transitionParticipant). */
      presence?: { participantSid: string; identity: string; to: PresenceStatus };
    }
  | { ignore: string };

/** The provider ids of the room an event concerns. */
export interface RoomRef {
  roomSid: string;
  roomName: string;
}

const ID_MAX = 128;
const TEXT_MAX = 256;

/** The room a webhook names: its room, or for egress the room being recorded. */
export function roomOf(event: WebhookEvent): RoomRef {
  return {
    roomSid: event.room?.sid || event.egressInfo?.roomId || '',
    roomName: event.room?.name || event.egressInfo?.roomName || '',
  };
}

/** Webhook `createdAt` (seconds since the epoch, int64) in ms; NaN when absent. */
export function createdAtMs(event: WebhookEvent): number {
  const seconds = Number(event.createdAt);
  return seconds > 0 ? seconds * 1000 : Number.NaN;
}

export function translate(event: WebhookEvent, room: RoomRef): Translation {
  const ref = {
    ...(room.roomSid ? { roomId: clip(room.roomSid, ID_MAX) } : {}),
    ...(room.roomName ? { roomName: clip(room.roomName, TEXT_MAX) } : {}),
    ...(event.id ? { providerEventId: clip(event.id, ID_MAX) } : {}),
    ...(createdAtMs(event) > 0 ? { providerTs: isoTimestamp(createdAtMs(event)) } : {}),
  };
  switch (event.event) {
    case 'room_started':
    case 'room_finished':
      if (!room.roomSid || !room.roomName) return { ignore: 'room without sid or name' };
      return {
        type: event.event === 'room_started' ? 'call.room_started' : 'call.room_finished',
        payload: { ...ref, roomId: clip(room.roomSid, ID_MAX), roomName: clip(room.roomName, TEXT_MAX) },
      };
    case 'participant_joined':
    case 'participant_left':
    case 'participant_connection_aborted': {
      const p = event.participant;
      if (!p?.sid || !p.identity) return { ignore: 'participant without sid or identity' };
      const payload = participantPayload(p, ref);
      if (event.event === 'participant_joined') {
        return { type: 'call.participant_joined', payload, presence: presence(p, 'joined') };
      }
      if (event.event === 'participant_connection_aborted') {
        return { type: 'call.participant_connection_aborted', payload, presence: presence(p, 'left') };
      }
      const reason = disconnectReason(p);
      return {
        type: 'call.participant_left',
        payload: { ...payload, ...(reason ? { reason } : {}) },
        presence: presence(p, 'left'),
      };
    }
    case 'track_published':
    case 'track_unpublished': {
      const t = event.track;
      const p = event.participant;
      if (!t?.sid || !p?.identity) return { ignore: 'track without sid or owner' };
      const kind = t.type === TrackType.AUDIO ? 'audio' : t.type === TrackType.VIDEO ? 'video' : undefined;
      if (!kind) return { ignore: 'not an audio or video track' };
      const source = enumName(TrackInfo, 'source', t.source)?.toLowerCase();
      return {
        type: event.event === 'track_published' ? 'call.track_published' : 'call.track_unpublished',
        payload: {
          trackId: clip(t.sid, ID_MAX),
          participantIdentity: clip(p.identity, TEXT_MAX),
          ...(p.sid ? { participantId: clip(p.sid, ID_MAX) } : {}),
          kind,
          source: source && TRACK_SOURCES.has(source) ? source : 'unknown',
          ...(t.name ? { name: clip(t.name, TEXT_MAX) } : {}),
          ...ref,
        },
      };
    }
    case 'egress_started':
    case 'egress_updated':
    case 'egress_ended': {
      const e = event.egressInfo;
      if (!e?.egressId) return { ignore: 'egress without id' };
      const status = enumName(EgressInfo, 'status', e.status)
        ?.replace(/^EGRESS_/, '')
        .toLowerCase();
      if (!status || !RECORDING_STATUSES.has(status)) return { ignore: 'unknown egress status' };
      const type =
        event.event === 'egress_started'
          ? 'call.recording.started'
          : event.event === 'egress_updated'
            ? 'call.recording.updated'
            : 'call.recording.ended';
      return {
        type,
        payload: {
          egressId: clip(e.egressId, ID_MAX),
          status,
          ...nanosTime('startedAt', e.startedAt),
          ...nanosTime('endedAt', e.endedAt),
          ...(e.error ? { error: clip(e.error, 1024) } : {}),
          ...ref,
        },
      };
    }
    default:
      return { ignore: `event ${event.event || '(none)'} is not translated` };
  }
}

/**
 * A participant as LiveKit's RoomService lists it, for reconciliation. DISCONNECTED
 * participants are not in the room.
 */
export function isInRoom(p: ParticipantInfo): boolean {
  return p.state !== ParticipantInfo_State.DISCONNECTED;
}

/** The payload of a participant event the reconciler found (no webhook behind it). */
export function reconciledParticipantPayload(
  p: { sid: string; identity: string; info?: ParticipantInfo },
  room: RoomRef,
  to: PresenceStatus,
): Record<string, unknown> {
  const ref = {
    ...(room.roomSid ? { roomId: clip(room.roomSid, ID_MAX) } : {}),
    ...(room.roomName ? { roomName: clip(room.roomName, TEXT_MAX) } : {}),
  };
  const base = p.info
    ? participantPayload(p.info, ref)
    : { participantId: clip(p.sid, ID_MAX), identity: clip(p.identity, TEXT_MAX), ...ref };
  return { ...base, ...(to === 'left' ? { reason: 'not_in_room' } : {}), reconciled: true };
}

/** The stream eventId of a webhook: deterministic, so a retried webhook dedupes in the stream. */
export function webhookEventId(webhookId: string): string {
  return safeEventId(`lk.${webhookId}`);
}

/**
 * The stream eventId of a reconciled correction: the same on every node and every tick,
 * and sealed: room and participant sids are known to the room's participants, and one
 * who published this id first would make the correction a duplicate (see EventIdSeal).
 */
export function reconciledEventId(
  seal: EventIdSeal,
  roomSid: string,
  participantSid: string,
  to: PresenceStatus,
): string {
  return seal.seal(safeEventId(`lk.rc.${roomSid}.${participantSid}.${to}`, SEALED_NAME_MAX));
}

const EVENT_ID = new RegExp(EventIdPattern);

/** `id` if it is a valid eventId of at most `max` characters, else a hash of it that is. */
function safeEventId(id: string, max = 128): string {
  if (id.length <= max && EVENT_ID.test(id)) return id;
  return `lk.h.${createHash('sha256').update(id).digest('hex').slice(0, 48)}`;
}

const TRACK_SOURCES = new Set(['microphone', 'camera', 'screen_share', 'screen_share_audio', 'unknown']);
const RECORDING_STATUSES = new Set([
  'starting',
  'active',
  'ending',
  'complete',
  'failed',
  'aborted',
  'limit_reached',
]);
const PARTICIPANT_KINDS: Record<string, string> = {
  STANDARD: 'user',
  AGENT: 'agent',
  SIP: 'sip',
  INGRESS: 'ingress',
  EGRESS: 'egress',
  CONNECTOR: 'connector',
  BRIDGE: 'bridge',
};

function participantPayload(p: ParticipantInfo, ref: Record<string, string>): Record<string, unknown> {
  const kindName = enumName(ParticipantInfo, 'kind', p.kind);
  const kind = kindName === undefined ? undefined : PARTICIPANT_KINDS[kindName];
  return {
    participantId: clip(p.sid, ID_MAX),
    identity: clip(p.identity, TEXT_MAX),
    ...(kind ? { kind } : {}),
    ...(p.name ? { name: clip(p.name, TEXT_MAX) } : {}),
    ...ref,
  };
}

function presence(p: ParticipantInfo, to: PresenceStatus) {
  return { participantSid: p.sid, identity: p.identity, to };
}

function disconnectReason(p: ParticipantInfo): string | undefined {
  const name = enumName(ParticipantInfo, 'disconnectReason', p.disconnectReason);
  return name && name !== 'UNKNOWN_REASON' ? name.toLowerCase() : undefined;
}

/**
 * The protobuf name of an enum value, read from the message's own descriptor (so no
 * table here goes stale when LiveKit adds a value; an unknown number gives undefined).
 */
function enumName(
  type: { fields: { findJsonName(name: string): unknown } },
  field: string,
  value: number,
): string | undefined {
  const info = type.fields.findJsonName(field) as
    { kind: string; T?: { findNumber(no: number): { name: string } | undefined } } | undefined;
  return info?.kind === 'enum' ? info.T?.findNumber(value)?.name : undefined;
}

/** Egress times are int64 nanoseconds; 0 means unset. */
function nanosTime(field: string, nanos: bigint): Record<string, string> {
  if (nanos <= 0n) return {};
  const ms = Number(nanos / 1_000_000n);
  return Number.isFinite(ms) && ms > 0 && ms < 8.64e15 ? { [field]: isoTimestamp(ms) } : {};
}

/**
 * At most `max` UTF-16 units, never half a character: a cut between a surrogate pair
 * would store a lone surrogate, which JSON carries as `\ud83d` and MessagePack as U+FFFD,
 * so the two codecs' subscribers would get different values.
 */
function clip(value: string, max: number): string {
  if (value.length <= max) return value;
  const last = value.charCodeAt(max - 1);
  return value.slice(0, last >= 0xd800 && last <= 0xdbff ? max - 1 : max);
}
