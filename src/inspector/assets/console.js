/* global document, window, sessionStorage, location, fetch, requestAnimationFrame, setTimeout, clearTimeout, atob, URLSearchParams, history, AbortController, TextDecoder */
// The session inspector page (docs/inspector.md). Plain browser JavaScript, no build
// step: it polls the operator-only inspector API every second and watches the session's
// stream live through the client SDK, served by the gateway at /console/lifeos-client.js.
// Every value from the network reaches the DOM as text (textContent), never as HTML.

const API = '/v1/inspector';
const SDK_URL = '/console/lifeos-client.js';
const TOKEN_KEY = 'lifeos.inspector.token';
const POLL_MS = 1000;
const SESSIONS_POLL_MS = 5000;
const SESSIONS_PAGE = 50;
const MAX_EVENT_ROWS = 500;
const SPARK_POINTS = 60;
const SPARK_W = 132;
const SPARK_H = 22;
const RATE_WINDOW_MS = 5000;

const $ = (id) => document.getElementById(id);

/** Builds an element: attributes (class, data-*, title…) and children (nodes or text). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    el.append(typeof child === 'string' || typeof child === 'number' ? String(child) : child);
  }
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

// ── state ───────────────────────────────────────────────────────────────────
const state = {
  token: '',
  claims: {},
  sessions: [],
  nextCursor: undefined,
  filter: '',
  selected: '',
  /** Bumped on every selection: late answers for an earlier one are dropped. */
  generation: 0,
  pollTimer: undefined,
  sessionsTimer: undefined,
  /** subscriberId → recent ack lags (oldest first). */
  lags: new Map(),
  /** recent { at, head } samples, for events per second. */
  heads: [],
  sdk: undefined,
  client: undefined,
  sub: undefined,
  unsubscribe: [],
  pendingEvents: [],
  flushScheduled: false,
  received: 0,
};

// ── helpers ─────────────────────────────────────────────────────────────────
function decodeClaims(token) {
  try {
    const part = token.split('.')[1] ?? '';
    const bin = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return {};
  }
}

