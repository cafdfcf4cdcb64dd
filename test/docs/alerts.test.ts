/**
 * deploy/prometheus/alerts.yml names only metrics a real gateway exports, with label names
 * its series carry and label values it can produce, and every rule links a section of the
 * runbook that exists. A renamed metric, a typo or a moved heading fails here.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { MemoryEngine } from '../../src/engine/memory/memory-engine.ts';
import { EngineUnavailableError } from '../../src/errors/gateway-error.ts';
import { ErrorCodes } from '../../src/errors/codes.ts';
import {
  LIVEKIT_ROOM_SERVICE_OPS,
  LIVEKIT_WEBHOOK_OUTCOMES,
  REMOTE_NOTICE_KINDS,
} from '../../src/observability/metrics.ts';
import { CloseCodes } from '../../src/protocol/close-codes.ts';
import { TRY_AGAIN_LATER } from '../../src/session/close-reason.ts';
import { systemClock } from '../../src/util/clock.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { subscribe, TestClient } from '../helpers/ws-client.ts';

const ALERTS_FILE = 'deploy/prometheus/alerts.yml';
const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');
const exists = (path: string) => existsSync(new URL(`../../${path}`, import.meta.url));

// ── PromQL: the metric selectors and grouping labels of an expression ──────────────────

interface Matcher {
  label: string;
  op: string;
  value: string;
}
interface Selector {
  name: string;
  matchers: Matcher[];
}

/** Followed by a parenthesised label list, not by an expression. */
const GROUPING = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
/** Words that are neither metrics nor function calls (aggregators may precede `by`). */
const KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'inf',
  'nan',
  'sum',
  'min',
  'max',
  'avg',
  'group',
  'stddev',
  'stdvar',
  'count',
  'count_values',
  'bottomk',
  'topk',
  'quantile',
  'limitk',
  'limit_ratio',
]);

/**
 * A small PromQL scanner: every identifier that is not a function (followed by `(`), a
 * keyword, a label inside `{}` or a grouping list, a string, a number or a duration is a
 * metric name. Range and subquery brackets are skipped.
 */
function scanPromql(expr: string): { selectors: Selector[]; grouping: string[] } {
  const selectors: Selector[] = [];
  const grouping: string[] = [];
  let i = 0;
  const skipSpace = () => {
    while (i < expr.length && /\s/.test(expr[i]!)) i++;
  };
  const readString = (): string => {
    const quote = expr[i]!;
    let out = '';
    for (i++; i < expr.length && expr[i] !== quote; i++) {
      if (expr[i] === '\\' && quote !== '`') i++;
      out += expr[i];
    }
    assert.ok(i < expr.length, `unterminated string in ${expr}`);
    i++;
    return out;
  };
  const readIdent = (): string => {
    const m = /^[A-Za-z_:][A-Za-z0-9_:]*/.exec(expr.slice(i));
    assert.ok(m, `identifier expected at ${i} in ${expr}`);
    i += m[0].length;
    return m[0];
  };
  const readMatchers = (): Matcher[] => {
    const out: Matcher[] = [];
    i++; // {
    for (;;) {
      skipSpace();
      if (expr[i] === '}') break;
      const label = readIdent();
      skipSpace();
      const op = /^(=~|!~|!=|=)/.exec(expr.slice(i))?.[0];
      assert.ok(op, `matcher operator expected after ${label} in ${expr}`);
      i += op.length;
      skipSpace();
      out.push({ label, op, value: readString() });
      skipSpace();
      if (expr[i] === ',') i++;
    }
    i++; // }
    return out;
  };
  while (i < expr.length) {
    const c = expr[i]!;
    if (/\s/.test(c)) i++;
    else if (c === '#') while (i < expr.length && expr[i] !== '\n') i++;
    else if (c === '"' || c === "'" || c === '`') readString();
    else if (c === '[') i = expr.indexOf(']', i) + 1 || expr.length;
    else if (c === '{') assert.fail(`a selector without a metric name in ${expr}`);
    else if (/[0-9.]/.test(c)) i += /^[0-9.]+(?:e[+-]?[0-9]+)?[a-z]*/i.exec(expr.slice(i))![0].length;
    else if (/[A-Za-z_:]/.test(c)) {
      const word = readIdent();
      skipSpace();
      if (GROUPING.has(word.toLowerCase())) {
        if (expr[i] !== '(') continue; // group_left with no labels
        const close = expr.indexOf(')', i);
        for (const label of expr.slice(i + 1, close).split(',')) {
          if (label.trim() !== '') grouping.push(label.trim());
        }
        i = close + 1;
      } else if (KEYWORDS.has(word.toLowerCase()) || expr[i] === '(') {
        // a keyword, an aggregator or a function call
      } else {
        selectors.push({ name: word, matchers: expr[i] === '{' ? readMatchers() : [] });
      }
    } else i++;
  }
  return { selectors, grouping };
}

