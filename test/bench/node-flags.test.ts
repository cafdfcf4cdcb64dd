/**
 * BENCH_NODE_FLAGS reaches every arm server alike, workers included: the rule is
 * that every arm runs with the same Node flags, so a runtime tuning is compared only when
 * the peers get it too. Each test file runs in its own process, so setting the variable
 * before servers.ts is loaded affects this file alone.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import type { ArmServer as ArmServerType } from '../../bench/compare/servers.ts';

process.env['BENCH_NODE_FLAGS'] = '--single-threaded-gc  --max-semi-space-size=8';
delete process.env['BENCH_G_FLAGS'];
const { ARMS, ARM_EXTRA_FLAGS, ArmServer } = await import('../../bench/compare/servers.ts');

/** A process's argv, from /proc. */
const argvOf = (pid: number): string[] =>
  readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);

describe('bench:compare BENCH_NODE_FLAGS', () => {
  const servers: ArmServerType[] = [];
  after(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  it('splits the variable into flags', () => {
    assert.deepEqual(ARM_EXTRA_FLAGS, ['--single-threaded-gc', '--max-semi-space-size=8']);
  });

  for (const name of ['U', 'Gm', 'S']) {
    it(`runs the ${name} arm's server with them, before its script`, async () => {
      const server = await ArmServer.start(ARMS[name]!);
      servers.push(server);
      const argv = argvOf(server.pids[0]!);
      const at = argv.indexOf('--single-threaded-gc');
      assert.ok(at > 0, `flags in ${argv.join(' ')}`);
      assert.equal(argv[at + 1], '--max-semi-space-size=8');
      assert.ok(at < argv.indexOf('--expose-gc'), 'before the arm’s own flags and script');
    });
  }

  it('hands them on to every worker of G2', async () => {
    const server = await ArmServer.start(ARMS['G2']!);
    servers.push(server);
    const [primary, ...workers] = server.pids;
    assert.equal(workers.length, 2);
    for (const pid of [primary!, ...workers]) {
      assert.ok(argvOf(pid).includes('--single-threaded-gc'), `pid ${pid}: ${argvOf(pid).join(' ')}`);
    }
  });
});
