import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { formatJson, type Json } from '../src/protocol/events/contract.ts';

/**
 * The command line of a committed, generated JSON file: no flag prints it, `--write`
 * writes it, `--check` exits 1 when the committed copy differs from what the code builds.
 */
export function generatedFileCli(file: string, script: string, build: () => Json): void {
  const path = fileURLToPath(new URL(`../${file}`, import.meta.url));
  const generated = build();
  const mode = process.argv[2];
  if (mode === '--write') {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, formatJson(generated));
    console.error(`wrote ${file}`);
  } else if (mode === '--check') {
    let committed: unknown;
    try {
      committed = JSON.parse(readFileSync(path, 'utf8'));
    } catch {
      committed = undefined;
    }
    if (!isDeepStrictEqual(committed, generated)) {
      console.error(`${file} is out of date: run \`npx tsx ${script} --write\` and commit it`);
      process.exitCode = 1;
    }
  } else if (mode === undefined) {
    process.stdout.write(formatJson(generated));
  } else {
    console.error(`usage: tsx ${script} [--write | --check]`);
    process.exitCode = 2;
  }
}