function ago(ms) {
  if (!Number.isFinite(ms) || ms < 0) ms = 0;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr}h ${m % 60}m`;
  return `${Math.floor(hr / 24)}d`;
}

function clock(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso ?? '');
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

function shortId(id) {
  return id.length > 22 ? `${id.slice(0, 12)}…${id.slice(-6)}` : id;
}

function lagClass(lag) {
  if (lag === 0) return 'lag-0';
  return lag < 32 ? 'lag-low' : 'lag-high';
}

function truncate(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

/** One line for the payload column: transcripts read as text, the rest as compact JSON. */
function summary(event) {
  const p = event.payload ?? {};
  if (event.type.startsWith('transcript.') && typeof p.text === 'string') {
    const frag = document.createDocumentFragment();
    const who = typeof p.speaker === 'string' ? ` ${p.speaker}` : '';
    frag.append(
      h('span', { class: 'seg' }, `${p.segmentId ?? '?'} r${p.revision ?? '?'}${who}  `),
      h('span', { class: 'quote' }, `“${truncate(p.text, 200)}”`),
    );
    return frag;
  }
  return truncate(JSON.stringify(p), 220);
}

// ── API ─────────────────────────────────────────────────────────────────────
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, signal) {
  const res = await fetch(path, {
    headers: { authorization: `Bearer ${state.token}` },
    cache: 'no-store',
    signal,
  });
  let body;
  try {
    body = await res.json();
  } catch {
    body = undefined;
  }
  if (!res.ok) {
    const err = body?.error ?? {};
    throw new ApiError(res.status, err.code ?? 'http_error', err.message ?? `HTTP ${res.status}`);
  }
  return body;
}

/** 401/403 end the session with the token: back to the gate, saying why. */
function authFailed(err) {
  if (!(err instanceof ApiError) || (err.status !== 401 && err.status !== 403)) return false;
  const why =
    err.status === 403
      ? 'This token is not an operator token (role must be "operator").'
      : `The gateway refused the token: ${err.message}`;
  forgetToken(why);
  return true;
}

// ── token gate ──────────────────────────────────────────────────────────────
function showGate(message = '') {
  $('gate').hidden = false;
  $('app').hidden = true;
  $('forget-token').hidden = true;
  $('who').textContent = '';
  $('token-error').textContent = message;
  $('token-input').focus();
}

async function useToken(raw) {
  const token = raw.trim().replace(/^Bearer\s+/i, '');
  if (token === '') return;
  state.token = token;
  $('token-submit').disabled = true;
  try {
    await api(`${API}/sessions?limit=1`);
  } catch (err) {
    state.token = '';
    $('token-submit').disabled = false;
    if (err instanceof ApiError && err.status === 404) {
      $('token-error').textContent = 'The inspector is not enabled on this gateway (CONSOLE_ENABLED).';
    } else if (err instanceof ApiError && err.status === 403) {
      $('token-error').textContent = 'This token is not an operator token (role must be "operator").';
    } else {
      $('token-error').textContent = err instanceof ApiError ? err.message : 'The gateway does not answer.';
    }
    return;
  }
  $('token-submit').disabled = false;
  sessionStorage.setItem(TOKEN_KEY, token);
  state.claims = decodeClaims(token);
  openApp();
}

function forgetToken(message = '') {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = '';
  deselect();
  void state.client?.close();
  state.client = undefined;
  clearTimeout(state.sessionsTimer);
  $('token-input').value = '';
  showGate(message);
}

function openApp() {
  $('gate').hidden = true;
  $('app').hidden = false;
  $('forget-token').hidden = false;
  const c = state.claims;
  $('who').textContent = `${c.sub ?? '?'} · ${c.tid ?? '?'} · ${c.role ?? '?'}`;
  if (typeof c.exp === 'number') $('who').title = `token expires ${new Date(c.exp * 1000).toLocaleString()}`;
  void loadSessions();
  const fromHash = new URLSearchParams(location.hash.slice(1)).get('session');
  if (fromHash) select(fromHash);
}

// ── sessions list ───────────────────────────────────────────────────────────
async function loadSessions(more = false) {
  clearTimeout(state.sessionsTimer);
  try {
    const cursor = more && state.nextCursor ? `&cursor=${encodeURIComponent(state.nextCursor)}` : '';
    const page = await api(`${API}/sessions?limit=${SESSIONS_PAGE}${cursor}`);
    state.sessions = more ? [...state.sessions, ...page.sessions] : page.sessions;
    state.nextCursor = page.nextCursor;
    renderSessions();
  } catch (err) {
    if (authFailed(err)) return;
  }
  if (state.token) state.sessionsTimer = setTimeout(() => void loadSessions(), SESSIONS_POLL_MS);
}

function renderSessions() {
  const list = $('sessions');
  const f = state.filter.toLowerCase();
  const rows = state.sessions
    .filter((s) => f === '' || `${s.id} ${s.ownerId} ${s.state}`.toLowerCase().includes(f))
    .map((s) =>
      h(
        'li',
        { 'data-session-id': s.id, class: s.id === state.selected ? 'selected' : '', title: s.id },
        h('span', { class: 'sid' }, s.id),
        h('span', { class: 'badge', 'data-state': s.state }, s.state),
        h(
          'span',
          { class: 'meta' },
          h('span', {}, s.ownerId),
          h(
            'span',
            { class: 'mono' },
            `head ${s.headSeq} · ${ago(Date.now() - Date.parse(s.createdAt))} ago`,
          ),
        ),
      ),
    );
  list.replaceChildren(...rows);
  if (rows.length === 0) list.append(h('li', { class: 'dim' }, 'No sessions.'));
  $('more-sessions').hidden = !state.nextCursor;
}

// ── selection ───────────────────────────────────────────────────────────────
function deselect() {
  state.generation += 1;
  clearTimeout(state.pollTimer);
  for (const off of state.unsubscribe) off();
  state.unsubscribe = [];
  // bye: the console's own subscriber ends now instead of idling out its resume window.
  void state.sub?.close({ bye: true }).catch(() => {});
  state.sub = undefined;
  state.selected = '';
  state.lags.clear();
  state.heads = [];
  state.pendingEvents = [];
  state.received = 0;
  setStreamState('idle');
}

function select(sessionId) {
  deselect();
  state.selected = sessionId;
  const gen = state.generation;
  history.replaceState(null, '', `#session=${encodeURIComponent(sessionId)}`);
  $('empty').hidden = true;
  $('detail').hidden = false;
  $('session-id').textContent = sessionId;
  $('session-state').textContent = '…';
  $('session-state').removeAttribute('data-state');
  $('detail-error').textContent = '';
  for (const id of ['head-seq', 'rate', 'sub-count', 'max-lag', 'epoch', 'owner']) $(id).textContent = '–';
  $('subscribers').tBodies[0].replaceChildren();
  $('events').tBodies[0].replaceChildren();
  $('events-hint').textContent = 'connecting…';
  renderSessions();
  void poll(gen);
  void watch(sessionId, gen);
}

