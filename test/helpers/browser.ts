import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before } from 'node:test';
import { inflateSync } from 'node:zlib';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { buildClientBundle } from '../../client/bundle.ts';

/**
 * Browser tests: Debian's Chromium driven by playwright-core. Never a downloaded browser:
 * CI installs the `chromium` package (.ci/run) and a missing binary fails the test rather
 * than skipping it, so a browser suite can never pass by not running.
 *
 *   const browser = useBrowser();                      // before/after hooks of this file or suite
 *   const site = await serveStatic({ '/': html });     // + the SDK bundle at /lifeos-client.js
 *   const page = await browser.newPage();              // closed with the browser
 *   await page.goto(site.url);
 *
 * `useStaticServers()` closes the servers it makes in `after`; `pngStats(png)` measures a
 * screenshot, to tell a rendered page from a blank one.
 */

/** Where Debian's `chromium` package puts the browser; `CHROMIUM_PATH` overrides it. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
];

/** Path at which `serveStatic` serves the SDK's browser bundle. */
export const CLIENT_BUNDLE_PATH = '/lifeos-client.js';

/** Launches Chromium, or throws (never skips) when the binary is missing. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `no Chromium at ${CHROMIUM_PATH}: install Debian's package (apt-get install chromium), ` +
        'or set CHROMIUM_PATH; browser tests never download a browser',
    );
  }
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, headless: true });
}

export interface BrowserHandle {
  /** The launched browser (after the `before` hook ran). */
  readonly browser: Browser;
  /** A page in a fresh context; page errors are recorded in `errors`. Closed in `after`. */
  newPage(options?: { viewport?: { width: number; height: number } }): Promise<Page>;
  /** A fresh context (its own storage, its own offline switch). Closed in `after`. */
  newContext(options?: { viewport?: { width: number; height: number } }): Promise<BrowserContext>;
  /** Uncaught errors of every page opened through this handle (`pageerror`), in order. */
  readonly errors: Error[];
}

/**
 * Registers `before`/`after` hooks (of the enclosing suite, or of the file at top level)
 * that launch Chromium once and close it, with every context opened through the handle.
 */
export function useBrowser(): BrowserHandle {
  let browser: Browser | undefined;
  const contexts = new Set<BrowserContext>();
  const errors: Error[] = [];
  before(async () => {
    browser = await launchChromium();
  });
  after(async () => {
    await Promise.allSettled([...contexts].map((c) => c.close()));
    await browser?.close();
  });
  const handle: BrowserHandle = {
    get browser(): Browser {
      if (!browser) throw new Error('useBrowser: the browser is not launched yet (use it inside a test)');
      return browser;
    },
    async newContext(options = {}) {
      const context = await handle.browser.newContext(options);
      contexts.add(context);
      context.on('close', () => contexts.delete(context));
      context.on('page', (page) => page.on('pageerror', (err) => errors.push(err)));
      return context;
    },
    async newPage(options = {}) {
      const context = await handle.newContext(options);
      return context.newPage();
    },
    errors,
  };
  return handle;
}

/** The SDK's browser bundle (ESM JavaScript), built once per test process by client/bundle.ts. */
export function clientBundle(): Promise<string> {
  return buildClientBundle();
}

export type StaticBody = string | { contentType: string; body: string | Uint8Array };

export interface StaticServer {
  /** `http://127.0.0.1:<port>` */
  readonly origin: string;
  /** The origin plus `/`: the page at `/`. */
  readonly url: string;
  /** Adds or replaces a file while the server runs. */
  set(pathname: string, body: StaticBody): void;
  close(): Promise<void>;
}

/**
 * A tiny HTTP server on 127.0.0.1, port 0: serves `files` (path → HTML string, or a body
 * with its content type) and, unless `bundle: false`, the SDK bundle at
 * `/lifeos-client.js`. Everything is `no-store`. With `useStaticServers()` it is closed
 * in `after`; otherwise call `close()`.
 */
