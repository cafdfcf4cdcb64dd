import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * The console's static files. Plain HTML, CSS and JavaScript from `./assets/`, read once
 * at start-up and served as they are; the one built file is the client SDK's browser
 * bundle (`client/bundle.ts`, esbuild), which the page imports by URL. The bundle is
 * built in the background from start-up on: until it is ready its route waits, and if
 * it cannot be built the route answers 503 (the reason is logged once) while the page
 * and the inspector API keep working.
 *
 * Both come from the source tree: the console runs where the gateway runs from a
 * checkout (`npm start`, tsx). A `dist/` build lacks `src/inspector/assets/` (a gateway
 * with CONSOLE_ENABLED=true refuses to start there), and an image without `client/` and
 * esbuild cannot build the bundle (docs/inspector.md).
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

const ASSETS_DIR = path.join(import.meta.dirname, 'assets');
const CLIENT_BUNDLE_MODULE = path.resolve(import.meta.dirname, '../../client/bundle.ts');

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
export async function loadConsoleAssets(onBundleError: (err: Error) => void): Promise<ConsoleAssets> {
  const files = new Map<string, ConsoleAsset>();
  for (const [name, contentType] of Object.entries(FILES)) {
    const file = path.join(ASSETS_DIR, name);
    try {
      files.set(name, { contentType, text: await readFile(file, 'utf8') });
    } catch (err) {
      throw new ConsoleUnavailableError(`CONSOLE_ENABLED: cannot read the console's ${file}`, { cause: err });
    }
  }
  const bundle = clientBundle().then(
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

async function clientBundle(): Promise<string> {
  // Outside src/ (the build's rootDir): imported by path, at run time, only when enabled.
  if (!existsSync(CLIENT_BUNDLE_MODULE)) {
    throw new ConsoleUnavailableError(
      `the client SDK (${CLIENT_BUNDLE_MODULE}) is not in this build: run the gateway from a checkout`,
    );
  }
  try {
    const mod = (await import(pathToFileURL(CLIENT_BUNDLE_MODULE).href)) as BundleModule;
    return await mod.buildClientBundle();
  } catch (err) {
    throw new ConsoleUnavailableError('building the client SDK bundle failed', { cause: err });
  }
}