// ── polling the inspector API ───────────────────────────────────────────────
async function poll(gen) {
  if (gen !== state.generation) return;
  const controller = new AbortController();
  const timeout = setTimeout(() => controller.abort(), 5000);
  try {
    const view = await api(`${API}/sessions/${encodeURIComponent(state.selected)}`, controller.signal);
    if (gen !== state.generation) return;
    $('detail-error').textContent = '';
    renderView(view);
  } catch (err) {
    if (gen !== state.generation || authFailed(err)) return;
    $('detail-error').textContent =
      err instanceof ApiError && err.status === 404
        ? 'No such session in your tenant.'
        : `Inspector API: ${err instanceof ApiError ? err.message : 'no answer'}`;
  } finally {
    clearTimeout(timeout);
  }
  if (gen === state.generation) state.pollTimer = setTimeout(() => void poll(gen), POLL_MS);
}

function renderView(view) {
  const s = view.session;
  const badge = $('session-state');
  badge.textContent = s.state;
  badge.dataset.state = s.state;
  $('answering-node').textContent = `node: ${view.node}`;
  $('head-seq').textContent = String(view.headSeq);
  renderNodeHead(view);
  $('epoch').textContent = view.epoch;
  $('epoch').title = view.epoch;
  $('owner').textContent = `${s.ownerId} · ${new Date(s.createdAt).toLocaleString()}`;

  state.heads.push({ at: view.at, head: view.headSeq });
  while (state.heads.length > 2 && view.at - state.heads[0].at > RATE_WINDOW_MS) state.heads.shift();
  const first = state.heads[0];
  const span = view.at - first.at;
  $('rate').textContent = span > 0 ? ((view.headSeq - first.head) / (span / 1000)).toFixed(1) : '–';

  const connected = view.subscribers.filter((x) => x.state === 'connected').length;
  $('sub-count').textContent = `${connected} / ${view.subscribers.length}${view.truncated ? '+' : ''}`;
  const maxLag = view.subscribers.reduce((m, x) => Math.max(m, x.ackLag), 0);
  $('max-lag').textContent = String(maxLag);
  $('max-lag').className = `value mono ${view.subscribers.length ? lagClass(maxLag) : ''}`;

  renderSubscribers(view);

  // The list polls less often: keep the selected entry current.
  const entry = state.sessions.find((x) => x.id === s.id);
  if (entry && (entry.headSeq !== view.headSeq || entry.state !== s.state)) {
    entry.headSeq = view.headSeq;
    entry.state = s.state;
    renderSessions();
  }
}

/**
 * The answering node's own idea of the head, under the stored one. A node that stays
 * behind the stored head while events keep flowing has missed a notice: its local
 * subscribers are not being fed (a notice in flight makes it lag for a poll or so).
 */
function renderNodeHead(view) {
  const el = $('node-head');
  if (view.nodeHeadSeq === null || view.nodeHeadSeq === undefined) {
    el.textContent = 'no actor on this node';
    el.className = 'sub dim';
    return;
  }
  const behind = view.headSeq - view.nodeHeadSeq;
  el.textContent =
    behind > 0 ? `this node: ${view.nodeHeadSeq} (−${behind})` : `this node: ${view.nodeHeadSeq}`;
  el.className = `sub mono ${behind > 0 ? 'behind' : ''}`;
}

