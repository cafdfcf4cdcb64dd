/**
 * Script calls written as one Buffer of RESP (src/engine/redis/wire-script.ts), on a
 * private redis-server: the bytes are what ioredis would write, replies come back as
 * ioredis's utf8 commands give them, the first call on a connection loads the script
 * (EVAL) and later ones use EVALSHA, and a flushed script cache is recovered from.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Command, Redis } from 'ioredis';
import { encodeItems, WireScript } from '../../src/engine/redis/wire-script.ts';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';

const server = await RedisServer.start({ aof: false });
const clients: Redis[] = [];
after(async () => {
  for (const c of clients) c.disconnect();
  await server.stop();
});

function client(): Redis {
  const c = new Redis(server.url, { maxRetriesPerRequest: 0 });
  clients.push(c);
  return c;
}

async function commandCalls(): Promise<Record<string, number>> {
  const info = String(await server.command('INFO', 'commandstats'));
  const calls: Record<string, number> = {};
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls[m[1]!] = Number(m[2]);
  return calls;
}

/** Echoes its keys and args back, and the args' byte lengths as Redis sees them. */
const ECHO = `return { KEYS, ARGV, (function() local n = {} for i, a in ipairs(ARGV) do n[i] = #a end return n end)() }`;

describe('wire script', () => {
  it('encodes bulk strings exactly as ioredis does', () => {
    const items = ['evalsha', 'x'.repeat(40), 3, 'k1', 'ключ', '', 0, -5, 12.5, '😀 emoji', 'a\r\nb'];
    const command = new Command(
      'evalsha',
      items.slice(1).map((i) => (typeof i === 'number' ? String(i) : i)),
      { replyEncoding: 'utf8' },
    );
    const theirs = command.toWritable(undefined as never);
    const ours = Buffer.concat([Buffer.from(`*${items.length}\r\n`), encodeItems(items)]);
    assert.equal(ours.toString('utf8'), String(theirs));
  });

  it('runs with keys and args, non-ASCII and empty ones included, and replies with strings', async () => {
    const redis = client();
    const echo = new WireScript(ECHO);
    const reply = await echo.run(redis, ['{t}a', '{t}b'], ['plain', 'ключ 😀', '', 42]);
    assert.deepEqual(reply, [
      ['{t}a', '{t}b'],
      ['plain', 'ключ 😀', '', '42'],
      [5, Buffer.byteLength('ключ 😀'), 0, 2],
    ]);
  });

  it('loads the script with EVAL on a connection once, then uses EVALSHA', async () => {
    const redis = client();
    const script = new WireScript(`return ARGV[1] .. '-${Math.random()}'`);
    await server.command('CONFIG', 'RESETSTAT');
    for (let i = 0; i < 5; i++)
      assert.match(String(await script.run(redis, [], [String(i)])), new RegExp(`^${i}-`));
    const calls = await commandCalls();
    assert.equal(calls['eval'], 1);
    assert.equal(calls['evalsha'], 4);
  });

  it('after SCRIPT FLUSH, a call is answered all the same (NOSCRIPT, then EVAL)', async () => {
    const redis = client();
    const script = new WireScript(`return 'still ' .. ARGV[1]`);
    assert.equal(await script.run(redis, [], ['here']), 'still here');
    await server.command('SCRIPT', 'FLUSH');
    await server.command('CONFIG', 'RESETSTAT');
    assert.equal(await script.run(redis, [], ['there']), 'still there');
    assert.equal(await script.run(redis, [], ['again']), 'still again');
    const calls = await commandCalls();
    assert.equal(calls['evalsha'], 2, 'the one refused with NOSCRIPT, and the last one');
    assert.equal(calls['eval'], 1);
  });

  it('passes script errors through as rejections', async () => {
    const redis = client();
    const failing = new WireScript(`return redis.error_reply('ERR wire test: ' .. ARGV[1])`);
    await assert.rejects(failing.run(redis, [], ['boom']), /ERR wire test: boom/);
    await assert.rejects(failing.run(redis, [], ['again']), /ERR wire test: again/);
  });
});
