import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { compileCheck } from '../../src/protocol/closed-check.ts';
import { EventTypes } from '../../src/protocol/event-types.ts';

const Closed = Type.Object(
  {
    id: Type.String({ minLength: 1 }),
    n: Type.Optional(Type.Integer()),
    inner: Type.Optional(Type.Object({ a: Type.Number() }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);

// Values on both sides of every rule of the schema, as JSON would bring them.
const values: unknown[] = [
  { id: 'x' },
  { id: 'x', n: 1 },
  { id: 'x', n: 1, inner: { a: 1 } },
  { id: '' },
  { id: 'x', n: 1.5 },
  { id: 'x', extra: true },
  { id: 'x', inner: { a: 1, b: 2 } },
  { id: 'x', inner: {} },
  {},
  null,
  [],
  'x',
  JSON.parse('{"id":"x","__proto__":{"n":1}}'),
  JSON.parse('{"id":"x","constructor":1}'),
];

describe('compileCheck', () => {
  it('gives TypeBox’s verdict on JSON values of a closed object', () => {
    const ours = compileCheck(Closed);
    const typebox = TypeCompiler.Compile(Closed);
    for (const value of values) assert.equal(ours(value), typebox.Check(value), JSON.stringify(value));
  });

  it('rejects what is not a plain object, and keys that are not its own', () => {
    const check = compileCheck(Closed);
    assert.equal(check(Object.assign(new Date(0), { id: 'x' })), false);
    assert.equal(check(Object.assign(Object.create({ extra: 1 }) as object, { id: 'x' })), false);
    assert.equal(check(Object.assign(Object.create(null) as object, { id: 'x' })), true);
  });

  it('describes a failure with TypeBox’s errors of the original schema', () => {
    const check = compileCheck(Closed);
    const first = check.errors.Errors({ id: 'x', extra: 1 }).First();
    assert.ok(first, 'an error');
    assert.equal(first.path, '/extra');
    assert.match(first.message, /unexpected property/i);
  });

  it('keeps TypeBox’s check for a schema that is not a closed object', () => {
    const open = Type.Object({ id: Type.String() });
    const check = compileCheck(open);
    assert.equal(check({ id: 'x', extra: 1 }), true);
    assert.equal(check(new Date(0)), false);
    const union = compileCheck(Type.Union([Type.String(), Type.Number()]));
    assert.equal(union('x'), true);
    assert.equal(union(null), false);
  });

  // The envelope's check leaves the payload's plain-object rule to the type's check.
  it('is the closed form for every event type’s payload', () => {
    for (const [type, schema] of Object.entries(EventTypes)) {
      assert.equal(compileCheck(schema)(new Date(0)), false, type);
      assert.equal((schema as { additionalProperties?: unknown }).additionalProperties, false, type);
    }
  });
});
