/**
 * The client SDK proven in a real browser (issue 7): Chromium loads the SDK bundle in a
 * test page that subscribes with `localStorageStorage` and records every event it
 * delivers (sdk-harness.ts). A gateway on the redis engine runs as its own process (so it
 * can be killed -9 and restarted on the same port, against the same Redis), the page
 * connects through a TCP fault proxy (so its socket can be cut), and events are published
 * over HTTP the whole time while the test kills and restarts the gateway, cuts the socket,
 * takes the page offline and back, reloads it, and races two tabs resuming the same
 * subscriber. After each disruption the page's own record must be the stored stream,
 * every event exactly once and in order.
 *
 * What "exactly once" means across a reload: the page writes its record to localStorage
 * inside the `event` listener, and the SDK writes its checkpoint only after the listener
 * returned, in the same task. So the record holds exactly the events the application
 * processed, the reloaded page must continue at the checkpoint + 1, and the concatenation
 * of every load's events is the stream with no repeat: an event processed before the
 * reload is never processed again after it.
 *
 * Two tabs sharing one subscriber (same localStorage key) are two copies of the
 * application: the gateway keeps the later resume (PROTOCOL.md §3), the other tab gets
 * 4009 and stops. Until that 4009 both may process the same events (nothing shared
 * between the tabs could prevent it); what must hold is that each tab sees its events
 * once and in order, and the application's timeline (what came before, then the losing
 * tab up to where the survivor started, then the survivor) is the stream exactly once.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { FaultProxy } from '../../chaos/toolkit/fault-proxy.ts';
import { GatewayProcess, processToken } from '../../chaos/toolkit/gateway-process.ts';
import { freePort } from '../../chaos/toolkit/ports.ts';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { useBrowser, useStaticServers, type StaticServer } from '../helpers/browser.ts';
import { until } from '../helpers/until.ts';
import {
  assertExactlyOnce,
  BLANK_PAGE,
  compact,
  history,
  lastSeq,
  openTab,
  Publisher,
  SDK_PAGE,
  snapshot,
  storedRecord,
  waitDelivered,
  waitForPageReady,
  waitStorageSettled,
  waitState,
  type PageSnapshot,
  type RecordedEvent,
} from './sdk-harness.ts';

const browser = useBrowser();
const serve = useStaticServers();

let redis: RedisServer;
let port: number;
let gw: GatewayProcess;
const allGateways: GatewayProcess[] = [];
const publishers = new Set<Publisher>();

/** Runs a test body; a failure carries the gateways' warnings and errors, for the CI log. */
async function withGatewayLogs(body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    const lines = allGateways
      .flatMap((g) => g.logs.filter((l) => Number(l.level) >= 40).map((l) => `${g.pid} ${JSON.stringify(l)}`))
      .slice(-10)
      .map((l) => l.slice(0, 800));
    if (lines.length > 0 && err instanceof Error) err.message += `\ngateway warnings:\n${lines.join('\n')}`;
    throw err;
  }
}
let proxy: FaultProxy;
let site: StaticServer;

const gatewayEnv = (): Record<string, string> => ({
  PORT: String(port),
  REDIS_URL: redis.url,
  REDIS_KEY_PREFIX: `sdk-browser-${process.pid}:`,
});

before(async () => {
  redis = await RedisServer.start({ aof: true, appendfsync: 'always' });
  port = await freePort();
  gw = await GatewayProcess.start(gatewayEnv(), { name: 'gw-browser' });
  allGateways.push(gw);
  proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port }, name: 'page↔gateway' });
  site = await serve({ '/': SDK_PAGE, '/blank': BLANK_PAGE });
});

after(async () => {
  for (const p of publishers) p.halt();
  await proxy?.close();
  await gw?.stop();
  await redis?.stop();
});

/** One session, its tokens, a publisher and how a tab of the test page reaches it. */
interface Scenario {
  sessionId: string;
  owner: string;
  agent: string;
  publisher: Publisher;
  context: BrowserContext;
  open(tab: string): Promise<Page>;
  /**
   * What the application processed in tabs before the current one (set by raceTwoTabs):
   * the current tab's record continues it.
   */
  earlier: RecordedEvent[];
  /**
   * Waits until `page` delivered what was published so far and checks the application's
   * timeline: `earlier`, then the page's whole record (every load).
   */
  check(page: Page, label: string): Promise<PageSnapshot>;
  /** Checks an application timeline (several loads or tabs) against the stored stream. */
  checkTimeline(events: RecordedEvent[], through: number, label: string): Promise<void>;
}

