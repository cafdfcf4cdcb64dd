import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { withTable } from '../../scripts/config-table.ts';
import { ErrorCodes } from '../../src/errors/codes.ts';
import { CloseCodes } from '../../src/protocol/close-codes.ts';

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

describe('docs agree with the code', () => {
  it('README configuration table equals the config schema (tsx scripts/config-table.ts --write)', () => {
    const readme = read('README.md');
    assert.equal(readme, withTable(readme));
  });

  it('README has the two commands', () => {
    const readme = read('README.md');
    assert.match(readme, /npm ci && npm start/);
    assert.match(readme, /npm test/);
  });

  it('docs/errors.md lists every error code', () => {
    const doc = read('docs/errors.md');
    for (const code of Object.keys(ErrorCodes)) assert.match(doc, new RegExp(`\`${code}\``), code);
  });

  it('docs/protocol.md lists every close code', () => {
    const doc = read('docs/protocol.md');
    for (const [name, code] of Object.entries(CloseCodes)) {
      assert.match(doc, new RegExp(`\\b${code}\\b`), `${code}`);
      assert.match(doc, new RegExp(name), name);
    }
  });
});
