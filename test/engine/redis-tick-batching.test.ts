/**
 * Per-tick batching across sessions in the redis engine (issue 6, many sessions with a
 * few events each): appends, checkpoint writes and takeovers made in one tick go to Redis
 * as one script call, observed on a private redis-server through its command stats, and
 * each call still gets exactly the answer it would have got on its own.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { RedisEngine } from '../../src/engine/redis/redis-engine.ts';
import type { AppendResult } from '../../src/engine/engine.ts';
import { EngineUnavailableError, GatewayError } from '../../src/errors/gateway-error.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { CONTRACT_LIMITS, makeEvent, uniqueId } from './contract.ts';

const server = await RedisServer.start({ aof: false });
const engines: RedisEngine[] = [];

after(async () => {
  for (const engine of engines) await engine.close();
  await server.stop();
});

async function connect(commandTimeoutMs?: number): Promise<RedisEngine> {
  const engine = await RedisEngine.connect({
    url: server.url,
    clock: new ManualClock(),
    limits: CONTRACT_LIMITS,
    keyPrefix: `t${randomBytes(3).toString('hex')}:`,
    ...(commandTimeoutMs !== undefined ? { commandTimeoutMs } : {}),
  });
  engines.push(engine);
  return engine;
}

async function scriptRuns(): Promise<number> {
  const info = String(await server.command('INFO', 'commandstats'));
  let runs = 0;
  for (const m of info.matchAll(/^cmdstat_(evalsha|eval):calls=(\d+)/gm)) runs += Number(m[2]);
  return runs;
}

const resetStats = () => server.command('CONFIG', 'RESETSTAT');
const sub = (id: string) => ({ id, userId: 'u', tenantId: 't', after: 0 });

describe('redis engine: per-tick batching across sessions', () => {
  it('appends the batches of many sessions made in one tick with one script call, each with its own outcome', async () => {
    const engine = await connect();
    const sids = Array.from({ length: 40 }, () => uniqueId('s'));
    const ended = sids[7]!;
    // warm-up: scripts loaded, every stream exists; one session already has events, one ended
    await Promise.all(sids.map((sid) => engine.append(sid, [makeEvent(sid, 'first')])));
    await engine.endStream(ended);
    await resetStats();
    const results = await Promise.allSettled(
      sids.map((sid, i) =>
        engine.append(sid, [makeEvent(sid, `a${i}`), makeEvent(sid, 'first'), makeEvent(sid, `b${i}`)]),
      ),
    );
    assert.equal(await scriptRuns(), 1, 'one script call for the whole tick');
    results.forEach((r, i) => {
      if (sids[i] === ended) {
        assert.equal(r.status, 'rejected');
        assert.ok(r.reason instanceof GatewayError && r.reason.code === 'session_ended');
        return;
      }
      assert.equal(r.status, 'fulfilled');
      assert.deepEqual(r.value.outcomes, [
        { seq: 2, duplicate: false },
        { seq: 1, duplicate: true },
        { seq: 3, duplicate: false },
      ]);
      assert.equal(r.value.headSeq, 3);
    });
    // nothing of the refused batch was stored, and every other stream holds its own events
    assert.equal((await engine.head(ended)).headSeq, 1);
    const page = await engine.read(sids[3]!, 0, 10);
    assert.deepEqual(
      page.events.map((e) => [e.seq, e.event.eventId]),
      [
        [1, 'first'],
        [2, 'a3'],
        [3, 'b3'],
      ],
    );
  });

  it('applies two batches of one session in one tick in call order', async () => {
    const engine = await connect();
    const sid = uniqueId('s');
    const [a, b] = await Promise.all([
      engine.append(sid, [makeEvent(sid, 'x'), makeEvent(sid, 'y')]),
      engine.append(sid, [makeEvent(sid, 'y'), makeEvent(sid, 'z')]),
    ]);
    assert.deepEqual(
      a.outcomes.map((o) => o.seq),
      [1, 2],
    );
    assert.deepEqual(b.outcomes, [
      { seq: 2, duplicate: true },
      { seq: 3, duplicate: false },
    ]);
    assert.equal(b.headSeq, 3);
  });

  it('splits a large tick into bounded calls', async () => {
    const engine = await connect();
    const sids = Array.from({ length: 600 }, () => uniqueId('s'));
    await engine.append(sids[0]!, [makeEvent(sids[0]!, 'warm')]);
    await resetStats();
    const results = await Promise.all(sids.map((sid) => engine.append(sid, [makeEvent(sid, 'e')])));
    assert.equal(await scriptRuns(), 3, '600 sessions: 256 per call');
    assert.ok(results.every((r) => r.outcomes.length === 1));
  });

  it('saves the checkpoints of many sessions in one call, each fenced and monotonic on its own', async () => {
    const engine = await connect();
    const sids = Array.from({ length: 20 }, () => uniqueId('s'));
    await Promise.all(sids.map((sid) => engine.createSubscriber(sid, sub('a'))));
    await engine.saveCheckpoint(sids[0]!, 'a', 1, 1); // warm-up
    const taken = await engine.takeoverSubscriber(sids[1]!, 'a', 0, 120_000); // generation 2
    assert.equal(taken?.generation, 2);
    await resetStats();
    const saved = await Promise.all([
      ...sids.map((sid, i) => engine.saveCheckpoint(sid, 'a', 1, 10 + i)),
      engine.saveCheckpoint(sids[0]!, 'a', 1, 5), // lower: ignored
      engine.saveCheckpoint(sids[2]!, 'a', 1, 40), // same subscriber again, higher: applied in order
      engine.saveCheckpoint(uniqueId('gone'), 'a', 1, 3), // no such subscriber
    ]);
    assert.equal(await scriptRuns(), 1);
    assert.equal(saved[0], 10);
    assert.equal(saved[1], 0, 'generation 1 is fenced after the takeover');
    assert.equal(saved[5], 15);
    assert.deepEqual(saved.slice(20), [10, 40, 0]);
    assert.equal((await engine.getSubscriber(sids[2]!, 'a'))?.checkpoint, 40);
    assert.equal((await engine.getSubscriber(sids[1]!, 'a'))?.checkpoint, 0);
  });

  it('sends the saveCheckpoints groups of a tick, of many sessions, with the single writes in one call', async () => {
    const engine = await connect();
    const sids = Array.from({ length: 3 }, () => uniqueId('s'));
    const ids = Array.from({ length: 300 }, (_, i) => `sub${i}`);
    await Promise.all(sids.flatMap((sid) => ids.map((id) => engine.createSubscriber(sid, sub(id)))));
    await engine.saveCheckpoint(sids[0]!, 'sub0', 1, 1); // warm-up
    await resetStats();
    const [groups, single] = await Promise.all([
      Promise.all(
        sids.map((sid, s) =>
          engine.saveCheckpoints(
            sid,
            ids.map((id, i) => ({ subscriberId: id, generation: 1, seq: 100 * s + i + 2 })),
          ),
        ),
      ),
      engine.saveCheckpoint(sids[1]!, 'sub7', 1, 1000), // after the group's write of sub7
    ]);
    // 901 checkpoints, 512 per call
    assert.equal(await scriptRuns(), 2);
    groups.forEach((stored, s) =>
      assert.deepEqual(
        stored,
        ids.map((_, i) => 100 * s + i + 2),
      ),
    );
    assert.equal(single, 1000);
    assert.equal((await engine.getSubscriber(sids[2]!, 'sub299'))?.checkpoint, 200 + 299 + 2);
  });

  it('paces a burst of checkpoints: an append made with it is answered after one checkpoint call, not all', async () => {
    const engine = await connect();
    const sid = uniqueId('s');
    const ids = Array.from({ length: 2048 }, (_, i) => `sub${i}`);
    await Promise.all(ids.map((id) => engine.createSubscriber(sid, sub(id))));
    await engine.append(sid, [makeEvent(sid, 'warm')]);
    await resetStats();
    const order: string[] = [];
    const checkpoints = engine
      .saveCheckpoints(
        sid,
        ids.map((id) => ({ subscriberId: id, generation: 1, seq: 1 })),
      )
      .then((stored) => {
        order.push('checkpoints');
        return stored;
      });
    const appended = engine.append(sid, [makeEvent(sid, 'during')]).then((r) => {
      order.push('append');
      return r;
    });
    const [stored, append] = await Promise.all([checkpoints, appended]);
    assert.deepEqual(order, ['append', 'checkpoints']);
    assert.equal(append.headSeq, 2);
    assert.ok(stored.every((seq) => seq === 1));
    assert.equal(await scriptRuns(), 5, 'four checkpoint calls of 512, one append');
  });

  it('rejects a saveCheckpoints group once, with the engine error, when its call fails', async () => {
    const engine = await connect(300);
    const sid = uniqueId('s');
    server.pause();
    try {
      const writes = Array.from({ length: 600 }, (_, i) => ({
        subscriberId: `x${i}`,
        generation: 1,
        seq: 1,
      }));
      await assert.rejects(engine.saveCheckpoints(sid, writes), EngineUnavailableError);
    } finally {
      server.resume();
    }
  });

  it('takes over subscribers of one tick in one call, in call order', async () => {
    const engine = await connect();
    const [s1, s2] = [uniqueId('s'), uniqueId('s')];
    await Promise.all([
      engine.createSubscriber(s1, sub('a')),
      engine.createSubscriber(s1, sub('b')),
      engine.createSubscriber(s2, sub('a')),
    ]);
    await engine.endSubscriber(s2, 'a');
    await engine.takeoverSubscriber(s1, 'b', 0, 1000); // warm-up: generation 2
    await resetStats();
    const records = await Promise.all([
      engine.takeoverSubscriber(s1, 'a', 0, 1000, 'node-1'),
      engine.takeoverSubscriber(s1, 'b', 0, 1000),
      engine.takeoverSubscriber(s1, 'a', 0, 1000, 'node-2'), // the same subscriber again: later wins
      engine.takeoverSubscriber(s2, 'a', 0, 1000), // ended: not resumable
    ]);
    assert.equal(await scriptRuns(), 1);
    assert.equal(records[0]?.generation, 2);
    assert.equal(records[0]?.node, 'node-1');
    assert.equal(records[1]?.generation, 3);
    assert.equal(records[2]?.generation, 3);
    assert.equal(records[2]?.node, 'node-2');
    assert.equal(records[3], undefined);
    const stored = await engine.getSubscriber(s1, 'a');
    assert.equal(stored?.generation, 3);
    assert.equal(stored?.node, 'node-2');
  });

  it('a session whose keys hold the wrong type fails alone, and its later calls are not batched with others', async () => {
    const engine = await connect();
    const sids = Array.from({ length: 5 }, () => uniqueId('s'));
    const bad = sids[2]!;
    await Promise.all(sids.map((sid) => engine.createSubscriber(sid, sub('a'))));
    await Promise.all(sids.map((sid) => engine.append(sid, [makeEvent(sid, 'first')])));
    await engine.saveCheckpoint(sids[0]!, 'a', 1, 1); // warm-up: the script is loaded
    // another program's values under the session's keys (or an older layout's)
    const keys = (await server.command('KEYS', `*{${bad}}:*`)) as string[];
    const meta = keys.find((key) => key.endsWith(':meta'))!;
    const subKey = keys.find((key) => key.includes(':sub:'))!;
    const subs = keys.find((key) => key.endsWith(':subs'))!;
    await server.command('DEL', meta, subKey, subs);
    for (const key of [meta, subKey, subs]) await server.command('SET', key, 'not a hash');
    await resetStats();
    const appended = await Promise.allSettled(
      sids.map((sid) => engine.append(sid, [makeEvent(sid, 'second')])),
    );
    // the batch refused, then sent again one call each
    assert.equal(await scriptRuns(), 1 + sids.length);
    await resetStats();
    // from now on the bad session's calls go alone: a batch for the rest, one call for it
    const saved = await Promise.allSettled(sids.map((sid) => engine.saveCheckpoint(sid, 'a', 1, 2)));
    assert.equal(await scriptRuns(), 2, 'checkpoints: the batch of four and the bad one alone');
    await resetStats();
    const third = await Promise.allSettled(sids.map((sid) => engine.append(sid, [makeEvent(sid, 'third')])));
    assert.equal(await scriptRuns(), 2, 'appends: the batch of four and the bad one alone');
    const created = await Promise.allSettled(sids.map((sid) => engine.createSubscriber(sid, sub('b'))));
    sids.forEach((sid, i) => {
      for (const [what, result] of [
        ['append', appended[i]!],
        ['checkpoint', saved[i]!],
        ['third append', third[i]!],
        ['create', created[i]!],
      ] as const) {
        if (sid === bad) {
          assert.equal(result.status, 'rejected', `${what} of the bad session`);
          assert.match(String(result.reason), /WRONGTYPE/);
          assert.ok(!(result.reason instanceof EngineUnavailableError), 'a defect, not an outage');
        } else
          assert.equal(
            result.status,
            'fulfilled',
            `${what} ${i}: ${String((result as PromiseRejectedResult).reason)}`,
          );
      }
    });
    for (const sid of sids.filter((sid) => sid !== bad)) {
      const { events, headSeq } = await engine.read(sid, 0, 10);
      assert.deepEqual(
        events.map((e) => [e.seq, e.event.eventId]),
        [
          [1, 'first'],
          [2, 'second'],
          [3, 'third'],
        ],
        'stored once each',
      );
      assert.equal(headSeq, 3);
      // batched without the bad session, the third append was not refused and resent
      const outcome = (third[sids.indexOf(sid)] as PromiseFulfilledResult<AppendResult>).value.outcomes[0];
      assert.deepEqual(outcome, { seq: 3, duplicate: false });
      assert.equal((await engine.getSubscriber(sid, 'a'))?.checkpoint, 2);
      assert.equal((await engine.getSubscriber(sid, 'b'))?.generation, 1);
    }
  });

  it('fails every call of a batch together when Redis does not answer', async () => {
    const engine = await connect(300);
    const sids = Array.from({ length: 5 }, () => uniqueId('s'));
    server.pause();
    try {
      const results = await Promise.allSettled([
        ...sids.map((sid) => engine.append(sid, [makeEvent(sid, 'e')])),
        ...sids.map((sid) => engine.saveCheckpoint(sid, 'a', 1, 1)),
        ...sids.map((sid) => engine.takeoverSubscriber(sid, 'a', 0, 1000)),
      ]);
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        assert.ok(r.reason instanceof EngineUnavailableError, String(r.reason));
      }
    } finally {
      server.resume();
    }
  });

  it('sends what is queued before it closes', async () => {
    const engine = await connect();
    const sid = uniqueId('s');
    await engine.createSubscriber(sid, sub('a'));
    const appended = engine.append(sid, [makeEvent(sid, 'last')]);
    const saved = engine.saveCheckpoint(sid, 'a', 1, 1);
    await engine.close();
    assert.equal((await appended).headSeq, 1);
    assert.equal(await saved, 1);
  });
});