let scenarioN = 0;

async function scenario(tag: string): Promise<Scenario> {
  const n = ++scenarioN;
  const owner = await processToken(`browser-user-${n}`, 'user');
  const agent = await processToken(`browser-agent-${n}`, 'agent');
  const sessionId = await gw.createSession(owner);
  const baseUrl = `http://127.0.0.1:${port}`;
  const publisher = new Publisher(baseUrl, sessionId, agent, `${tag}-${process.pid}`);
  publishers.add(publisher);
  const context = await browser.newContext();
  const s: Scenario = {
    sessionId,
    owner,
    agent,
    publisher,
    context,
    earlier: [],
    open: (tab) =>
      openTab(context, {
        site: site.url,
        wsUrl: `ws://127.0.0.1:${proxy.port}/v1/realtime`,
        sessionId,
        token: owner,
        tab,
      }),
    async checkTimeline(events, through, label) {
      assertExactlyOnce(events, await history(baseUrl, sessionId, owner), through, label);
    },
    async check(page, label) {
      const head = publisher.head;
      const snap = await waitDelivered(page, head);
      await s.checkTimeline([...s.earlier, ...snap.events], head, label);
      assert.ok(
        !snap.errors.some((e) => e.code === 'connection_refused' || e.code === 'protocol_error'),
        `${label}: no refusal or protocol error: ${JSON.stringify(snap.errors)}`,
      );
      return snap;
    },
  };
  return s;
}

/** Stops publishing, then checks the page delivered the whole stored stream. */
async function finish(s: Scenario, page: Page, label = 'at the end'): Promise<PageSnapshot> {
  await s.publisher.stop();
  const snap = await s.check(page, label);
  const stored = await history(`http://127.0.0.1:${port}`, s.sessionId, s.owner);
  assert.equal(lastSeq(snap.events), stored.length, `${label}: the page reached the stream's head`);
  return snap;
}

// ── the disruptions ───────────────────────────────────────────────────────────────────

/** kill -9 of the gateway, a restart on the same port and Redis: the page resumes. */
async function killAndRestart(s: Scenario, page: Page): Promise<void> {
  const before = await snapshot(page);
  const exit = await gw.crash();
  assert.equal(exit.signal, 'SIGKILL');
  await until(
    async () => (await snapshot(page)).state === 'resuming',
    10_000,
    'the page to notice the gateway died',
  );
  gw = await GatewayProcess.start(gatewayEnv(), { name: 'gw-browser' });
  allGateways.push(gw);
  await s.publisher.more(10);
  const snap = await s.check(page, 'after kill -9 and restart');
  assert.ok(snap.stats.resumes > before.stats.resumes, 'the same subscriber resumed');
  assert.equal(snap.stats.freshStarts, before.stats.freshStarts, 'no fresh start');
}

/** RST on the page's socket (the fault proxy resets it), `rounds` times. */
async function cutSocket(s: Scenario, page: Page, rounds = 3): Promise<void> {
  for (let round = 1; round <= rounds; round++) {
    const before = await snapshot(page);
    assert.ok(proxy.connectionCount >= 1, 'the page is connected through the proxy');
    proxy.resetAll();
    await until(
      async () => (await snapshot(page)).stats.resumes > before.stats.resumes,
      10_000,
      `the page to resume after cut ${round}`,
    );
    await s.publisher.more(5);
    const snap = await s.check(page, `after socket cut ${round}`);
    assert.equal(snap.stats.freshStarts, before.stats.freshStarts, 'no fresh start');
  }
}

/**
 * `context.setOffline(true)`: the SDK hears the browser's `offline` event, drops the
 * socket and waits (state `offline`, nothing delivered, no retries); `online` resumes.
 */
