import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BrowserContext, Page } from 'playwright-core';
import { httpJson } from '../../chaos/toolkit/http.ts';
import { until } from '../helpers/until.ts';

/**
 * The pieces of test/browser/sdk.test.ts: the test page (the SDK bundle subscribing with
 * `localStorageStorage` and recording what it delivers), a background HTTP publisher that
 * keeps publishing through gateway restarts, and the exactly-once check against the
 * stream as the gateway stored it.
 */

/** Where the page keeps its record, next to the SDK's checkpoints (`lifeos:<key>`). */
export const RECORD_PREFIX = 'sdk-test:record:';
export const CHECKPOINT_PREFIX = 'lifeos:';

/**
 * The test page. Query: `ws` (gateway URL), `session`, `token`, `tab` (names the record),
 * `key` (the SDK's checkpoint key; default the session id).
 *
 * Every delivered event is appended to `window.__record.events` as `{ seq, eventId, load,
 * state }` and the whole record is written to localStorage under `sdk-test:record:<tab>`
 * inside the `event` listener, synchronously: the SDK writes its checkpoint only after
 * the listener returned, in the same task, so the record always holds every event the
 * checkpoint says was processed (and a reload cannot fall between the two). A reload of
 * the same URL loads the record and appends to it; `loads[i].checkpoint` is what the SDK
 * found in storage when load i + 1 started.
 */
export const SDK_PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>SDK under test</title></head>
<body><pre id="out">starting</pre>
<script type="module">
import { connect, localStorageStorage } from '/lifeos-client.js';

const q = new URLSearchParams(location.search);
const tab = q.get('tab');
const sessionId = q.get('session');
const key = q.get('key') || sessionId;
const recordKey = ${JSON.stringify(RECORD_PREFIX)} + tab;
const prefix = ${JSON.stringify(CHECKPOINT_PREFIX)};
const stored = JSON.parse(localStorage.getItem(recordKey) || 'null') || { events: [], loads: [] };
const cp = JSON.parse(localStorage.getItem(prefix + key) || 'null');
const load = stored.loads.length + 1;
stored.loads.push({
  load,
  checkpoint: cp && { lastSeq: cp.lastSeq, subscriberId: cp.subscriberId || null, resume: !!cp.resumeToken },
});
const rec = { tab, load, events: stored.events, loads: stored.loads, states: [], errors: [], log: [] };
const persist = () => localStorage.setItem(recordKey, JSON.stringify({ events: rec.events, loads: rec.loads }));
persist();
window.__record = rec;

const client = connect({
  url: q.get('ws'),
  token: async () => q.get('token'),
  storage: localStorageStorage(prefix),
  backoff: { baseMs: 50, capMs: 500 },
  acks: { every: 8, intervalMs: 100 },
  log: (msg, fields) => {
    rec.log.push(new Date().toISOString().slice(11, 23) + ' ' + msg + ' ' + JSON.stringify(fields));
    if (rec.log.length > 400) rec.log.shift();
  },
});
const sub = client.subscribe(sessionId, { after: 0, key });
sub.on('event', ({ seq, event }) => {
  rec.events.push({ seq, eventId: event.eventId, load, state: sub.state });
  persist();
  document.getElementById('out').textContent = 'seq ' + seq;
});
sub.on('state', (s) => rec.states.push(s));
sub.on('error', (e) =>
  rec.errors.push({ code: e.code, closeCode: e.closeCode ?? null, message: e.message }),
);
window.__sub = sub;
window.__snapshot = () =>
  JSON.parse(JSON.stringify({ ...rec, state: sub.state, stats: sub.stats, online: navigator.onLine }));