function renderSubscribers(view) {
  const seen = new Set();
  const rows = view.subscribers.map((x) => {
    seen.add(x.subscriberId);
    const history = state.lags.get(x.subscriberId) ?? [];
    history.push(x.ackLag);
    if (history.length > SPARK_POINTS) history.shift();
    state.lags.set(x.subscriberId, history);
    const mine = x.userId === state.claims.sub;
    const since =
      x.since === null
        ? '–'
        : x.state === 'connected'
          ? `${ago(view.at - x.since)}`
          : `${ago(view.at - x.since)} ago`;
    return h(
      'tr',
      { 'data-subscriber-id': x.subscriberId, 'data-state': x.state },
      h('td', {}, h('span', { class: `dot ${x.state}` }), x.state),
      h('td', { class: 'mono', title: x.subscriberId }, shortId(x.subscriberId)),
      h('td', {}, x.userId, mine ? h('span', { class: 'tag you', title: 'your token' }, 'you') : null),
      h(
        'td',
        { class: 'mono' },
        x.node ?? h('span', { class: 'dim' }, 'unknown'),
        x.local ? h('span', { class: 'tag', title: 'held by the node answering the API' }, 'here') : null,
      ),
      h(
        'td',
        {
          class: 'mono',
          title:
            x.resumableUntil !== null
              ? `resumable for ${ago(x.resumableUntil - view.at)} more`
              : 'connected since',
        },
        since,
      ),
      h('td', { class: 'num' }, x.generation),
      h('td', { class: 'num' }, x.ackedSeq),
      h(
        'td',
        {
          class: 'num',
          title: x.deliveredSeq === null ? 'known only to the node holding the connection' : '',
        },
        x.deliveredSeq === null ? h('span', { class: 'dim' }, '–') : `${x.deliveredSeq}`,
      ),
      h('td', { class: `num ${lagClass(x.ackLag)}` }, x.ackLag),
      h('td', {}, sparkline(history)),
    );
  });
  for (const id of state.lags.keys()) if (!seen.has(id)) state.lags.delete(id);
  $('subscribers').tBodies[0].replaceChildren(...rows);
  $('no-subscribers').hidden = rows.length > 0;
}

/** An inline SVG of recent ack lags: area plus line, scaled to the window's peak. */
function sparkline(values) {
  const el = svg('svg', {
    class: 'spark',
    width: SPARK_W,
    height: SPARK_H,
    viewBox: `0 0 ${SPARK_W} ${SPARK_H}`,
    role: 'img',
    'aria-label': `ack lag, last ${values.length} samples`,
  });
  const peak = Math.max(1, ...values);
  // Newest at the right edge; a short history is spread out rather than squeezed.
  const step = SPARK_W / (Math.min(SPARK_POINTS, Math.max(values.length, 15)) - 1);
  const x0 = SPARK_W - (values.length - 1) * step;
  const pts = values.map((v, i) => [x0 + i * step, SPARK_H - 2 - (v / peak) * (SPARK_H - 4)]);
  const last = values.at(-1) ?? 0;
  const color = last === 0 ? '#3ddc97' : last < 32 ? '#ffc857' : '#ff6b6b';
  el.append(svg('line', { x1: 0, x2: SPARK_W, y1: SPARK_H - 1.5, y2: SPARK_H - 1.5, stroke: '#232d3a' }));
  if (pts.length > 0) {
    const line = pts.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' ');
    const area = `${pts[0][0].toFixed(1)},${SPARK_H} ${line} ${pts.at(-1)[0].toFixed(1)},${SPARK_H}`;
    el.append(svg('polygon', { points: area, fill: color, 'fill-opacity': 0.15 }));
    el.append(svg('polyline', { points: line, fill: 'none', stroke: color, 'stroke-width': 1.5 }));
    const [lx, ly] = pts.at(-1);
    el.append(svg('circle', { cx: lx.toFixed(1), cy: ly.toFixed(1), r: 2, fill: color }));
  }
  return el;
}