async function offlineAndBack(s: Scenario, page: Page): Promise<void> {
  const before = await snapshot(page);
  await s.context.setOffline(true);
  const off = await waitState(page, 'offline');
  assert.equal(off.online, false, 'navigator.onLine is false');
  const wentOffline = Date.now();
  await s.publisher.more(8);
  // Events whose publish started after the page was seen offline cannot have been queued
  // before it went offline: while offline none of them may reach the page.
  const firstAfter = s.publisher.published.find((p) => p.startedAt > wentOffline)!.seq;
  const during = await snapshot(page);
  assert.equal(during.state, 'offline');
  assert.ok(
    lastSeq(during.events) < firstAfter,
    `nothing published while offline was delivered while offline (last ${lastSeq(during.events)}, ` +
      `first published after ${firstAfter})`,
  );
  assert.equal(during.stats.reconnects, off.stats.reconnects, 'no reconnect attempts while offline');

  await s.context.setOffline(false);
  await s.publisher.more(5);
  const snap = await s.check(page, 'after offline and back online');
  assert.ok(snap.stats.resumes > before.stats.resumes, 'the subscriber resumed');
  assert.equal(snap.stats.freshStarts, before.stats.freshStarts, 'no fresh start');
  const states = snap.states.slice(before.states.length);
  assert.deepEqual(states.slice(0, 1), ['offline'], `states ${states.join(' → ')}`);
  assert.equal(states.at(-1), 'live');
  assert.ok(
    snap.events.filter((e) => e.seq >= firstAfter).every((e) => e.state === 'live'),
    'events published while offline were delivered once live again',
  );
}

/**
 * page.reload(): the new page finds the checkpoint in localStorage and resumes the same
 * subscriber right after the last event the previous load processed.
 */
async function reload(s: Scenario, page: Page): Promise<void> {
  const before = await snapshot(page);
  await page.reload();
  await waitForPageReady(page);
  await s.publisher.more(8);
  const snap = await s.check(page, `after reload into load ${before.load + 1}`);
  assert.equal(snap.load, before.load + 1);
  const cp = snap.loads[snap.load - 1]!.checkpoint;
  assert.ok(cp?.resume, 'the reloaded page found a resumable checkpoint');
  const previous = snap.events.filter((e) => e.load === before.load);
  const current = snap.events.filter((e) => e.load === snap.load);
  assert.equal(cp.lastSeq, lastSeq(previous), 'the checkpoint is the last event the previous load processed');
  assert.equal(current[0]?.seq, cp.lastSeq + 1, 'the new load continues right after it');
  assert.equal(snap.stats.freshStarts, 0, 'the reloaded page resumed, it did not start a subscriber');
  assert.ok(snap.stats.resumes >= 1);
  const first = snap.loads.find((l) => l.checkpoint?.subscriberId)?.checkpoint?.subscriberId;
  assert.equal(cp.subscriberId, first, 'the same subscriber across loads');
}

/**
 * Closes `previous` (its checkpoint stays in localStorage), then opens two tabs at once:
 * both resume the subscriber it left, while events are published. One ends superseded
 * (4009, closed); the other stays live and keeps delivering. Returns the survivor.
 *
 * The previous tab is closed idle (publishing paused, everything delivered) and the race
 * starts once its last localStorage writes are visible to the context: a tab closed in
 * the middle of an event may leave a record one event ahead of its checkpoint, and its
 * last writes reach other tabs asynchronously, either of which would make the new tabs
 * repeat events the closed one processed (docs/client.md, "Across reloads").
 */
async function raceTwoTabs(s: Scenario, previous: Page, previousTab: string, round: string): Promise<Page> {
  await s.publisher.stop();
  const idle = await s.check(previous, `${round}: the previous tab before it closes`);
  await previous.close();
  const observer = await s.context.newPage();
  await observer.goto(`${site.origin}/blank`);
  await waitStorageSettled(observer, previousTab, s.sessionId, lastSeq(idle.events));
  await observer.close();
  s.publisher.start();
  const [a, b] = await Promise.all([s.open(`${round}-a`), s.open(`${round}-b`)]);
  let snaps: PageSnapshot[] = [];
  await until(
    async () => {
      snaps = await Promise.all([snapshot(a), snapshot(b)]);
      return snaps.some((x) => x.state === 'closed') && snaps.some((x) => x.state === 'live');
    },
    15_000,
    () =>
      `one tab superseded, one live (states ${snaps.map((x) => x.state).join(', ')}; errors ` +
      `${JSON.stringify(snaps.map((x) => x.errors))})`,
  );
  const loserIndex = snaps[0]!.state === 'closed' ? 0 : 1;
  const [loserPage, survivorPage] = loserIndex === 0 ? [a, b] : [b, a];
  const loser = snaps[loserIndex]!;
  assert.ok(
    loser.errors.some((e) => e.code === 'connection_refused' && e.closeCode === 4009),
    `the losing tab was superseded (4009): ${JSON.stringify(loser.errors)}`,
  );
  for (const x of snaps)
    assert.ok(x.loads[0]?.checkpoint?.resume, `tab ${x.tab} resumed a stored subscriber`);

  // The survivor continues.
  const head = await s.publisher.more(10);
  const survivor = await waitDelivered(survivorPage, head);
  const loserFinal = await snapshot(loserPage);
  assert.equal(loserFinal.state, 'closed');
  assert.deepEqual(
    survivor.errors.filter((e) => e.code === 'connection_refused'),
    [],
    'the survivor was not refused',
  );
  const from = (x: PageSnapshot) => x.loads[0]!.checkpoint!.lastSeq;
  // Each tab on its own: its events once each, in order, from where its checkpoint said.
  const stored = await history(`http://127.0.0.1:${port}`, s.sessionId, s.owner);
  assertExactlyOnce(
    loserFinal.events,
    stored,
    from(loserFinal),
    `${round}: the losing tab`,
    from(loserFinal) + 1,
  );
  assertExactlyOnce(survivor.events, stored, head, `${round}: the survivor`, from(survivor) + 1);
  // The application's timeline: the tab before, the loser up to where the survivor began,
  // the survivor.
  const earlier = [
    ...s.earlier,
    ...(await storedRecord(survivorPage, previousTab)).events,
    ...loserFinal.events.filter((e) => e.seq <= from(survivor)),
  ];
  const overlap = loserFinal.events.filter((e) => e.seq > from(survivor)).map((e) => e.seq);
  await s.checkTimeline(
    [...earlier, ...survivor.events],
    head,
    `${round}: earlier tab, losing tab, survivor (both tabs processed ${compact(overlap) || 'nothing'} ` +
      'before the 4009)',
  );
  s.earlier = earlier;
  await loserPage.close();
  return survivorPage;
}

