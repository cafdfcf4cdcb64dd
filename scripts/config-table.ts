/**
 * Prints the README's configuration table from the config schema:
 * `tsx scripts/config-table.ts` (or `--write` to update README.md between its markers).
 * A test fails when the README and the schema disagree.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { ConfigKeys, ConfigSchema } from '../src/config/schema.ts';

export const BEGIN = '<!-- config-table:begin -->';
export const END = '<!-- config-table:end -->';

export function configTable(): string {
  const rows = ConfigKeys.map((key) => {
    const schema = ConfigSchema.properties[key] as { default?: unknown; description?: string };
    const def = schema.default === '' ? '(unset)' : `\`${String(schema.default)}\``;
    const description = schema.description ?? '';
    return `| \`${key}\` | ${def} | ${description} |`;
  });
  return ['| variable | default | meaning |', '| --- | --- | --- |', ...rows].join('\n');
}

export function withTable(readme: string): string {
  const start = readme.indexOf(BEGIN);
  const end = readme.indexOf(END);
  if (start < 0 || end < start) throw new Error('README.md lacks the config-table markers');
  return `${readme.slice(0, start + BEGIN.length)}\n${configTable()}\n${readme.slice(end)}`;
}

if (import.meta.url === `file://${process.argv[1] ?? ''}`) {
  if (process.argv.includes('--write')) {
    const path = new URL('../README.md', import.meta.url);
    writeFileSync(path, withTable(readFileSync(path, 'utf8')));
  } else {
    process.stdout.write(`${configTable()}\n`);
  }
}
