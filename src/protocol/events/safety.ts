import { Type, type TSchema } from '@sinclair/typebox';
import { closed, Id, OneOf, Severities, Text, Token, type Refinements } from './common.ts';

/**
 * `safety.*` — what the gateway's safety checks found and did. Gateway-only. A flag
 * never carries the offending content itself (it may be personal data); it points at
 * it by `segmentId` or `actionId`.
 */

const Severity = OneOf([...Severities], 'low < medium < high < critical.');
const Category = Token('What kind of risk, e.g. "self_harm", "pii", "fraud", "harassment".');

export const SafetyEvents = {
  'safety.flagged': Type.Object(
    {
      category: Category,
      severity: Severity,
      source: Type.Optional(OneOf(['transcript', 'action', 'audio'], 'What was checked.')),
      segmentId: Type.Optional(Id('Transcript segment that was flagged.')),
      actionId: Type.Optional(Id('Action that was flagged.')),
      score: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'Classifier score, 0..1.' })),
      message: Type.Optional(Text(512, 'Explanation for operators; never the flagged content.')),
    },
    closed('A safety check flagged something in the call.'),
  ),
  'safety.action.blocked': Type.Object(
    {
      actionId: Id('The action that was blocked.'),
      reason: Text(256, 'Why it was blocked, for people.'),
      category: Type.Optional(Category),
      severity: Type.Optional(Severity),
      policyId: Type.Optional(Id('The policy that blocked it.')),
    },
    closed('A safety policy stopped an action; orchestration.action.rejected (blocked) accompanies it.'),
  ),
} satisfies Record<string, TSchema>;

export const SafetyRefinements: Refinements<typeof SafetyEvents> = {};
