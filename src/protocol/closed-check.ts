import { Kind, type TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';

/**
 * A compiled schema check that allocates nothing for a closed object, for the checks
 * every published event goes through (issue 6 measured them: bench/tools/validate-cost.ts).
 *
 * TypeBox compiles `additionalProperties: false` to
 * `Object.getOwnPropertyNames(value).every(key => [...known].includes(key))`: an array of
 * the value's keys, a closure, and an array literal of the known keys for each key. Here
 * the top-level object is compiled open (the same schema without `additionalProperties`)
 * and its keys are then checked with a for-in over a Set made once.
 *
 * The key rule is a little stricter than TypeBox's, never looser: the value must be a
 * plain object (its prototype Object.prototype or null, as JSON.parse and msgpackr make
 * them; a Date or a Buffer is not), and each enumerable key must be its own and known.
 * Non-enumerable own keys, which only code can make, are invisible to JSON.stringify and
 * so to what is stored. Nested objects keep TypeBox's own check.
 *
 * Use `errors` (TypeBox's check of the original schema) to describe a failure.
 */
export interface FastCheck {
  (value: unknown): boolean;
  readonly errors: TypeCheck<TSchema>;
}

export function compileCheck(schema: TSchema): FastCheck {
  const errors = TypeCompiler.Compile(schema);
  const closedObject = schema[Kind] === 'Object' && schema['additionalProperties'] === false;
  if (!closedObject) return Object.assign((value: unknown) => errors.Check(value), { errors });
  // The rest copies TypeBox's Kind symbol too; only additionalProperties is left behind.
  const { additionalProperties: _closed, ...openSchema } = schema;
  const open = TypeCompiler.Compile(openSchema);
  const known = new Set(Object.keys(schema['properties'] as object));
  const check = (value: unknown): boolean => open.Check(value) && hasOnlyKnownKeys(value as object, known);
  return Object.assign(check, { errors });
}

function hasOnlyKnownKeys(value: object, known: ReadonlySet<string>): boolean {
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return false;
  for (const key in value) if (!known.has(key) || !Object.hasOwn(value, key)) return false;
  return true;
}
