import { Type, type TSchema } from '@sinclair/typebox';
import {
  badTimestamp,
  closed,
  DurationMs,
  Id,
  OneOf,
  Text,
  Timestamp,
  Token,
  type Refinements,
} from './common.ts';

/**
 * `call.*` — the call's lifecycle, its participants and their media tracks. Only the
 * gateway emits these (from its own call session service and from translated LiveKit
 * webhooks). `call.ended` and `call.failed` are terminal: nothing follows them in the
 * session's stream.
 *
 * Lifecycle order: created → connecting → activated → ending → ended, with `failed`
 * possible from any state before `ended`. A call may skip states (a call that fails
 * while connecting never activates; a provider-side hang-up may go straight to ended).
 * The rules of the moves are src/calls/lifecycle.ts (docs/call-sessions.md).
 */

const Provider = Type.String({
  pattern: '^[a-z][a-z0-9_-]{0,31}$',
  description: 'Media provider that carries the call ("livekit" in v1).',
});
const ProviderRef = (description: string) => Type.String({ minLength: 1, maxLength: 256, description });

const ParticipantKind = OneOf(
  ['user', 'agent', 'sip', 'ingress', 'egress', 'connector', 'bridge'],
  'What the participant is: a person on a client app, an AI agent, a phone leg, a media ingress/egress, or a LiveKit connector/bridge.',
);
const ParticipantIdentity = (description: string) =>
  Type.String({ minLength: 1, maxLength: 256, description });
const TrackKind = OneOf(['audio', 'video'], 'Media kind of the track.');
const TrackSource = OneOf(
  ['microphone', 'camera', 'screen_share', 'screen_share_audio', 'unknown'],
  'Where the track comes from, as the provider reports it.',
);

/**
 * Every lifecycle event names the state it announces and the session's version after the
 * change (the call session service always sets both; optional so events valid before stay
 * valid).
 */
const LifecycleState = <S extends string>(state: S) =>
  Type.Optional(Type.Literal(state, { description: `The session's state after the change: "${state}".` }));
const SessionVersion = Type.Optional(
  Type.Integer({ minimum: 1, description: "The session's version after the change (1 at creation)." }),
);

const ParticipantId = Id(
  'Provider participant id of this join (LiveKit participant sid); a rejoin gets a new one.',
);

// ── provider (LiveKit) events: participants, tracks, the room, recordings ─────────
// Translated from LiveKit webhooks (docs/livekit.md). Each keeps the provider's ids, so
// a consumer can correlate with LiveKit's own records, and `providerEventId`, the
// webhook's id. LiveKit delivers webhooks with retries and gaps and without an order
// between rooms, participants and egress: a participant id (sid) never joins twice, so
// a `call.participant_left` is final for its `participantId` whatever came before.

const RoomId = Id('Provider room id (LiveKit room sid); a room closed and reopened gets a new one.');
const RoomName = ProviderRef("Provider room name (the session's LiveKit room).");
const ProviderEventId = Id(
  'Id of the provider event (LiveKit webhook id) this was translated from; absent on reconciled corrections.',
);
const Reconciled = Type.Boolean({
  description:
    'True when the gateway found this by comparing its state with the provider (a webhook was lost or late), not from a webhook.',
});
const ProviderEventTime = Timestamp('When the provider says the event happened (webhook `createdAt`).');

/** Where a translated event came from. */
const EventRef = {
  providerEventId: Type.Optional(ProviderEventId),
  providerTs: Type.Optional(ProviderEventTime),
};

/** Fields every translated participant, track and recording event may carry. */
const ProviderFields = {
  roomId: Type.Optional(RoomId),
  roomName: Type.Optional(RoomName),
  ...EventRef,
};

const ParticipantFields = {
  participantId: ParticipantId,
  identity: ParticipantIdentity(
    'Participant identity, stable across rejoins (the token subject or agent name).',
  ),
  kind: Type.Optional(ParticipantKind),
  name: Type.Optional(Text(256, 'Display name.')),
  ...ProviderFields,
};

const TrackPayload = (description: string) =>
  Type.Object(
    {
      trackId: Id('Provider track id (LiveKit track sid).'),
      participantIdentity: ParticipantIdentity('Identity of the participant that owns the track.'),
      participantId: Type.Optional(ParticipantId),
      kind: TrackKind,
      source: Type.Optional(TrackSource),
      name: Type.Optional(Text(256, 'Track name, as the publisher set it.')),
      ...ProviderFields,
    },
    closed(description),
  );

const RoomPayload = (description: string) =>
  Type.Object({ roomId: RoomId, roomName: RoomName, ...EventRef }, closed(description));

const RecordingStatus = OneOf(
  ['starting', 'active', 'ending', 'complete', 'failed', 'aborted', 'limit_reached'],
  'Egress status as LiveKit reports it (EGRESS_* without the prefix).',
);