</script></body></html>`;

export interface RecordedEvent {
  seq: number;
  eventId: string;
  /** Which page load (1, 2, …) of this tab processed it. */
  load: number;
  /** The subscription's state when the listener ran. */
  state: string;
}

export interface PageSnapshot {
  tab: string;
  load: number;
  events: RecordedEvent[];
  loads: Array<{
    load: number;
    checkpoint: { lastSeq: number; subscriberId: string | null; resume: boolean } | null;
  }>;
  states: string[];
  errors: Array<{ code: string; closeCode: number | null; message: string }>;
  log: string[];
  state: string;
  stats: {
    reconnects: number;
    resumes: number;
    freshStarts: number;
    duplicatesDropped: number;
    lastSeq: number;
  };
  online: boolean;
}

export interface TabOptions {
  site: string;
  wsUrl: string;
  sessionId: string;
  token: string;
  tab: string;
  key?: string;
}

export function tabUrl(o: TabOptions): string {
  const q = new URLSearchParams({ ws: o.wsUrl, session: o.sessionId, token: o.token, tab: o.tab });
  if (o.key) q.set('key', o.key);
  return `${o.site}?${q.toString()}`;
}

/** Opens the test page in a new tab of `context` and waits for the SDK to be running. */
export async function openTab(context: BrowserContext, o: TabOptions): Promise<Page> {
  const page = await context.newPage();
  await page.goto(tabUrl(o));
  await waitForPageReady(page);
  return page;
}

/** Waits until the test page's module ran (the SDK is subscribed). */
export async function waitForPageReady(page: Page): Promise<void> {
  await page.waitForFunction('"__snapshot" in window', undefined, { timeout: 10_000 });
}

export function snapshot(page: Page): Promise<PageSnapshot> {
  return page.evaluate(() => (globalThis as unknown as { __snapshot(): PageSnapshot }).__snapshot());
}

/** A page's record as persisted in localStorage (also readable after the page closed). */
export async function storedRecord(page: Page, tab: string): Promise<Pick<PageSnapshot, 'events' | 'loads'>> {
  const raw = await page.evaluate(
    (k) =>
      (globalThis as unknown as { localStorage: { getItem(k: string): string | null } }).localStorage.getItem(
        k,
      ),
    RECORD_PREFIX + tab,
  );
  assert.ok(raw, `no record of tab ${tab} in localStorage`);
  return JSON.parse(raw) as Pick<PageSnapshot, 'events' | 'loads'>;
}

/** An empty page of the test site: a view of the context's localStorage without an SDK. */
export const BLANK_PAGE =
  '<!doctype html><html><head><meta charset="utf-8"><title>observer</title></head></html>';

/**
 * Waits until `page` (of the test site's origin) sees the closed tab `tab`'s last writes:
 * its record and the SDK's checkpoint under `key` both at `seq`. A closed tab's
 * localStorage writes reach other tabs asynchronously, so a tab opened right after the
 * close may otherwise read an older checkpoint than the closed tab's record shows.
 */
export async function waitStorageSettled(page: Page, tab: string, key: string, seq: number): Promise<void> {
  let seen: { record: number; checkpoint: number } | undefined;
  await until(
    async () => {
      seen = await page.evaluate(
        ([recordKey, checkpointKey]) => {
          const store = (globalThis as unknown as { localStorage: { getItem(k: string): string | null } })
            .localStorage;
          const rec = JSON.parse(store.getItem(recordKey!) ?? 'null') as { events: { seq: number }[] } | null;
          const cp = JSON.parse(store.getItem(checkpointKey!) ?? 'null') as { lastSeq: number } | null;
          return { record: rec?.events.at(-1)?.seq ?? -1, checkpoint: cp?.lastSeq ?? -2 };
        },
        [RECORD_PREFIX + tab, CHECKPOINT_PREFIX + key],
      );
      return seen.record === seq && seen.checkpoint === seq;
    },
    10_000,
    () => `tab ${tab}'s record and checkpoint at ${seq} in localStorage (${JSON.stringify(seen)})`,
  );
}

export function lastSeq(events: readonly RecordedEvent[]): number {
  return events.at(-1)?.seq ?? 0;
}

/** Waits until the page is `live` and its record reaches `seq`. */
export async function waitDelivered(page: Page, seq: number, timeoutMs = 20_000): Promise<PageSnapshot> {
  let snap: PageSnapshot | undefined;
  await until(
    async () => {
      snap = await snapshot(page);
      return snap.state === 'live' && lastSeq(snap.events) >= seq;
    },
    timeoutMs,
    () =>
      `the page to be live with seq ${seq} (state ${String(snap?.state)}, last seq ${lastSeq(snap?.events ?? [])}, ` +
      `errors ${JSON.stringify(snap?.errors)}, log tail:\n${snap?.log.slice(-15).join('\n') ?? ''})`,
  );
  return snap!;
}

export async function waitState(page: Page, state: string, timeoutMs = 10_000): Promise<PageSnapshot> {
  let snap: PageSnapshot | undefined;
  await until(
    async () => (snap = await snapshot(page)).state === state,
    timeoutMs,
    () =>
      `the page's subscription to be ${state} (now ${String(snap?.state)}; log tail:\n${snap?.log.slice(-10).join('\n') ?? ''})`,
  );
  return snap!;
}

export interface StoredEvent {
  seq: number;
  eventId: string;
}

/** The session's stream as the gateway stored it (every page of it). */
export async function history(baseUrl: string, sessionId: string, token: string): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  for (;;) {
    const res = await httpJson(
      baseUrl,
      'GET',
      `/v1/call/sessions/${sessionId}/events?after=${out.length}&limit=500`,
      {
        token,
      },
    );
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const page = res.body.events as Array<{ seq: number; event: { eventId: string } }>;
    for (const e of page) out.push({ seq: e.seq, eventId: e.event.eventId });
    if (page.length === 0 || out.length >= res.body.headSeq) return out;
  }
}

/**
 * Exactly once, in order: `events` (the application's timeline) is the stored stream
 * from seq `from` (default 1) with no gap, no repeat and no reordering, each with the
 * stored eventId, reaching at least `through`.
 */
