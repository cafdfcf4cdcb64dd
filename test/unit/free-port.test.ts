/**
 * freePort never hands the same port to two processes of a test run, even when neither
 * has bound it yet: a port is claimed before it is returned (chaos/toolkit/ports.ts). Two
 * processes each take 500 ports from the same 12,000; without claims about 20 would be
 * shared.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const claims = mkdtempSync(path.join(tmpdir(), 'port-claims-'));
const toolkit = path.resolve('chaos/toolkit/ports.ts');
const script = `
  const { freePort } = await import(${JSON.stringify(toolkit)});
  const ports = [];
  for (let i = 0; i < 500; i++) ports.push(await freePort());
  console.log(JSON.stringify(ports));
`;

async function takePorts(): Promise<number[]> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    env: { ...process.env, LIFEOS_PORT_CLAIMS: claims },
  });
  return JSON.parse(stdout) as number[];
}

describe('freePort', () => {
  after(() => rmSync(claims, { recursive: true, force: true }));

  it('gives two processes no port in common', async () => {
    const [a, b] = await Promise.all([takePorts(), takePorts()]);
    assert.equal(new Set(a).size, 500);
    assert.equal(new Set(b).size, 500);
    const shared = a.filter((port) => b.includes(port));
    assert.deepEqual(shared, []);
  });
});