const RecordingPayload = (description: string) =>
  Type.Object(
    {
      egressId: Id('Provider recording id (LiveKit egress id).'),
      status: RecordingStatus,
      startedAt: Type.Optional(Timestamp('When the recording started, per the provider.')),
      endedAt: Type.Optional(Timestamp('When the recording ended, per the provider.')),
      error: Type.Optional(Text(1024, 'Why the recording failed, as the provider reports it.')),
      ...ProviderFields,
    },
    closed(description),
  );

export const CallEvents = {
  'call.created': Type.Object(
    { state: Type.Literal('created', { description: 'Always "created".' }), version: SessionVersion },
    closed('The call session exists; no media yet.'),
  ),
  'call.connecting': Type.Object(
    {
      state: LifecycleState('connecting'),
      version: SessionVersion,
      provider: Provider,
      providerRoomId: Type.Optional(
        ProviderRef('Provider room the gateway is creating or joining, when known.'),
      ),
    },
    closed('The gateway is setting up media with the provider.'),
  ),
  'call.activated': Type.Object(
    {
      state: LifecycleState('active'),
      version: SessionVersion,
      provider: Provider,
      providerRoomId: ProviderRef('Provider room of the call (LiveKit room name).'),
      providerParticipantId: Type.Optional(
        ProviderRef("Provider id of the caller's participant, when known."),
      ),
      providerCallId: Type.Optional(ProviderRef('Provider call id, e.g. the SIP call id of a phone leg.')),
    },
    closed("Media is up: the call is live. Correlates the session with the provider's ids."),
  ),
  'call.ending': Type.Object(
    {
      state: LifecycleState('ending'),
      version: SessionVersion,
      reason: Type.Optional(Text(256, 'Why the call is ending.')),
      initiatedBy: Type.Optional(
        OneOf(['user', 'agent', 'operator', 'service', 'gateway', 'provider'], 'Who asked the call to end.'),
      ),
    },
    closed('Hang-up has started; the gateway is tearing media down. Final billing events may follow.'),
  ),
  'call.ended': Type.Object(
    {
      state: LifecycleState('ended'),
      version: SessionVersion,
      reason: Type.Optional(Text(256, 'Why the call ended.')),
      durationMs: Type.Optional(
        DurationMs('Time from activation to end; absent if the call never activated.'),
      ),
    },
    closed('Terminal: the call ended normally. Nothing follows it in the stream.'),
  ),
  'call.failed': Type.Object(
    {
      state: LifecycleState('failed'),
      version: SessionVersion,
      reason: Text(256, 'What went wrong, for people.'),
      code: Type.Optional(Token('Machine-readable failure code, e.g. "provider_unavailable".')),
    },
    closed('Terminal: the call failed. Nothing follows it in the stream.'),
  ),
  'call.participant_joined': Type.Object(
    { ...ParticipantFields, reconciled: Type.Optional(Reconciled) },
    closed("A participant joined the call's room."),
  ),
  'call.participant_left': Type.Object(
    {
      ...ParticipantFields,
      reason: Type.Optional(Text(256, 'Why the participant left, as the provider reports it.')),
      reconciled: Type.Optional(Reconciled),
    },
    closed("A participant left the call's room. Final for its `participantId`."),
  ),
  'call.participant_connection_aborted': Type.Object(
    ParticipantFields,
    closed("A participant's connection failed before or while joining; it is not in the room."),
  ),
  'call.track_published': TrackPayload('A participant published a media track.'),
  'call.track_unpublished': TrackPayload('A participant stopped publishing a media track.'),
  'call.room_started': RoomPayload("The call's provider room was opened."),
  'call.room_finished': RoomPayload(
    "The call's provider room closed (everyone left, or it was deleted); an active session ends after it.",
  ),
  'call.recording.started': RecordingPayload('A recording (LiveKit egress) of the call started.'),
  'call.recording.updated': RecordingPayload("A recording's status changed."),
  'call.recording.ended': RecordingPayload('A recording ended (complete, failed, aborted or limit reached).'),
} satisfies Record<string, TSchema>;

const providerTimes = (payload: Readonly<Record<string, unknown>>) =>
  badTimestamp(payload, ['providerTs', 'startedAt', 'endedAt']);

export const CallRefinements: Refinements<typeof CallEvents> = {
  'call.participant_joined': providerTimes,
  'call.participant_left': providerTimes,
  'call.participant_connection_aborted': providerTimes,
  'call.track_published': providerTimes,
  'call.track_unpublished': providerTimes,
  'call.room_started': providerTimes,
  'call.room_finished': providerTimes,
  'call.recording.started': providerTimes,
  'call.recording.updated': providerTimes,
  'call.recording.ended': providerTimes,
};
