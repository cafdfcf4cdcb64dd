/**
 * PROTOCOL.md §5: the gateway's close codes are exactly the table of the contract, and
 * the "resume or not" rule follows the ranges it states; §3's default timings.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import { CloseCodes, isResumable } from '../../src/protocol/close-codes.ts';

const PROTOCOL_URL = new URL('../../../shared/PROTOCOL.md', import.meta.url);

function protocolText(): string {
  try {
    return readFileSync(PROTOCOL_URL, 'utf8');
  } catch (err) {
    throw new Error(
      `PROTOCOL.md not found at ${PROTOCOL_URL.pathname}: the conformance tests need the shared contract ` +
        `checked out next to this repository (../shared/PROTOCOL.md). ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/** The rows of the table under "## 5. Close codes": code → name. */
function closeCodeTable(markdown: string): Map<number, string> {
  const start = markdown.search(/^## 5\. Close codes/m);
  assert.ok(start >= 0, 'PROTOCOL.md has a "## 5. Close codes" section');
  const rest = markdown.slice(start);
  const next = rest.slice(3).search(/^## /m);
  const section = next < 0 ? rest : rest.slice(0, next + 3);
  const rows = new Map<number, string>();
  for (const line of section.split('\n')) {
    const m = /^\|\s*(\d{4})\s*\|\s*([a-z_]+)\b[^|]*\|/.exec(line.trim());
    if (m) rows.set(Number(m[1]), m[2]!);
  }
  assert.ok(rows.size > 0, 'the close code table has rows');
  return rows;
}

describe('§5 close codes', () => {
  it('§5 close codes: the gateway CloseCodes map equals the table in PROTOCOL.md', () => {
    const table = closeCodeTable(protocolText());
    const ours = new Map(Object.entries(CloseCodes).map(([name, code]) => [code as number, name]));
    assert.deepEqual(
      [...ours.entries()].sort((a, b) => a[0] - b[0]),
      [...table.entries()].sort((a, b) => a[0] - b[0]),
    );
  });

  it('§5 close codes: 4100–4199 and 1001 mean "resume", 4000–4099 and 1000 mean "do not resume"', () => {
    for (const code of Object.values(CloseCodes)) {
      const expected = code === 1001 || (code >= 4100 && code <= 4199);
      assert.equal(isResumable(code), expected, `isResumable(${code})`);
    }
    assert.equal(isResumable(4150), true);
    assert.equal(isResumable(4050), false);
  });
});

describe('§3 defaults', () => {
  it('§3 defaults: hello must come within 10 s and resumeWindowMs is 120 000 unless configured', () => {
    const { config } = loadConfig({ AUTH_JWT_SECRET: 'x'.repeat(40) });
    assert.equal(config.HELLO_TIMEOUT_MS, 10_000);
    assert.equal(config.RESUME_WINDOW_MS, 120_000);
  });
});