// ── the live stream, through the SDK ────────────────────────────────────────
function setStreamState(name) {
  const pill = $('stream-state');
  pill.dataset.state = name;
  pill.textContent = `stream: ${name}`;
}

function loadSdk() {
  state.sdk ??= import(SDK_URL);
  return state.sdk;
}

async function watch(sessionId, gen) {
  let sdk;
  try {
    sdk = await loadSdk();
  } catch {
    state.sdk = undefined;
    setStreamState('error');
    $('events-hint').textContent = 'the client SDK bundle did not load: no live stream (see the gateway log)';
    return;
  }
  if (gen !== state.generation) return;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  state.client ??= sdk.connect({
    url: `${scheme}://${location.host}/v1/realtime`,
    token: async () => state.token,
    codec: 'json',
  });
  const sub = state.client.subscribe(sessionId, { after: 0 });
  state.sub = sub;
  setStreamState(sub.state);
  state.unsubscribe.push(
    sub.on('state', (s) => {
      if (gen === state.generation) setStreamState(typeof s === 'string' ? s : sub.state);
    }),
    sub.on('event', ({ seq, event }) => {
      if (gen !== state.generation) return;
      state.received += 1;
      state.pendingEvents.push({ seq, event });
      if (state.pendingEvents.length > MAX_EVENT_ROWS) state.pendingEvents.shift();
      scheduleFlush();
    }),
    sub.on('eos', ({ seq }) => {
      if (gen !== state.generation) return;
      setStreamState('ended');
      $('events-hint').textContent = `the session ended at seq ${seq}`;
    }),
    sub.on('error', (err) => {
      if (gen !== state.generation) return;
      $('events-hint').textContent = `stream: ${err?.code ?? 'error'} ${err?.message ?? ''}`;
    }),
  );
}

function scheduleFlush() {
  if (state.flushScheduled || $('pause').checked) return;
  state.flushScheduled = true;
  requestAnimationFrame(flushEvents);
}

/** Renders the events received since the last frame: newest on top, at most MAX_EVENT_ROWS rows. */
function flushEvents() {
  state.flushScheduled = false;
  if ($('pause').checked) return;
  const batch = state.pendingEvents;
  state.pendingEvents = [];
  if (batch.length === 0) return;
  const body = $('events').tBodies[0];
  const rows = batch.reverse().map(({ seq, event }) => {
    const family = event.type.split('.')[0];
    return h(
      'tr',
      { 'data-seq': seq, 'data-type': event.type, class: 'fresh' },
      h('td', { class: 'num' }, seq),
      h('td', { class: 'time', title: event.ts }, clock(event.ts)),
      h('td', {}, h('span', { class: `type ${family}` }, event.type)),
      h('td', { class: 'payload', title: JSON.stringify(event.payload) }, summary(event)),
    );
  });
  body.prepend(...rows);
  while (body.rows.length > MAX_EVENT_ROWS) body.lastElementChild.remove();
  $('events-hint').textContent =
    state.received > MAX_EVENT_ROWS
      ? `live, newest first · ${state.received} received, newest ${MAX_EVENT_ROWS} shown`
      : `live, newest first · ${state.received} received`;
}

// ── wiring ──────────────────────────────────────────────────────────────────
function init() {
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    void useToken($('token-input').value);
  });
  $('forget-token').addEventListener('click', () => forgetToken());
  $('refresh-sessions').addEventListener('click', () => void loadSessions());
  $('more-sessions').addEventListener('click', () => void loadSessions(true));
  $('filter-input').addEventListener('input', (e) => {
    state.filter = e.target.value;
    renderSessions();
  });
  $('open-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const id = $('open-input').value.trim();
    if (id) select(id);
  });
  $('sessions').addEventListener('click', (e) => {
    const li = e.target.closest('li[data-session-id]');
    if (li) select(li.dataset.sessionId);
  });
  $('pause').addEventListener('change', () => scheduleFlush());
  window.addEventListener('pagehide', () => void state.sub?.close({ bye: true }).catch(() => {}));

  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) {
    state.token = saved;
    state.claims = decodeClaims(saved);
    openApp();
  } else {
    showGate();
  }
}

init();
