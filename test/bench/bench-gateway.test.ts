/**
 * bench:smoke and bench:selfcheck start their gateway as bench:compare's G arms do: the
 * bundle under plain node, with `--expose-gc` and the gc hook preloaded (`benchGateway`),
 * through the chaos toolkit's GatewayProcess.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { GatewayProcess, stopAllGatewayProcesses } from '../../chaos/toolkit/gateway-process.ts';
import { benchGateway } from '../../bench/compare/servers.ts';

describe('the benchmarks’ gateway process', () => {
  after(stopAllGatewayProcesses);

  it('runs the bundle with the gc hook: SIGUSR2 answers with an exposed GC, and SIGTERM drains', async () => {
    const launch = await benchGateway();
    assert.match(launch.entry, /\.bench-build\/[^/]+\/gateway\/main\.js$/);
    const gw = await GatewayProcess.start({}, { ...launch, name: 'bench-gw' });
    assert.equal(gw.listening['engine'], 'memory');
    assert.ok(gw.port > 0);

    gw.kill('SIGUSR2');
    const line = await gw.waitForLog((l) => l.msg === 'gc', 10_000);
    assert.equal(line['exposed'], true, '--expose-gc reached the process');
    assert.ok(Number(line['rss']) > 0);

    assert.deepEqual(await gw.stop(), { code: 0, signal: null });
    assert.deepEqual(gw.problems, [], 'no warn or error lines');
  });
});
