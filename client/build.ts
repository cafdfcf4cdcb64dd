/**
 * `npm run build:client`: writes dist-client/lifeos-client.js (the browser ES module);
 * the script then emits the .d.ts files with `tsc -p client/tsconfig.build.json`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildClientBundle } from './bundle.ts';

const outDir = fileURLToPath(new URL('../dist-client/', import.meta.url));
const js = await buildClientBundle();
mkdirSync(outDir, { recursive: true });
writeFileSync(`${outDir}lifeos-client.js`, js);
console.log(`dist-client/lifeos-client.js: ${(js.length / 1024).toFixed(1)} KiB`);
