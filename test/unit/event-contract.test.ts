/**
 * The committed contract files are exactly what the schemas generate. Changing, adding
 * or removing an event type, or changing who may publish it, fails here until the files
 * are regenerated, so every contract change is visible in review:
 *
 *   npx tsx scripts/event-contract.ts --write       test/fixtures/event-contract.v1.json
 *   npx tsx scripts/export-json-schema.ts --write   schema/lifeos.event.v1.json
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { EventTypes, mayPublish, TerminalEventTypes } from '../../src/protocol/event-types.ts';
import {
  buildEventContract,
  buildJsonSchemaDocument,
  EventContractFile,
  JsonSchemaFile,
  pascalName,
  type Json,
} from '../../src/protocol/events/contract.ts';
import { Roles } from '../../src/protocol/roles.ts';

type JsonObject = { [key: string]: Json };

function readCommitted(file: string): JsonObject {
  return JSON.parse(
    readFileSync(fileURLToPath(new URL(`../../${file}`, import.meta.url)), 'utf8'),
  ) as JsonObject;
}

/** Names the top-level keys (and event types) that differ, so the failure says what changed. */
function differences(committed: JsonObject, generated: JsonObject, nested: string): string[] {
  const out: string[] = [];
  for (const key of new Set([...Object.keys(committed), ...Object.keys(generated)])) {
    if (isDeepStrictEqual(committed[key], generated[key])) continue;
    const a = committed[key];
    const b = generated[key];
    if (key === nested && a && b && typeof a === 'object' && typeof b === 'object') {
      for (const d of differences(a as JsonObject, b as JsonObject, '')) out.push(`${key}.${d}`);
    } else {
      out.push(!(key in committed) ? `${key} (added)` : !(key in generated) ? `${key} (removed)` : key);
    }
  }
  return out;
}

function assertUpToDate(file: string, generated: JsonObject, script: string, nested: string): void {
  const committed = readCommitted(file);
  const changed = differences(committed, generated, nested);
  assert.ok(
    changed.length === 0,
    `${file} is out of date (${changed.join(', ')}).\n` +
      `If the change is intended, run \`npx tsx scripts/${script} --write\` and commit the file.`,
  );
}

describe('event contract fixture', () => {
  it(`${EventContractFile} matches the schemas`, () => {
    assertUpToDate(EventContractFile, buildEventContract(), 'event-contract.ts', 'types');
  });

  it('lists every type with producers that agree with mayPublish and the terminal set', () => {
    const types = readCommitted(EventContractFile)['types'] as JsonObject;
    assert.deepEqual(Object.keys(types).sort(), Object.keys(EventTypes).sort());
    for (const [type, entry] of Object.entries(types)) {
      const { producers, terminal } = entry as { producers: string[]; terminal: boolean };
      const expected = ['gateway', ...Roles.filter((role) => mayPublish(role, type))];
      assert.deepEqual(producers, expected, type);
      assert.equal(terminal, TerminalEventTypes.has(type), type);
    }
  });
});

describe('client JSON Schema', () => {
  it(`${JsonSchemaFile} matches the schemas`, () => {
    assertUpToDate(JsonSchemaFile, buildJsonSchemaDocument(), 'export-json-schema.ts', 'definitions');
  });

  it('has one oneOf branch per type, discriminated by a const type and pointing at its payload', () => {
    const doc = readCommitted(JsonSchemaFile);
    const definitions = doc['definitions'] as JsonObject;
    const refs = (doc['oneOf'] as Array<{ $ref: string }>).map((v) => v.$ref);
    assert.equal(refs.length, Object.keys(EventTypes).length);
    const discriminators = refs.map((ref) => {
      const name = ref.replace('#/definitions/', '');
      const event = definitions[name] as { properties: Record<string, { const?: string; $ref?: string }> };
      assert.ok(event, `dangling ${ref}`);
      const payloadRef = event.properties['payload']!.$ref!;
      assert.ok(definitions[payloadRef.replace('#/definitions/', '')], `dangling ${payloadRef}`);
      return event.properties['type']!.const;
    });
    assert.deepEqual(discriminators.sort(), Object.keys(EventTypes).sort());
  });

  it('gives every type a distinct definition name', () => {
    const names = Object.keys(EventTypes).map(pascalName);
    assert.equal(new Set(names).size, names.length);
  });
});