export async function serveStatic(
  files: Record<string, StaticBody>,
  options: { bundle?: boolean } = {},
): Promise<StaticServer> {
  const table = new Map<string, StaticBody>(Object.entries(files));
  const withBundle = options.bundle ?? true;
  // Built before listening, so a missing SDK fails here and not as a 500 in the page.
  const js = withBundle ? await clientBundle() : undefined;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const pathname = new URL(req.url ?? '/', 'http://x').pathname;
    const entry: StaticBody | undefined =
      js !== undefined && pathname === CLIENT_BUNDLE_PATH
        ? { contentType: 'text/javascript; charset=utf-8', body: js }
        : table.get(pathname);
    if (entry === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    const { contentType, body } =
      typeof entry === 'string' ? { contentType: 'text/html; charset=utf-8', body: entry } : entry;
    res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' }).end(body);
  });
  // Keep-alive sockets would hold `close()` open until they time out.
  server.keepAliveTimeout = 1;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;
  let closing: Promise<void> | undefined;
  return {
    origin,
    url: `${origin}/`,
    set(pathname, body) {
      table.set(pathname, body);
    },
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}

/**
 * Registers an `after` hook that closes every server made through the returned function.
 *
 *   const serve = useStaticServers();
 *   const site = await serve({ '/': html });
 */
export function useStaticServers(): typeof serveStatic {
  const servers = new Set<StaticServer>();
  after(async () => {
    await Promise.allSettled([...servers].map((s) => s.close()));
  });
  return async (files, options) => {
    const server = await serveStatic(files, options);
    servers.add(server);
    return server;
  };
}

export interface PngStats {
  width: number;
  height: number;
  /** Distinct RGB colours (alpha ignored). */
  colours: number;
  /** Standard deviation of the luma (0–255) over every pixel. */
  lumaStdDev: number;
}

/**
 * Decodes an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium's screenshots are)
 * with node:zlib and measures it, so a test can tell a rendered page from a blank one.
 */
export function pngStats(png: Buffer): PngStats {
  const SIGNATURE = '89504e470d0a1a0a';
  if (png.subarray(0, 8).toString('hex') !== SIGNATURE) throw new Error('pngStats: not a PNG');
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Buffer[] = [];
  for (let at = 8; at < png.length;) {
    const length = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    const data = png.subarray(at + 8, at + 8 + length);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const [depth, colourType, interlace] = [data[8]!, data[9]!, data[12]!];
      if (depth !== 8 || (colourType !== 2 && colourType !== 6) || interlace !== 0) {
        throw new Error(
          `pngStats: unsupported PNG (depth ${depth}, colour type ${colourType}, interlace ${interlace})`,
        );
      }
      channels = colourType === 6 ? 4 : 3;
    } else if (type === 'IDAT') {
      idat.push(data);
    } else if (type === 'IEND') {
      break;
    }
    at += 12 + length;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const pixels = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const out = pixels.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? pixels.subarray((y - 1) * stride, y * stride) : undefined;
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? out[x - channels]! : 0;
      const b = prev ? prev[x]! : 0;
      const c = prev && x >= channels ? prev[x - channels]! : 0;
      let predictor = 0;
      if (filter === 1) predictor = a;
      else if (filter === 2) predictor = b;
      else if (filter === 3) predictor = (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        predictor = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else if (filter !== 0) throw new Error(`pngStats: bad filter ${filter} on row ${y}`);
      out[x] = (line[x]! + predictor) & 0xff;
    }
  }
  const colours = new Set<number>();
  let sum = 0;
  let sumSq = 0;
  for (let i = 0; i < pixels.length; i += channels) {
    const [r, g, b] = [pixels[i]!, pixels[i + 1]!, pixels[i + 2]!];
    colours.add((r << 16) | (g << 8) | b);
    const luma = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    sum += luma;
    sumSq += luma * luma;
  }
  const n = width * height;
  const mean = sum / n;
  return {
    width,
    height,
    colours: colours.size,
    lumaStdDev: Math.sqrt(Math.max(0, sumSq / n - mean * mean)),
  };
}
