import { Type, type TSchema } from '@sinclair/typebox';
import { closed, DurationMs, Id, OneOf, Text, Token, type Refinements } from './common.ts';

/**
 * `call.*` — the call's lifecycle, its participants and their media tracks. Only the
 * gateway emits these (from its own call session service and from translated LiveKit
 * webhooks). `call.ended` and `call.failed` are terminal: nothing follows them in the
 * session's stream.
 *
 * Lifecycle order: created → connecting → activated → ending → ended, with `failed`
 * possible from any state before `ended`. A call may skip states (a call that fails
 * while connecting never activates; a provider-side hang-up may go straight to ended).
 */

const Provider = Type.String({
  pattern: '^[a-z][a-z0-9_-]{0,31}$',
  description: 'Media provider that carries the call ("livekit" in v1).',
});
const ProviderRef = (description: string) => Type.String({ minLength: 1, maxLength: 256, description });

const ParticipantKind = OneOf(
  ['user', 'agent', 'sip', 'ingress', 'egress'],
  'What the participant is: a person on a client app, an AI agent, a phone leg, or a media ingress/egress.',
);
const ParticipantIdentity = (description: string) =>
  Type.String({ minLength: 1, maxLength: 256, description });
const TrackKind = OneOf(['audio', 'video'], 'Media kind of the track.');
const TrackSource = OneOf(
  ['microphone', 'camera', 'screen_share', 'screen_share_audio', 'unknown'],
  'Where the track comes from, as the provider reports it.',
);

const ParticipantId = Id(
  'Provider participant id of this join (LiveKit participant sid); a rejoin gets a new one.',
);

const TrackPayload = (description: string) =>
  Type.Object(
    {
      trackId: Id('Provider track id (LiveKit track sid).'),
      participantIdentity: ParticipantIdentity('Identity of the participant that owns the track.'),
      participantId: Type.Optional(ParticipantId),
      kind: TrackKind,
      source: Type.Optional(TrackSource),
    },
    closed(description),
  );

export const CallEvents = {
  'call.created': Type.Object(
    { state: Type.Literal('created', { description: 'Always "created".' }) },
    closed('The call session exists; no media yet.'),
  ),
  'call.connecting': Type.Object(
    {
      provider: Provider,
      providerRoomId: Type.Optional(
        ProviderRef('Provider room the gateway is creating or joining, when known.'),
      ),
    },
    closed('The gateway is setting up media with the provider.'),
  ),
  'call.activated': Type.Object(
    {
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
      reason: Type.Optional(Text(256, 'Why the call is ending.')),
      initiatedBy: Type.Optional(
        OneOf(['user', 'agent', 'operator', 'service', 'gateway', 'provider'], 'Who asked the call to end.'),
      ),
    },
    closed('Hang-up has started; the gateway is tearing media down. Final billing events may follow.'),
  ),
  'call.ended': Type.Object(
    {
      reason: Type.Optional(Text(256, 'Why the call ended.')),
      durationMs: Type.Optional(
        DurationMs('Time from activation to end; absent if the call never activated.'),
      ),
    },
    closed('Terminal: the call ended normally. Nothing follows it in the stream.'),
  ),
  'call.failed': Type.Object(
    {
      reason: Text(256, 'What went wrong, for people.'),
      code: Type.Optional(Token('Machine-readable failure code, e.g. "provider_unavailable".')),
    },
    closed('Terminal: the call failed. Nothing follows it in the stream.'),
  ),
  'call.participant.joined': Type.Object(
    {
      participantId: ParticipantId,
      identity: ParticipantIdentity(
        'Participant identity, stable across rejoins (the token subject or agent name).',
      ),
      kind: Type.Optional(ParticipantKind),
      name: Type.Optional(Text(256, 'Display name.')),
    },
    closed("A participant joined the call's room."),
  ),
  'call.participant.left': Type.Object(
    {
      participantId: ParticipantId,
      identity: ParticipantIdentity('Participant identity, stable across rejoins.'),
      kind: Type.Optional(ParticipantKind),
      reason: Type.Optional(Text(256, 'Why the participant left, as the provider reports it.')),
    },
    closed("A participant left the call's room."),
  ),
  'call.track.published': TrackPayload('A participant published a media track.'),
  'call.track.unpublished': TrackPayload('A participant stopped publishing a media track.'),
} satisfies Record<string, TSchema>;

export const CallRefinements: Refinements<typeof CallEvents> = {};
