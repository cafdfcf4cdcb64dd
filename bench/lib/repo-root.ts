import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: benchmarks spawn and build relative to it. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
