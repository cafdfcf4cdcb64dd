/**
 * Prints the event client JSON Schema built from the TypeBox schemas (src/protocol/events/contract.ts).
 *
 *   npx tsx scripts/export-json-schema.ts           print it to stdout
 *   npx tsx scripts/export-json-schema.ts --write   write it to the committed file
 *   npx tsx scripts/export-json-schema.ts --check   exit 1 if the committed file is out of date
 *
 * test/unit/event-contract.test.ts runs the same check in CI.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { buildJsonSchemaDocument, JsonSchemaFile, formatJson } from '../src/protocol/events/contract.ts';

const path = fileURLToPath(new URL(`../${JsonSchemaFile}`, import.meta.url));
const generated = buildJsonSchemaDocument();
const mode = process.argv[2];

if (mode === '--write') {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, formatJson(generated));
  console.error(`wrote ${JsonSchemaFile}`);
} else if (mode === '--check') {
  let committed: unknown;
  try {
    committed = JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    committed = undefined;
  }
  if (!isDeepStrictEqual(committed, generated)) {
    console.error(
      `${JsonSchemaFile} is out of date: run \`npx tsx scripts/export-json-schema.ts --write\` and commit it`,
    );
    process.exitCode = 1;
  }
} else if (mode === undefined) {
  process.stdout.write(formatJson(generated));
} else {
  console.error('usage: tsx scripts/export-json-schema.ts [--write | --check]');
  process.exitCode = 2;
}
