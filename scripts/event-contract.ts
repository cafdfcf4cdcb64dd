/**
 * Prints the event contract fixture built from the TypeBox schemas (src/protocol/events/contract.ts).
 *
 *   npx tsx scripts/event-contract.ts           print it to stdout
 *   npx tsx scripts/event-contract.ts --write   write it to the committed file
 *   npx tsx scripts/event-contract.ts --check   exit 1 if the committed file is out of date
 *
 * test/unit/event-contract.test.ts runs the same check in CI.
 */
import { buildEventContract, EventContractFile } from '../src/protocol/events/contract.ts';
import { generatedFileCli } from './generated-file.ts';

generatedFileCli(EventContractFile, 'scripts/event-contract.ts', buildEventContract);
