import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pngStats, useBrowser } from '../helpers/browser.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { until } from '../helpers/until.ts';
import { subscribe } from '../helpers/ws-client.ts';

/**
 * The session inspector end to end: a real gateway with CONSOLE_ENABLED serves /console,
 * Chromium opens it, an operator token is typed in, a session is picked, events
 * published over HTTP arrive in the page's live table through the client SDK, the
 * subscribers table shows who is connected where with their ack lag, and the screenshot
 * is checked to be a rendered page.
 *
 * The screenshot goes to .tmp/console.png (ignored by git), so a test run leaves the tree
 * clean; `UPDATE_SCREENSHOTS=1` writes docs/images/console.png instead, the one the
 * README and docs/inspector.md show.
 */
const SCREENSHOT = fileURLToPath(
  new URL(
    process.env.UPDATE_SCREENSHOTS === '1' ? '../../docs/images/console.png' : '../../.tmp/console.png',
    import.meta.url,
  ),
);

const browser = useBrowser();
let gw: TestGateway;

before(async () => {
  gw = await startTestGateway({ CONSOLE_ENABLED: 'true', NODE_ID: 'gw-eu-1' });
});
after(async () => {
  await gw?.stop(); // undefined when a hook before it failed (no Chromium, say)
});

const lines = [
  'Hi, thanks for calling. How can I help today?',
  'I need to move my appointment on Thursday.',
  'Of course. Which time works better for you?',
  'Friday morning, ideally before ten.',
  'I have nine thirty on Friday. Shall I book it?',
  'Yes please, nine thirty is perfect.',
];

