import { closeSync, mkdirSync, openSync, readSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import type { HistoryOp } from './history.ts';
import type { Verdict } from './verdict.ts';

const CHUNK_BYTES = 1 << 20;

/**
 * Reads a history file (JSON Lines, one op per line) lazily: ops are parsed as they are
 * iterated, so `checkHistory(readHistory(file))` re-checks a long soak in flat memory.
 * Blank lines are skipped; a line that is not a JSON object with an `op` throws, naming
 * the file and line. Spread it (`[...readHistory(file)]`) for an array.
 */
export function* readHistory(file: string): Generator<HistoryOp, void, undefined> {
  const fd = openSync(file, 'r');
  try {
    const decoder = new StringDecoder('utf8');
    const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
    let rest = '';
    let lineNo = 0;
    for (;;) {
      const n = readSync(fd, buffer, 0, CHUNK_BYTES, null);
      const text = n > 0 ? rest + decoder.write(buffer.subarray(0, n)) : rest + decoder.end();
      const lines = text.split('\n');
      rest = n > 0 ? lines.pop()! : '';
      for (const line of lines) {
        lineNo++;
        if (line.trim() === '') continue;
        yield parseLine(line, file, lineNo);
      }
      if (n === 0) return;
    }
  } finally {
    closeSync(fd);
  }
}

function parseLine(line: string, file: string, lineNo: number): HistoryOp {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    throw new Error(`${file}:${lineNo}: not JSON (${(err as Error).message})`, { cause: err });
  }
  if (typeof value !== 'object' || value === null || typeof (value as { op?: unknown }).op !== 'string')
    throw new Error(`${file}:${lineNo}: not a history op (no "op")`);
  return value as HistoryOp;
}

/** Writes ops as JSON Lines (tests and tools; the swarm's recorder streams its own). */
export function writeHistory(file: string, ops: Iterable<HistoryOp>): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const lines: string[] = [];
  for (const op of ops) lines.push(JSON.stringify(op));
  writeFileSync(file, lines.length > 0 ? lines.join('\n') + '\n' : '');
}

/** Writes a verdict as indented JSON, creating the directory. */
export function writeVerdict(file: string, verdict: Verdict): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(verdict, null, 2) + '\n');
}
