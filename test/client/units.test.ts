/**
 * The SDK's pure parts: backoff with full jitter, the close-code table, JWT expiry,
 * publish ids, the storage adapters and option validation. No gateway.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import WebSocket from 'ws';
import {
  backoffDelay,
  closeAction,
  CloseCodes,
  connect,
  keyValueStorage,
  localStorageStorage,
  memoryStorage,
  type Checkpoint,
  type KeyValueStore,
} from '../../client/index.ts';
import { jwtExpiryMs, randomId } from '../../client/util.ts';
import { CloseCodes as GatewayCloseCodes, isResumable } from '../../src/protocol/close-codes.ts';

describe('client: backoff (full jitter)', () => {
  it('every delay lies in [0, min(cap, base × 2^attempt)) and reaches the ceiling as random → 1', () => {
    const base = 100;
    const cap = 5000;
    for (let attempt = 0; attempt < 40; attempt++) {
      const ceiling = Math.min(cap, base * 2 ** attempt);
      assert.equal(
        backoffDelay(attempt, { baseMs: base, capMs: cap }, () => 0),
        0,
      );
      const top = backoffDelay(attempt, { baseMs: base, capMs: cap }, () => 1 - Number.EPSILON);
      assert.ok(top < ceiling && top >= ceiling - 1, `attempt ${attempt}: ${top} vs ceiling ${ceiling}`);
      assert.equal(
        backoffDelay(attempt, { baseMs: base, capMs: cap }, () => 0.5),
        Math.floor(ceiling / 2),
      );
    }
  });

  it('is uniform over the whole window, not "ceiling ± jitter"', () => {
    // A seeded generator: the same draws every run.
    let seed = 42;
    const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    const draws = Array.from({ length: 2000 }, () => backoffDelay(3, { baseMs: 100, capMs: 5000 }, random));
    assert.ok(draws.every((d) => d >= 0 && d < 800));
    assert.ok(
      draws.some((d) => d < 80),
      'some draws in the lowest tenth',
    );
    assert.ok(
      draws.some((d) => d >= 720),
      'some draws in the highest tenth',
    );
  });

  it('never overflows for huge attempts', () => {
    assert.ok(Number.isFinite(backoffDelay(10_000, { baseMs: 1, capMs: 30_000 }, () => 0.999)));
  });
});

describe('client: close codes (PROTOCOL.md §5)', () => {
  it("the SDK's close-code table equals the gateway's", () => {
    for (const [name, code] of Object.entries(GatewayCloseCodes)) {
      assert.equal((CloseCodes as Record<string, number>)[name], code, name);
    }
  });

  it('maps each code to what §5 says a client should do', () => {
    const expected: Record<number, string> = {
      1000: 'stop',
      1001: 'resume',
      1006: 'resume',
      1009: 'stop',
      1013: 'resume',
      4000: 'stop',
      4001: 'reauth',
      4003: 'stop',
      4004: 'stop',
      4009: 'stop',
      4010: 'fresh',
      4011: 'history_gone',
      4050: 'stop',
      4100: 'resume',
      4101: 'resume',
      4150: 'resume',
    };
    for (const [code, action] of Object.entries(expected))
      assert.equal(closeAction(Number(code)), action, code);
  });

  it('resumes exactly where the gateway says a close is resumable, and never in 4000–4099', () => {
    for (let code = 4000; code <= 4199; code++) {
      assert.equal(closeAction(code) === 'resume', isResumable(code), String(code));
    }
    assert.equal(closeAction(1001), 'resume');
  });
});

describe('client: helpers', () => {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

  it('reads exp from a JWT without verifying it; undefined when there is none', () => {
    assert.equal(
      jwtExpiryMs(`${b64({ alg: 'HS256' })}.${b64({ sub: 'a', exp: 1_900_000_000 })}.sig`),
      1_900_000_000_000,
    );
    assert.equal(jwtExpiryMs(`${b64({ alg: 'HS256' })}.${b64({ sub: 'ü-ñ' })}.sig`), undefined);
    assert.equal(jwtExpiryMs('not-a-jwt'), undefined);
    assert.equal(jwtExpiryMs('a.%%%.c'), undefined);
  });

  it('publish ids are 22 characters of the eventId alphabet and do not repeat', () => {
    const ids = new Set(Array.from({ length: 5000 }, randomId));
    assert.equal(ids.size, 5000);
    for (const id of ids) assert.match(id, /^[A-Za-z0-9]{22}$/);
  });

  it('connect() reports every invalid option at once', () => {
    assert.throws(
      () =>
        connect({
          url: 'http://nope',
          token: 5 as never,
          codec: 'xml' as never,
          WebSocket,
          acks: { every: 0 },
          backoff: { capMs: -1 },
        }),
      (err: Error) =>
        err instanceof TypeError &&
        ['url', 'token', 'codec', 'acks.every', 'backoff.capMs'].every((k) => err.message.includes(k)),
    );
  });

  it('connect() without a WebSocket says how to pass one', () => {
    const g = globalThis as { WebSocket?: unknown };
    const saved = g.WebSocket;
    delete g.WebSocket;
    try {
      assert.throws(() => connect({ url: 'ws://x/v1/realtime', token: 't' }), /options\.WebSocket/);
    } finally {
      if (saved !== undefined) g.WebSocket = saved;
    }
  });
});

describe('client: storage adapters', () => {
  const cp: Checkpoint = { sessionId: 'cs_1', lastSeq: 7, epoch: 'e1', resumeToken: 'rt', updatedAt: 1 };

  it('memoryStorage keeps copies, per instance', async () => {
    const a = memoryStorage();
    const b = memoryStorage();
    await a.set('k', cp);
    assert.deepEqual(await a.get('k'), cp);
    assert.equal(await b.get('k'), undefined);
    (await a.get('k'))!.lastSeq = 99;
    assert.equal((await a.get('k'))!.lastSeq, 7, 'a caller cannot change what is stored');
    await a.delete('k');
    assert.equal(await a.get('k'), undefined);
  });

  it('localStorageStorage stores JSON under the prefix and ignores corrupt entries', async () => {
    const map = new Map<string, string>();
    const fake: KeyValueStore = {
      getItem: (k) => map.get(k) ?? null,
      setItem: (k, v) => void map.set(k, v),
      removeItem: (k) => void map.delete(k),
    };
    const storage = localStorageStorage('app:', fake);
    await storage.set('cs_1', cp);
    assert.deepEqual(JSON.parse(map.get('app:cs_1')!), cp);
    assert.deepEqual(await storage.get('cs_1'), cp);
    map.set('app:bad', '{not json');
    assert.equal(await storage.get('bad'), undefined);
    map.set('app:wrong', JSON.stringify({ lastSeq: 'x' }));
    assert.equal(await storage.get('wrong'), undefined);
    await storage.delete('cs_1');
    assert.equal(map.has('app:cs_1'), false);
    assert.throws(() => localStorageStorage('x:'), /no localStorage/);
  });

  it('keyValueStorage works over an async store (AsyncStorage, IndexedDB wrappers)', async () => {
    const map = new Map<string, string>();
    const later = <T>(v: T) => new Promise<T>((resolve) => setImmediate(() => resolve(v)));
    const asyncStore: KeyValueStore = {
      getItem: (k) => later(map.get(k) ?? null),
      setItem: async (k, v) => void map.set(k, await later(v)),
      removeItem: async (k) => void map.delete(await later(k)),
    };
    const storage = keyValueStorage(asyncStore, 'rn:');
    await storage.set('s', cp);
    assert.deepEqual(await storage.get('s'), cp);
    await storage.delete('s');
    assert.equal(await storage.get('s'), undefined);
  });
});