it('shows a session live: events through the SDK, subscribers with node and ack lag', async () => {
  const owner = await gw.token('ana');
  const agent = await gw.token('voice-agent', 'agent');
  const operator = await gw.token('ops-jo', 'operator');
  await gw.createSession(owner);
  const sessionId = await gw.createSession(owner);
  const publish = async (type: string, payload: unknown): Promise<number> => {
    const res = await gw.http('POST', `/v1/call/sessions/${sessionId}/events`, agent, { type, payload });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return res.body.seq as number;
  };
  // Two more subscribers: the caller's app (acks everything) and a dashboard that never acks.
  const app = await subscribe(gw.wsUrl, { sessionId, token: owner, after: 0 });
  const dashboard = await subscribe(gw.wsUrl, { sessionId, token: agent, after: 0 });

  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  await page.goto(`${gw.url}/console`);
  await page.fill('#token-input', operator);
  await page.click('#token-submit');
  await page.locator(`#sessions li[data-session-id="${sessionId}"]`).click();
  await page.locator('#stream-state[data-state="live"]').waitFor({ timeout: 10_000 });
  assert.equal(await page.textContent('#session-id'), sessionId);

  // The call connects: the lifecycle's call.* events arrive like any other.
  for (const change of [
    { to: 'connecting', provider: 'livekit' },
    { to: 'active', provider: 'livekit', providerRoomId: 'RM_console_demo' },
  ]) {
    const res = await gw.http('POST', `/v1/call/sessions/${sessionId}/transitions`, agent, change);
    assert.equal(res.status, 200, JSON.stringify(res.body));
  }

  // Publish in waves a poll apart, so the lag sparklines have something to draw.
  let head = 3;
  let appSeen = 0;
  for (const [i, text] of lines.entries()) {
    const segmentId = `seg-${Math.floor(i / 2) + 1}`;
    const words = text.split(' ');
    for (let r = 1; r < words.length; r += 3) {
      head = await publish('transcript.partial', {
        segmentId,
        revision: r,
        text: words.slice(0, r).join(' '),
      });
    }
    head = await publish('transcript.final', {
      segmentId,
      revision: words.length,
      text,
      speaker: i % 2 ? 'caller' : 'agent',
    });
    if (i === 4) {
      head = await publish('orchestration.action.requested', {
        actionId: 'act-1',
        action: 'calendar.move_event',
        args: { to: 'friday 09:30' },
        segmentId,
      });
    }
    await app.client.events(head - appSeen);
    appSeen = head;
    app.client.send({ op: 'ack', seq: head });
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }

  // Every event, in the page's table, newest first.
  await page.locator(`#events tbody tr[data-seq="${head}"]`).waitFor({ timeout: 10_000 });
  const eventRows = page.locator('#events tbody tr');
  const seqs: number[] = [];
  for (let i = 0; i < (await eventRows.count()); i++) {
    seqs.push(Number(await eventRows.nth(i).getAttribute('data-seq')));
  }
  assert.deepEqual(
    seqs,
    Array.from({ length: head }, (_, i) => head - i),
  );
  const finalRow = page.locator('#events tbody tr[data-type="transcript.final"]').first();
  assert.match((await finalRow.textContent()) ?? '', /Yes please, nine thirty is perfect\./);
  await until(async () => (await page.textContent('#head-seq')) === String(head), 5000, 'the head seq');
  // The answering node holds the session's actor (the console's own subscription is on it).
  await until(
    async () => (await page.textContent('#node-head')) === `this node: ${head}`,
    5000,
    "the node's head",
  );

  // Subscribers: the console itself, the caller's app and the dashboard, all on this node.
  const cell = (id: string, column: number) =>
    page.locator(`#subscribers tr[data-subscriber-id="${id}"] td`).nth(column).textContent();
  await until(
    async () => (await cell(dashboard.welcome.subscriberId as string, 8)) === String(head),
    5000,
    'the dashboard’s ack lag',
  );
  const subscriberRows = page.locator('#subscribers tbody tr');
  const rows = [];
  for (let i = 0; i < (await subscriberRows.count()); i++) {
    const tr = subscriberRows.nth(i);
    rows.push({
      id: await tr.getAttribute('data-subscriber-id'),
      state: await tr.getAttribute('data-state'),
      cells: await tr.locator('td').allTextContents(),
      sparks: await tr.locator('svg.spark polyline').count(),
    });
  }
  assert.equal(rows.length, 3, JSON.stringify(rows));
  for (const row of rows) {
    assert.equal(row.state, 'connected');
    assert.match(row.cells[3]!, /^gw-eu-1/, 'the node holding the connection');
    assert.equal(row.sparks, 1, 'a lag sparkline');
  }
  assert.ok(
    rows.some((r) => /ops-jo\s*you/.test(r.cells[2]!)),
    'the console’s own subscriber is marked',
  );
  const appRow = rows.find((r) => r.id === app.welcome.subscriberId);
  assert.equal(appRow?.cells[8], '0', 'the caller’s app acked everything');

  // The screenshot for the README: a rendered page, not a blank one (and no row caught
  // mid-highlight).
  await page.emulateMedia({ reducedMotion: 'reduce' });
  const png = await page.screenshot({ fullPage: false });
  const stats = pngStats(png);
  assert.equal(stats.width, 1440);
  assert.equal(stats.height, 900);
  assert.ok(stats.colours > 200, `a rendered page has many colours, got ${stats.colours}`);
  assert.ok(stats.lumaStdDev > 8, `a rendered page is not flat, luma σ ${stats.lumaStdDev.toFixed(1)}`);
  mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  writeFileSync(SCREENSHOT, png);

  assert.deepEqual(browser.errors, [], 'no uncaught errors in the page');
  app.client.close();
  dashboard.client.close();
});

it('refuses a token that is not an operator’s, and keeps an accepted one in this tab only', async () => {
  const page = await browser.newPage();
  await page.goto(`${gw.url}/console`);
  await page.fill('#token-input', await gw.token('voice-agent', 'agent'));
  await page.click('#token-submit');
  await until(
    async () => /not an operator token/.test((await page.textContent('#token-error')) ?? ''),
    5000,
    'the refusal',
  );
  assert.equal(await page.isVisible('#app'), false);

  const operator = await gw.token('ops-jo', 'operator');
  await page.fill('#token-input', `Bearer ${operator}`);
  await page.click('#token-submit');
  await page.locator('#app').waitFor({ state: 'visible', timeout: 5000 });
  assert.equal(await page.evaluate('sessionStorage.getItem("lifeos.inspector.token")'), operator);
  assert.equal(await page.evaluate('localStorage.length'), 0);

  await page.reload();
  await page.locator('#app').waitFor({ state: 'visible', timeout: 5000 });
  await page.click('#forget-token');
  assert.equal(await page.isVisible('#gate'), true);
  assert.equal(await page.evaluate('sessionStorage.getItem("lifeos.inspector.token")'), null);
  assert.deepEqual(browser.errors, []);
});