// ── /metrics text ───────────────────────────────────────────────────────────────────

interface Sample {
  labels: Record<string, string>;
  value: number;
}
interface Exposition {
  types: Map<string, string>;
  /** Sample name → its series. */
  samples: Map<string, Sample[]>;
}

function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const samples = new Map<string, Sample[]>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types.set(type[1]!, type[2]!);
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparsed /metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[k!] = v!;
    }
    samples.set(m[1]!, [...(samples.get(m[1]!) ?? []), { labels, value: Number(m[3]) }]);
  }
  return { types, samples };
}

/** The metric family a sample name belongs to (histogram and summary series have suffixes). */
function familyOf(name: string, types: Map<string, string>): string | undefined {
  if (types.has(name)) return name;
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  if (!m) return undefined;
  const type = types.get(m[1]!);
  if (type === 'histogram' || (type === 'summary' && m[2] !== 'bucket')) return m[1];
  return undefined;
}

// ── label values the gateway can produce ────────────────────────────────────────────

const errorCodes = Object.keys(ErrorCodes);
const KNOWN_VALUES: Record<string, Record<string, string[]>> = {
  lifeos_ws_closes_total: {
    code: [...Object.values(CloseCodes), TRY_AGAIN_LATER, 1009].map(String),
  },
  lifeos_resumes_total: {
    outcome: ['ok', 'expired', 'superseded_local', 'superseded_remote', ...errorCodes],
  },
  lifeos_engine_errors_total: { code: errorCodes },
  lifeos_transport_info: { transport: ['native', 'fallback'] },
  lifeos_livekit_webhooks_total: { outcome: [...LIVEKIT_WEBHOOK_OUTCOMES] },
  lifeos_livekit_reconcile_corrections_total: { kind: ['joined', 'left'] },
  lifeos_livekit_room_service_errors_total: { op: [...LIVEKIT_ROOM_SERVICE_OPS] },
  lifeos_remote_notices_total: { kind: [...REMOTE_NOTICE_KINDS] },
};
/** Labels Prometheus adds to every scraped series (not exported by the gateway). */
const TARGET_LABELS = new Set(['job', 'instance']);

// ── the runbook's anchors (GitHub's heading slugs) ──────────────────────────────────

function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    const heading = fenced ? null : /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!heading) continue;
    const slug = heading[1]!
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
      .replace(/ /g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return out;
}

// ── the rules ───────────────────────────────────────────────────────────────────────

interface Rule {
  alert?: unknown;
  expr?: unknown;
  for?: unknown;
  labels?: Record<string, unknown>;
  annotations?: Record<string, unknown>;
}

function loadRules(): Rule[] {
  const doc = parse(read(ALERTS_FILE)) as { groups?: { name?: unknown; rules?: Rule[] }[] };
  assert.ok(Array.isArray(doc.groups) && doc.groups.length > 0, 'alerts.yml has groups');
  const rules: Rule[] = [];
  for (const group of doc.groups) {
    assert.equal(typeof group.name, 'string', 'every group has a name');
    assert.ok(Array.isArray(group.rules) && group.rules.length > 0, `group ${String(group.name)} has rules`);
    rules.push(...group.rules);
  }
  return rules;
}

/** A memory engine that can be switched "down", as Redis is in an outage. */
class SwitchableEngine extends MemoryEngine {
  down = false;
  /** A stalled Redis: ping fails only after this long (as after REDIS_COMMAND_TIMEOUT_MS). */
  stallMs = 0;
  override async ping(): Promise<void> {
    if (this.stallMs > 0) {
      await new Promise((resolve) => setTimeout(resolve, this.stallMs));
      throw new EngineUnavailableError('test: command timed out');
    }
    if (this.down) throw new EngineUnavailableError('test: engine down');
  }
  override async takeoverSubscriber(
    ...args: Parameters<MemoryEngine['takeoverSubscriber']>
  ): ReturnType<MemoryEngine['takeoverSubscriber']> {
    if (this.down) throw new EngineUnavailableError('test: engine down');
    return super.takeoverSubscriber(...args);
  }
}

