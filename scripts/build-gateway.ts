/**
 * `npm run build`: the gateway as a few ES modules in dist/ (docs/adr/0005), which the
 * Dockerfile ships and `npm run start:prod` runs.
 *
 * esbuild bundles src/main.ts and everything it imports, node_modules included, into
 * dist/main.js plus chunks; what the gateway imports on demand (the Redis client, the
 * LiveKit SDK) stays in chunks of its own, loaded only when configured. Node then reads a
 * handful of files at start instead of some 400 modules, TypeBox's 266 among them:
 * spawn to `listening` went from 0.35 to 0.17 s. uWebSockets.js stays outside, as its
 * loader picks a native binary by platform at run time. A linked source map beside each
 * file lets `node --enable-source-maps` report stack traces in the TypeScript sources.
 *
 * The session console's static page is copied to dist/inspector/assets, where
 * src/inspector/assets.ts looks for it outside the sources.
 */
import { cpSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** What is bundled, where `npm run build` writes it, and the console page copied beside it (repository-relative). */
export const GATEWAY_ENTRY = 'src/main.ts';
export const BUILD_DIR = 'dist';
export const CONSOLE_ASSETS = 'src/inspector/assets';
/** Where the console page lands in an output directory: where src/inspector/assets.ts reads it. */
export const CONSOLE_ASSETS_OUT = 'inspector/assets';

/** Node's CommonJS `require` inside the ES bundle, for the CommonJS packages it holds. */
const REQUIRE_SHIM =
  "import { createRequire as __createRequire } from 'node:module';\nconst require = __createRequire(import.meta.url);";

export interface GatewayBundle {
  /** The entry to run with node. */
  main: string;
  /** Every file written, relative to the output directory, with its size in bytes. */
  files: { path: string; bytes: number }[];
  /** Per output file, the files it imports statically (relative paths, as written). */
  imports: Record<string, string[]>;
  /** Per output file, the input files bundled into it (paths relative to the repository). */
  inputs: Record<string, string[]>;
}

/** Bundles the gateway into `outDir` (emptied first), with the console's page beside it. */
export async function bundleGateway(outDir: string): Promise<GatewayBundle> {
  const { build } = await import('esbuild');
  rmSync(outDir, { recursive: true, force: true });
  const result = await build({
    entryPoints: { main: path.join(root, GATEWAY_ENTRY) },
    absWorkingDir: root,
    outdir: outDir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    chunkNames: 'chunks/[name]-[hash]',
    external: ['uWebSockets.js'],
    banner: { js: REQUIRE_SHIM },
    sourcemap: 'linked',
    metafile: true,
    logLevel: 'warning',
    legalComments: 'linked',
  });
  cpSync(path.join(root, CONSOLE_ASSETS), path.join(outDir, CONSOLE_ASSETS_OUT), { recursive: true });
  const files: GatewayBundle['files'] = [];
  const imports: GatewayBundle['imports'] = {};
  const inputs: GatewayBundle['inputs'] = {};
  for (const [file, output] of Object.entries(result.metafile.outputs)) {
    const rel = path.relative(outDir, path.join(root, file));
    files.push({ path: rel, bytes: output.bytes });
    if (!rel.endsWith('.js')) continue;
    imports[rel] = output.imports
      .filter((i) => i.kind === 'import-statement' && !i.external)
      .map((i) => path.relative(outDir, path.join(root, i.path)));
    inputs[rel] = Object.keys(output.inputs);
  }
  return { main: path.join(outDir, 'main.js'), files, imports, inputs };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const bundle = await bundleGateway(path.join(root, BUILD_DIR));
  for (const f of bundle.files.filter((f) => f.path.endsWith('.js'))) {
    console.log(`${BUILD_DIR}/${f.path}: ${(f.bytes / 1024).toFixed(1)} KiB`);
  }
}
