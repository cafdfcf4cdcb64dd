import { Type, type TSchema } from '@sinclair/typebox';
import { badTimestamp, closed, DurationMs, OneOf, Timestamp, Token, type Refinements } from './common.ts';

/**
 * `billing.*` — metered usage of a call. Gateway-only. Quantities are integers in the
 * smallest unit of the meter (ms, characters, tokens…), so sums are exact.
 *
 * A session's stream ends with its terminal event, so the gateway emits the summary
 * while the call is `ending`, before `call.ended` / `call.failed`.
 */

const Meter = Token('What is metered, e.g. "call.media", "stt.audio", "tts.characters", "llm.tokens".');
const Unit = OneOf(['ms', 'characters', 'tokens', 'bytes', 'count'], 'Unit of the quantity.');
const Quantity = Type.Integer({ minimum: 0, description: 'Amount used, in the unit.' });
const PeriodStart = Timestamp('Start of the measured period; a calendar-valid time.');
const PeriodEnd = Timestamp('End of the measured period; a calendar-valid time, ≥ periodStart.');

export const BillingEvents = {
  'billing.usage.recorded': Type.Object(
    { meter: Meter, quantity: Quantity, unit: Unit, periodStart: PeriodStart, periodEnd: PeriodEnd },
    closed('Usage of one meter over one period.'),
  ),
  'billing.session.summarized': Type.Object(
    {
      durationMs: DurationMs('Billable duration of the call.'),
      periodStart: PeriodStart,
      periodEnd: PeriodEnd,
      usage: Type.Array(
        Type.Object(
          { meter: Meter, quantity: Quantity, unit: Unit },
          closed('Total of one meter for the session.'),
        ),
        { maxItems: 64, description: 'Totals per meter; at most one entry per meter.' },
      ),
    },
    closed('Totals of the whole session, emitted once before the terminal event.'),
  ),
} satisfies Record<string, TSchema>;

function period(p: { periodStart: string; periodEnd: string }): string | undefined {
  return (
    badTimestamp(p, ['periodStart', 'periodEnd']) ??
    (p.periodEnd < p.periodStart ? 'periodEnd: must be ≥ periodStart' : undefined)
  );
}

export const BillingRefinements: Refinements<typeof BillingEvents> = {
  'billing.usage.recorded': period,
  'billing.session.summarized': (p) => {
    const meters = new Set(p.usage.map((line) => line.meter));
    return period(p) ?? (meters.size < p.usage.length ? 'usage: one entry per meter' : undefined);
  },
};
