import { Type, type TSchema } from '@sinclair/typebox';
import { closed, Id, type Refinement, type Refinements } from './common.ts';

/**
 * `transcript.*` — speech to text, segment by segment (PROTOCOL.md §1). Published by
 * `agent` and `service` tokens, or by the gateway when it translates a provider's
 * transcription.
 *
 * Supersession: within a session, a segment is identified by `segmentId`; a higher
 * `revision` supersedes a lower one, and a `transcript.final` supersedes every
 * `transcript.partial` of its segment. Consumers keep, per segment, the final if any,
 * else the partial with the highest revision; the stream order (seq) does not decide.
 */

const TranscriptPayload = (description: string) =>
  Type.Object(
    {
      segmentId: Id('Segment this text belongs to; stable across its revisions.'),
      revision: Type.Integer({
        minimum: 0,
        description: 'Revision of the segment; higher supersedes lower.',
      }),
      text: Type.String({
        maxLength: 16_384,
        description: 'Text of the segment at this revision; may be empty.',
      }),
      speaker: Type.Optional(
        Type.String({
          minLength: 1,
          maxLength: 128,
          description: 'Who spoke: participant identity or a label.',
        }),
      ),
      startMs: Type.Optional(
        Type.Integer({
          minimum: 0,
          description: 'Start of the segment, in ms from the start of the call audio.',
        }),
      ),
      endMs: Type.Optional(
        Type.Integer({
          minimum: 0,
          description: 'End of the segment, in ms from the start of the call audio; ≥ startMs.',
        }),
      ),
      language: Type.Optional(
        Type.String({
          pattern: '^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$',
          maxLength: 35,
          description: 'BCP 47 language tag of the text, e.g. "en-US".',
        }),
      ),
      confidence: Type.Optional(
        Type.Number({ minimum: 0, maximum: 1, description: 'Recogniser confidence, 0..1.' }),
      ),
    },
    closed(description),
  );

export const TranscriptEvents = {
  'transcript.partial': TranscriptPayload(
    'Interim text of a segment; a later revision or the final replaces it.',
  ),
  'transcript.final': TranscriptPayload(
    'Settled text of a segment; supersedes every partial of that segment.',
  ),
} satisfies Record<string, TSchema>;

const endNotBeforeStart: Refinement<(typeof TranscriptEvents)['transcript.partial']> = (p) =>
  p.startMs !== undefined && p.endMs !== undefined && p.endMs < p.startMs
    ? 'endMs: must be ≥ startMs'
    : undefined;

export const TranscriptRefinements: Refinements<typeof TranscriptEvents> = {
  'transcript.partial': endNotBeforeStart,
  'transcript.final': endNotBeforeStart,
};
