import type { Verdict } from './verdict.ts';
import { ViolationKinds, type Violation, type ViolationKind } from './violations.ts';

/** Lines printed before the counts: `key: value` pairs, or ready-made lines. */
export type SummaryExtra = Record<string, string | number | boolean> | readonly string[];

export interface SummaryOptions {
  /** Example messages shown per violation kind. Default 3. */
  examplesPerKind?: number;
}

/** The close codes always shown, even at zero: the ones a chaos run is about. */
const KEY_CLOSES = [4009, 4010, 4011, 4101];

const n = (value: number): string => value.toLocaleString('en-US');

function tally(record: Record<string, number>, skip: ReadonlySet<string> = new Set()): string {
  return Object.entries(record)
    .filter(([key]) => !skip.has(key))
    .sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }))
    .map(([key, count]) => `${key} ×${n(count)}`)
    .join(', ');
}

function mb(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

/**
 * One screen of text: the run's counts, the violations grouped by kind (totals, and the
 * first few messages of each), and a last line `VERDICT: PASS` or `VERDICT: FAIL (n violations)`.
 */
export function formatSummary(verdict: Verdict, extra?: SummaryExtra, options: SummaryOptions = {}): string {
  const c = verdict.counts;
  const examples = options.examplesPerKind ?? 3;
  const lines: string[] = [];
  if (extra) {
    if (Array.isArray(extra)) lines.push(...(extra as readonly string[]));
    else for (const [key, value] of Object.entries(extra)) lines.push(`${key}: ${String(value)}`);
  }
  const p = c.publishes;
  lines.push(
    `ops          ${n(c.ops)} · sessions ${n(c.sessions)} · clients ${n(c.clients)} · connections ${n(c.connections)} ` +
      `(hellos ${n(c.hellos.fresh)} fresh, ${n(c.hellos.resume)} resume)`,
    `publishes    ok ${n(p.ok)} · fail ${n(p.fail)} · unknown ${n(p.unknown)}` +
      (p.retryableNacks > 0 ? ` (+${n(p.retryableNacks)} retryable nacks judged unknown)` : '') +
      ` · events ${n(c.publishedEvents)}; never answered: stored ${n(c.unknownStored)}, not ${n(c.unknownNotStored)}; ` +
      `acked lost to epoch change ${n(c.lostToEpochChange)}` +
      (c.ackedTrimmed > 0 ? `, trimmed ${n(c.ackedTrimmed)}` : ''),
    `stream       events stored ${n(c.eventsStored)} · final streams ${n(c.finalStreams)}/${n(c.sessions)} · ` +
      `epochs seen ${n(c.epochs)} (changes ${n(c.epochChanges)})`,
    `delivery     deliveries ${n(c.deliveries)} · duplicates dropped ${n(c.duplicatesDropped)} · ` +
      `stale-epoch ${n(c.staleEpochDeliveries)} · skipped on request: fresh ${n(c.skippedByFreshHello)}, ` +
      `resume ${n(c.skippedByClientClaim)}` +
      (c.epochSwitchWithout4011 > 0 ? ` · epoch switches without 4011 ${n(c.epochSwitchWithout4011)}` : ''),
    `resumes      welcomed ${n(c.welcomes.resumed)} (fresh ${n(c.welcomes.fresh)}) · races ${n(c.races)} ` +
      `(survivors ${n(c.raceSurvivors)}, disturbed ${n(c.racesDisturbed)}, no welcome ${n(c.racesWithoutWelcome)}) · ` +
      `superseded ${n(c.supersedes)} (pending at end ${n(c.supersedePendingAtEnd)})`,
    `closes       ${KEY_CLOSES.map((code) => `${code} ×${n(c.closes[code] ?? 0)}`).join(' · ')}` +
      (Object.keys(c.closes).some((code) => !KEY_CLOSES.includes(Number(code)))
        ? ` · other: ${tally(c.closes, new Set(KEY_CLOSES.map(String)))}`
        : ''),
    `acks         ${tally(c.acks) || 'none'}; ahead sent ${n(c.ackAhead.sent)}, answered ack_ahead ` +
      `${n(c.ackAhead.answered)}, unanswered ${n(c.ackAhead.unanswered)}` +
      (c.ackAhead.unexpectedErrors > 0 ? `, unexpected ack_ahead ${n(c.ackAhead.unexpectedErrors)}` : ''),
    `checkpoints  observed ${n(c.checkpoints)} (covered by ahead acks ${n(c.checkpointsFromAheadAcks)}, ` +
      `concurrent ${n(c.checkpointsConcurrent)})`,
  );
  const nodes = Object.entries(c.memory.maxByNode);
  const bound = verdict.options.maxRssBytes;
  lines.push(
    `memory       ${nodes.length > 0 ? nodes.map(([node, max]) => `${node} max ${mb(max)}`).join(' · ') : 'no samples'}` +
      (bound !== undefined ? ` (bound ${mb(bound)})` : ''),
  );
  if (Object.keys(c.errors).length > 0) lines.push(`errors       ${tally(c.errors)}`);
  if (Object.keys(c.faults).length > 0) lines.push(`faults       ${tally(c.faults)}`);
  if (c.unknownOps > 0) lines.push(`unknown ops  ${n(c.unknownOps)}`);

  const kinds = Object.entries(verdict.violationTotals) as Array<[ViolationKind, number]>;
  if (kinds.length === 0) {
    lines.push('violations   none');
  } else {
    lines.push(`violations   ${n(verdict.violationCount)}:`);
    const byKind = new Map<ViolationKind, Violation[]>();
    for (const v of verdict.violations) {
      const list = byKind.get(v.kind) ?? [];
      list.push(v);
      byKind.set(v.kind, list);
    }
    for (const [kind, total] of kinds) {
      lines.push(`  ${kind} ×${n(total)} — ${ViolationKinds[kind] ?? ''}`);
      for (const v of (byKind.get(kind) ?? []).slice(0, examples)) {
        const where = [v.session, v.client].filter((s) => s !== undefined && s !== '').join(' ');
        lines.push(`    · [${where ? `${where} ` : ''}t=${v.t}] ${v.message}`);
      }
    }
  }
  lines.push(verdict.ok ? 'VERDICT: PASS' : `VERDICT: FAIL (${n(verdict.violationCount)} violations)`);
  return lines.join('\n');
}
