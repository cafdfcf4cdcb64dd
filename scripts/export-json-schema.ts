/**
 * Prints the event client JSON Schema built from the TypeBox schemas (src/protocol/events/contract.ts).
 *
 *   npx tsx scripts/export-json-schema.ts           print it to stdout
 *   npx tsx scripts/export-json-schema.ts --write   write it to the committed file
 *   npx tsx scripts/export-json-schema.ts --check   exit 1 if the committed file is out of date
 *
 * test/unit/event-contract.test.ts runs the same check in CI.
 */
import { buildJsonSchemaDocument, JsonSchemaFile } from '../src/protocol/events/contract.ts';
import { generatedFileCli } from './generated-file.ts';

generatedFileCli(JsonSchemaFile, 'scripts/export-json-schema.ts', buildJsonSchemaDocument);