// ── the tests ─────────────────────────────────────────────────────────────────────────

describe('client SDK in Chromium (gateway process on redis, localStorage checkpoints)', () => {
  it('kill -9 and restart of the gateway: the page resumes, every event once, in order', () =>
    withGatewayLogs(async () => {
      const s = await scenario('kill');
      const page = await s.open('main');
      s.publisher.start();
      await s.publisher.more(10);
      await s.check(page, 'before the kill');
      await killAndRestart(s, page);
      await finish(s, page);
      await s.context.close();
    }));

  it('a cut socket (RST through the fault proxy): resumed, every event once, in order', () =>
    withGatewayLogs(async () => {
      const s = await scenario('cut');
      const page = await s.open('main');
      s.publisher.start();
      await s.publisher.more(10);
      await s.check(page, 'before the cuts');
      await cutSocket(s, page);
      await finish(s, page);
      await s.context.close();
    }));

  it('offline and back online: the SDK drops the socket, waits, and resumes on `online`', () =>
    withGatewayLogs(async () => {
      const s = await scenario('offline');
      const page = await s.open('main');
      s.publisher.start();
      await s.publisher.more(10);
      await s.check(page, 'before going offline');
      await offlineAndBack(s, page);
      await finish(s, page);
      await s.context.close();
    }));

  it('page reloads: each load resumes from the localStorage checkpoint, nothing processed twice', () =>
    withGatewayLogs(async () => {
      const s = await scenario('reload');
      const page = await s.open('main');
      s.publisher.start();
      await s.publisher.more(10);
      await s.check(page, 'before the reloads');
      await reload(s, page);
      await reload(s, page);
      const snap = await finish(s, page);
      assert.equal(snap.loads.length, 3);
      await s.context.close();
    }));

  it('two tabs race to resume the same subscriber: one is superseded (4009), the other continues', () =>
    withGatewayLogs(async () => {
      const s = await scenario('tabs');
      const page = await s.open('first');
      s.publisher.start();
      await s.publisher.more(10);
      await s.check(page, 'before the race');
      const survivor = await raceTwoTabs(s, page, 'first', 'race');
      // The checkpoint is the survivor's alone: reloaded, it continues right after its last event.
      await reload(s, survivor);
      await finish(s, survivor);
      await s.context.close();
    }));

  it('all of it in one session: restart, cuts, offline, reload, two tabs', () =>
    withGatewayLogs(async () => {
      const s = await scenario('journey');
      const page = await s.open('main');
      s.publisher.start();
      await s.publisher.more(10);
      await s.check(page, 'at the start');
      await killAndRestart(s, page);
      await cutSocket(s, page, 1);
      await offlineAndBack(s, page);
      await reload(s, page);
      const survivor = await raceTwoTabs(s, page, 'main', 'journey');
      await reload(s, survivor);
      await finish(s, survivor);
      await s.context.close();
    }));
});
