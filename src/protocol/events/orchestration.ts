import { Type, type TSchema } from '@sinclair/typebox';
import {
  badTimestamp,
  closed,
  DurationMs,
  Id,
  OneOf,
  Severities,
  Text,
  Timestamp,
  Token,
  type Refinements,
} from './common.ts';

/**
 * `orchestration.action.*` — an action the call wants performed (book a slot, send a
 * message, transfer the call), with its safety gate and human confirmation.
 *
 * One action, one `actionId`, this life:
 *
 *   requested ─┬─────────────────────────────────────────────┬─→ completed
 *              ├─→ confirmation_required ─→ confirmed ───────┘└─→ failed
 *              │                        └─→ rejected (declined | expired)
 *              └─→ rejected (blocked | invalid | unsupported)
 *
 * `requested` may be published by `user`, `agent` and `service` tokens (PROTOCOL.md §1);
 * every later step is the gateway's own, so a client cannot confirm or complete an
 * action by publishing an event. A `blocked` rejection is accompanied by a
 * `safety.action.blocked` event carrying the safety detail.
 */

const ActionId = Id('Producer-chosen id of the action; every later step of the action carries it.');
const ActionName = Type.String({
  pattern: '^[A-Za-z][A-Za-z0-9_.:-]{0,127}$',
  description: 'Name of the action, e.g. "calendar.create_event".',
});
const ObjectOf = (description: string) =>
  Type.Record(Type.String(), Type.Unknown(), { maxProperties: 64, description });

export const OrchestrationEvents = {
  'orchestration.action.requested': Type.Object(
    {
      actionId: ActionId,
      action: ActionName,
      args: Type.Optional(ObjectOf('Arguments of the action, as the action defines them.')),
      segmentId: Type.Optional(Id('Transcript segment that prompted the request, if any.')),
    },
    closed('Someone asks for an action to be performed in the call.'),
  ),
  'orchestration.action.confirmation_required': Type.Object(
    {
      actionId: ActionId,
      action: ActionName,
      prompt: Text(1024, 'What to ask the person, spoken or shown, e.g. "Send the invoice to Ana?".'),
      risk: Type.Optional(OneOf([...Severities], 'How consequential the action is judged to be.')),
      expiresAt: Type.Optional(
        Timestamp('When an unanswered request is rejected as "expired"; a calendar-valid time.'),
      ),
    },
    closed('The action waits for a person to confirm it.'),
  ),
  'orchestration.action.confirmed': Type.Object(
    {
      actionId: ActionId,
      by: OneOf(['user', 'operator'], 'Who confirmed.'),
      channel: Type.Optional(OneOf(['voice', 'ui', 'dtmf'], 'How the confirmation was given.')),
    },
    closed('A person confirmed the action; it will now run.'),
  ),
  'orchestration.action.rejected': Type.Object(
    {
      actionId: ActionId,
      reason: OneOf(
        ['declined', 'expired', 'blocked', 'invalid', 'unsupported'],
        'declined: the person said no; expired: no answer in time; blocked: a safety policy refused it; ' +
          'invalid: bad arguments; unsupported: no such action here.',
      ),
      message: Type.Optional(Text(512, 'Explanation for people.')),
    },
    closed('The action will not run.'),
  ),
  'orchestration.action.completed': Type.Object(
    {
      actionId: ActionId,
      result: Type.Optional(ObjectOf('What the action returned, as the action defines it.')),
      durationMs: Type.Optional(DurationMs('How long the action ran.')),
    },
    closed('The action ran and succeeded.'),
  ),
  'orchestration.action.failed': Type.Object(
    {
      actionId: ActionId,
      code: Token('Machine-readable failure code, e.g. "timeout" or "upstream_error".'),
      message: Type.Optional(Text(512, 'Explanation for people.')),
      retryable: Type.Optional(
        Type.Boolean({ description: 'Whether requesting the action again may succeed.' }),
      ),
    },
    closed('The action ran and failed.'),
  ),
} satisfies Record<string, TSchema>;

export const OrchestrationRefinements: Refinements<typeof OrchestrationEvents> = {
  'orchestration.action.confirmation_required': (p) => badTimestamp(p, ['expiresAt']),
};