export function assertExactlyOnce(
  events: readonly Pick<RecordedEvent, 'seq' | 'eventId'>[],
  stored: readonly StoredEvent[],
  through: number,
  label: string,
  from = 1,
): void {
  const seqs = events.map((e) => e.seq);
  const problems: string[] = [];
  const seen = new Set<number>();
  for (const [i, e] of events.entries()) {
    if (seen.has(e.seq)) problems.push(`seq ${e.seq} delivered twice`);
    seen.add(e.seq);
    if (e.seq !== from + i) problems.push(`position ${i} holds seq ${e.seq}, expected ${from + i}`);
    const s = stored[e.seq - 1];
    if (s && s.eventId !== e.eventId)
      problems.push(`seq ${e.seq} has eventId ${e.eventId}, stored ${s.eventId}`);
    if (problems.length > 5) break;
  }
  if ((seqs.at(-1) ?? from - 1) < through)
    problems.push(`ends at seq ${String(seqs.at(-1))}, expected at least ${through}`);
  assert.deepEqual(
    problems,
    [],
    `${label}: every published event exactly once, in order (got seqs ${compact(seqs)})`,
  );
}

/** `1-40,42,41,43-50` */
export function compact(seqs: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < seqs.length;) {
    let j = i;
    while (j + 1 < seqs.length && seqs[j + 1] === seqs[j]! + 1) j++;
    parts.push(i === j ? String(seqs[i]) : `${String(seqs[i])}-${String(seqs[j])}`);
    i = j + 1;
  }
  return parts.join(',');
}

export interface Published {
  seq: number;
  eventId: string;
  /** Date.now() when its first POST started. */
  startedAt: number;
}

/**
 * Publishes `transcript.partial` events over HTTP, one after another, until stopped. A
 * POST that fails (gateway down, connection cut, 5xx) is retried with the same eventId,
 * so a publish whose answer was lost is still stored once; a 4xx fails the run.
 */
export class Publisher {
  readonly published: Published[] = [];
  failures = 0;
  /** What the last failed attempt got, for messages. */
  lastFailure = '';
  #running = false;
  #halted = false;
  #loop: Promise<void> = Promise.resolve();
  #n = 0;
  readonly #baseUrl: string;
  readonly #sessionId: string;
  readonly #token: string;
  readonly #tag: string;
  readonly #intervalMs: number;

  constructor(baseUrl: string, sessionId: string, token: string, tag: string, intervalMs = 20) {
    this.#baseUrl = baseUrl;
    this.#sessionId = sessionId;
    this.#token = token;
    this.#tag = tag;
    this.#intervalMs = intervalMs;
  }

  /** The highest seq the gateway acknowledged (0 before any). */
  get head(): number {
    return this.published.at(-1)?.seq ?? 0;
  }

  start(): this {
    if (this.#running) return this;
    this.#running = true;
    this.#loop = this.#run();
    this.#loop.catch(() => {}); // surfaced by stop() and waitFor()
    return this;
  }

  /** Stops after the publish in progress is stored; rethrows what failed the loop. */
  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
  }

  /** Gives up at once, even on a publish not stored yet (for `after` hooks of failed tests). */
  halt(): void {
    this.#running = false;
    this.#halted = true;
  }

  /** Waits until `count` more events than now are stored; resolves with the head. */
  async more(count: number, timeoutMs = 20_000): Promise<number> {
    const target = this.published.length + count;
    let failed: Error | undefined;
    this.#loop.catch((err: unknown) => (failed = err instanceof Error ? err : new Error(String(err))));
    await until(
      () => {
        if (failed) throw failed;
        return this.published.length >= target;
      },
      timeoutMs,
      () =>
        `${count} more publishes (have ${this.published.length}/${target}, ${this.failures} failed attempts, last: ${this.lastFailure})`,
    );
    return this.head;
  }

  async #run(): Promise<void> {
    while (this.#running) {
      const n = ++this.#n;
      const eventId = `${this.#tag}-${n}`;
      const startedAt = Date.now();
      const deadline = startedAt + 30_000;
      for (;;) {
        let status = 0;
        let body: unknown;
        try {
          const res = await httpJson(this.#baseUrl, 'POST', `/v1/call/sessions/${this.#sessionId}/events`, {
            token: this.#token,
            timeoutMs: 3000,
            body: {
              eventId,
              type: 'transcript.partial',
              payload: { segmentId: `seg-${Math.ceil(n / 10)}`, revision: n % 10, text: `word ${n}` },
            },
          });
          status = res.status;
          body = res.body;
        } catch (err) {
          // no gateway, or the connection was cut: retry the same eventId
          body = String((err as Error).cause ?? err);
        }
        // 201 stored; 200 `duplicate`: a retry of a publish whose answer was lost.
        if (status === 201 || status === 200) {
          this.published.push({ seq: (body as { seq: number }).seq, eventId, startedAt });
          break;
        }
        if (status >= 400 && status < 500 && status !== 429) {
          throw new Error(`publish ${eventId}: ${status} ${JSON.stringify(body)}`);
        }
        if (this.#halted) return;
        this.failures++;
        this.lastFailure = `${status} ${JSON.stringify(body)}`.slice(0, 300);
        if (Date.now() > deadline) throw new Error(`publish ${eventId}: not stored within 30 s`);
        await sleep(50);
      }
      await sleep(this.#intervalMs);
    }
  }
}