describe('deploy/prometheus/alerts.yml', () => {
  const rules = loadRules();

  it('the PromQL scanner finds metrics, matchers and grouping labels, and nothing else', () => {
    const { selectors, grouping } = scanPromql(
      'histogram_quantile(0.99, sum by (node, le) (rate(a_bucket{op="x",code=~"1|2"}[5m]))) > 1e3\n' +
        'and on (node) max_over_time(b[30m:1m] offset 1h) unless sum(c) without (op) > bool 0.5',
    );
    assert.deepEqual(
      selectors.map((s) => s.name),
      ['a_bucket', 'b', 'c'],
    );
    assert.deepEqual(selectors[0]!.matchers, [
      { label: 'op', op: '=', value: 'x' },
      { label: 'code', op: '=~', value: '1|2' },
    ]);
    assert.deepEqual(grouping, ['node', 'le', 'node', 'op']);
  });

  it('every rule has a unique name, an expr, a severity, a summary, a description and a runbook section', () => {
    const names = new Set<string>();
    for (const rule of rules) {
      assert.match(String(rule.alert), /^[A-Z][A-Za-z0-9]+$/, `alert name: ${String(rule.alert)}`);
      const name = rule.alert as string;
      assert.ok(!names.has(name), `duplicate alert ${name}`);
      names.add(name);
      assert.ok(typeof rule.expr === 'string' && rule.expr.trim() !== '', `${name}: expr`);
      assert.ok(scanPromql(rule.expr).selectors.length > 0, `${name}: expr names no metric`);
      if (rule.for !== undefined) assert.match(rule.for as string, /^\d+[smhdwy]$/, `${name}: for`);
      assert.ok(['critical', 'warning', 'info'].includes(String(rule.labels?.severity)), `${name}: severity`);
      for (const key of ['summary', 'description', 'runbook_url']) {
        const value = rule.annotations?.[key];
        assert.ok(typeof value === 'string' && value.trim() !== '', `${name}: annotations.${key}`);
      }
      const url = /^(docs\/runbooks\/[\w.-]+\.md)#([\w-]+)$/.exec(rule.annotations!.runbook_url as string);
      assert.ok(url, `${name}: runbook_url must be docs/runbooks/<file>.md#<anchor>`);
      const [, file, anchor] = url as unknown as [string, string, string];
      assert.ok(exists(file), `${name}: ${file} does not exist`);
      assert.ok(anchors(read(file)).has(anchor), `${name}: no heading #${anchor} in ${file}`);
    }
  });

  describe('against a running gateway', () => {
    let gw: TestGateway;
    let engine: SwitchableEngine;
    let metrics: Exposition;

    const scrape = async (): Promise<Exposition> => {
      const res = await gw.http('GET', '/metrics');
      assert.equal(res.status, 200);
      return parseExposition(res.body as string);
    };
    /** The value of the one series of `name` whose labels include `labels`. */
    const value = (exp: Exposition, name: string, labels: Record<string, string> = {}): number => {
      const found = (exp.samples.get(name) ?? []).filter((s) =>
        Object.entries(labels).every(([k, v]) => s.labels[k] === v),
      );
      assert.equal(found.length, 1, `one series ${name}${JSON.stringify(labels)}`);
      return found[0]!.value;
    };

    before(async () => {
      engine = new SwitchableEngine(systemClock, { historyMaxEvents: 100_000, historyTtlAfterEndS: 3600 });
      gw = await startTestGateway({}, { engine });
      // Enough traffic that the labelled counters the alerts use have series: a publish,
      // a resume that supersedes (4009), a resume with a bad token (4010), one with a
      // wrong epoch (4011), and one while the engine is down (unavailable, 1013).
      const owner = await gw.token('alice');
      const agent = await gw.token('bot', 'agent');
      const sessionId = await gw.createSession(owner);
      const first = await subscribe(gw.wsUrl, { sessionId, token: owner, after: 0 });
      const pub = (await subscribe(gw.wsUrl, { sessionId, token: agent })).client;
      pub.send({
        op: 'pub',
        id: 'a1',
        type: 'transcript.final',
        payload: { segmentId: 's', revision: 0, text: 'x' },
      });
      assert.equal((await pub.op('puback')).op, 'puback');

      const resume = (extra: Record<string, unknown> = {}) => ({
        op: 'hello',
        sessionId,
        resume: { token: first.welcome.resumeToken, ...extra },
      });
      const second = await TestClient.connect(gw.wsUrl);
      second.send(resume());
      await second.op('welcome');
      assert.equal(await first.client.closeCode(), CloseCodes.superseded);

      const bad = await TestClient.connect(gw.wsUrl);
      bad.send({ op: 'hello', sessionId, resume: { token: 'v1.bogus.token' } });
      assert.equal(await bad.closeCode(), CloseCodes.resume_expired);

      const wrongEpoch = await TestClient.connect(gw.wsUrl);
      wrongEpoch.send(resume({ epoch: 'not-the-epoch' }));
      assert.equal(await wrongEpoch.closeCode(), CloseCodes.history_gone);

      engine.down = true;
      const during = await TestClient.connect(gw.wsUrl);
      during.send(resume());
      assert.equal(await during.closeCode(), TRY_AGAIN_LATER);
      metrics = await scrape();
      engine.down = false;
      for (const client of [pub, second]) client.close();
    });
    after(() => gw?.stop());

    it('exports every metric an alert names, with series, the label names and plausible label values', () => {
      for (const rule of rules) {
        const name = rule.alert as string;
        const { selectors, grouping } = scanPromql(rule.expr as string);
        const labelsSeen = new Set<string>(TARGET_LABELS);
        for (const { name: metric, matchers } of selectors) {
          const family = familyOf(metric, metrics.types);
          assert.ok(family, `${name}: the gateway does not export ${metric}`);
          const series = metrics.samples.get(metric) ?? [];
          assert.ok(series.length > 0, `${name}: ${metric} has no series`);
          const labels = new Set(series.flatMap((s) => Object.keys(s.labels)));
          for (const l of labels) labelsSeen.add(l);
          for (const { label, op, value } of matchers) {
            assert.ok(labels.has(label), `${name}: ${metric} has no label ${label}`);
            const known = KNOWN_VALUES[family]?.[label];
            if (!known) continue;
            const values = op.endsWith('~') ? value.split('|') : [value];
            if (op.endsWith('~'))
              assert.match(value, /^[\w|]+$/, `${name}: keep ${label}=~ a plain a|b|c list`);
            for (const v of values)
              assert.ok(known.includes(v), `${name}: ${metric}{${label}="${v}"} never occurs`);
          }
        }
        for (const label of grouping) {
          assert.ok(labelsSeen.has(label), `${name}: no metric in the expression has the label ${label}`);
        }
      }
    });

    it('the series behind the reconnect alerts count what happened', async () => {
      assert.equal(value(metrics, 'lifeos_ws_closes_total', { code: '4009' }), 1);
      assert.equal(value(metrics, 'lifeos_ws_closes_total', { code: '4010' }), 1);
      assert.equal(value(metrics, 'lifeos_ws_closes_total', { code: '4011' }), 1);
      assert.equal(value(metrics, 'lifeos_ws_closes_total', { code: '1013' }), 1);
      assert.equal(value(metrics, 'lifeos_resumes_total', { outcome: 'resume_expired' }), 1);
      assert.equal(value(metrics, 'lifeos_resumes_total', { outcome: 'history_gone' }), 1);
      assert.equal(value(metrics, 'lifeos_resumes_total', { outcome: 'unavailable' }), 1);
      assert.equal(value(metrics, 'lifeos_engine_errors_total', { op: 'takeover', code: 'unavailable' }), 1);
      assert.equal(value(metrics, 'lifeos_epoch_changes_total'), 0);
      // one node: nothing to hear from others, nothing lost
      assert.equal(value(metrics, 'lifeos_remote_notices_total', { kind: 'anti_entropy' }), 0);
      // /readyz while the engine was down, and now that it is back.
      assert.equal(value(metrics, 'lifeos_ready'), 0);
      assert.equal(value(await scrape(), 'lifeos_ready'), 1);
    });

    it('the LiveKit series exist at 0 before any webhook (here: a gateway without the bridge)', () => {
      for (const outcome of LIVEKIT_WEBHOOK_OUTCOMES)
        assert.equal(value(metrics, 'lifeos_livekit_webhooks_total', { outcome }), 0, outcome);
      for (const kind of ['joined', 'left'])
        assert.equal(value(metrics, 'lifeos_livekit_reconcile_corrections_total', { kind }), 0, kind);
      for (const op of LIVEKIT_ROOM_SERVICE_OPS)
        assert.equal(value(metrics, 'lifeos_livekit_room_service_errors_total', { op }), 0, op);
      assert.equal(value(metrics, 'lifeos_livekit_tokens_issued_total'), 0);
    });

    it('a stalled engine does not stall /metrics; lifeos_ready drops to 0 by a later scrape', async () => {
      engine.stallMs = 800;
      try {
        let started = Date.now();
        assert.equal(value(await scrape(), 'lifeos_ready'), 1, 'the probe has not failed yet');
        assert.ok(Date.now() - started < 600, 'the scrape did not wait for the stalled ping');
        await new Promise((resolve) => setTimeout(resolve, 900));
        started = Date.now();
        assert.equal(value(await scrape(), 'lifeos_ready'), 0, 'the stalled ping failed meanwhile');
        assert.ok(Date.now() - started < 600, 'the scrape did not wait for the stalled ping');
      } finally {
        engine.stallMs = 0;
      }
      await new Promise((resolve) => setTimeout(resolve, 900)); // the last stalled ping ends
      assert.equal(value(await scrape(), 'lifeos_ready'), 1);
    });
  });
});
