import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * The console's static files. Plain HTML, CSS and JavaScript from `./assets/`, read once
 * at start-up and served as they are; the one built file is the client SDK's browser
 * bundle, which the page imports by URL. The bundle is read or built in the background
 * from start-up on: until it is ready its route waits, and if there is none the route
 * answers 503 (the reason is logged once) while the page and the inspector API keep
 * working.
 *
 * The page's files are read from `src/inspector/assets/` when running from a checkout's
 * sources, and from `dist/inspector/assets/` when running the build, which copies them
 * there (scripts/build-gateway.ts; without them a gateway with CONSOLE_ENABLED=true
 * refuses to start). The bundle: run from the TypeScript sources
 * (`npm start`, tsx), it is built from `client/` with esbuild, so it is never stale;
 * compiled, the prebuilt `dist-client/lifeos-client.js` (`npm run build:client`, which
 * the image runs) is served when present, and esbuild is only the fallback, for a
 * checkout with its devDependencies (docs/inspector.md).
 */
export interface ConsoleAsset {
  contentType: string;
  text: string;
}

export interface ConsoleAssets {
  /** File name under `/console/` → the file. */
  files: ReadonlyMap<string, ConsoleAsset>;
  /** The SDK bundle; rejects with ConsoleUnavailableError when it cannot be built. */
  sdk(): Promise<ConsoleAsset>;
}

export const CONSOLE_INDEX = 'index.html';
export const CONSOLE_SDK = 'lifeos-client.js';

const FILES: Record<string, string> = {
  [CONSOLE_INDEX]: 'text/html; charset=utf-8',
  'console.js': 'text/javascript; charset=utf-8',
  'console.css': 'text/css; charset=utf-8',
};

/** Running from the TypeScript sources (tsx) rather than the build. */
const FROM_SOURCE = import.meta.url.endsWith('.ts');

/**
 * The package's root: the nearest directory above this module that holds a package.json.
 * Paths are found from there because the build bundles this module into a chunk whose
 * place in dist/ is esbuild's choice.
 */
function packageRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return from;
  }
}

const ROOT = packageRoot(import.meta.dirname);

/** The page's files: src/inspector/assets, or dist/inspector/assets in the build. */
export const ASSETS_DIR = path.join(ROOT, FROM_SOURCE ? 'src' : 'dist', 'inspector', 'assets');

/** Where the SDK bundle comes from; both paths resolve from the repository (or image) root. */
export interface BundleSources {
  /** `npm run build:client`'s output. */
  prebuilt: string;
  /** client/bundle.ts, which builds it with esbuild. */
  builder: string;
  /** Running from the TypeScript sources (tsx): always build, a prebuilt file may be stale. */
  fromSource: boolean;
}

export const BUNDLE_SOURCES: BundleSources = {
  prebuilt: path.join(ROOT, 'dist-client', 'lifeos-client.js'),
  builder: path.join(ROOT, 'client', 'bundle.ts'),
  fromSource: FROM_SOURCE,
};

export class ConsoleUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConsoleUnavailableError';
  }
}

/**
 * Reads the page's files (rejects with ConsoleUnavailableError when one is missing) and
 * starts building the SDK bundle; `onBundleError` hears once if that fails.
 */
export async function loadConsoleAssets(
  onBundleError: (err: Error) => void,
  sources: BundleSources = BUNDLE_SOURCES,
): Promise<ConsoleAssets> {
  const files = new Map<string, ConsoleAsset>();
  for (const [name, contentType] of Object.entries(FILES)) {
    const file = path.join(ASSETS_DIR, name);
    try {
      files.set(name, { contentType, text: await readFile(file, 'utf8') });
    } catch (err) {
      throw new ConsoleUnavailableError(`CONSOLE_ENABLED: cannot read the console's ${file}`, { cause: err });
    }
  }
  const bundle = clientBundle(sources).then(
    (text) => ({ contentType: 'text/javascript; charset=utf-8', text }),
    (err: Error) => {
      onBundleError(err);
      throw err;
    },
  );
  bundle.catch(() => {}); // heard through onBundleError; each request gets the rejection
  return { files, sdk: () => bundle };
}

interface BundleModule {
  buildClientBundle(): Promise<string>;
}

/**
 * The SDK's browser bundle: the prebuilt file when running compiled and it exists, else
 * built with esbuild (client/bundle.ts, a devDependency).
 */
export async function clientBundle(sources: BundleSources): Promise<string> {
  if (!sources.fromSource && existsSync(sources.prebuilt)) {
    try {
      return await readFile(sources.prebuilt, 'utf8');
    } catch (err) {
      throw new ConsoleUnavailableError(`cannot read the client SDK bundle ${sources.prebuilt}`, {
        cause: err,
      });
    }
  }
  // Not part of the build: imported by path, at run time, only when enabled.
  if (!existsSync(sources.builder)) {
    throw new ConsoleUnavailableError(
      `no client SDK bundle: ${sources.prebuilt} is missing (npm run build:client) and ` +
        `${sources.builder} is not in this build`,
    );
  }
  try {
    const mod = (await import(pathToFileURL(sources.builder).href)) as BundleModule;
    return await mod.buildClientBundle();
  } catch (err) {
    throw new ConsoleUnavailableError('building the client SDK bundle failed', { cause: err });
  }
}
