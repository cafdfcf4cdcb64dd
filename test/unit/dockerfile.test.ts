/**
 * Static checks on the Dockerfile (no Docker engine is available in CI, so it is never built there).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BUILD_DIR, CONSOLE_ASSETS, CONSOLE_ASSETS_OUT, GATEWAY_ENTRY } from '../../scripts/build-gateway.ts';
import { ASSETS_DIR, BUNDLE_SOURCES } from '../../src/inspector/assets.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BASE_IMAGE = 'node:20-bookworm-slim';

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

interface Stage {
  image: string;
  name: string | undefined;
  instructions: Instruction[];
}

/** Minimal Dockerfile parser: comments, blank lines and `\` line continuations. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let buf = '';
  let startLine = 0;
  const lines = text.split(/\r?\n/);
  for (const [i, raw] of lines.entries()) {
    const trimmed = raw.trim();
    if (buf === '' && (trimmed === '' || trimmed.startsWith('#'))) continue;
    if (buf !== '' && trimmed.startsWith('#')) continue; // comment inside a continuation
    if (buf === '') startLine = i + 1;
    if (trimmed.endsWith('\\')) {
      buf += trimmed.slice(0, -1) + ' ';
      continue;
    }
    buf += trimmed;
    const m = /^(\S+)\s*(.*)$/s.exec(buf);
    if (m) out.push({ keyword: m[1]!.toUpperCase(), args: m[2]!.trim(), line: startLine });
    buf = '';
  }
  assert.equal(buf, '', 'Dockerfile ends inside a line continuation');
  return out;
}

function splitStages(instructions: Instruction[]): Stage[] {
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const words = ins.args.split(/\s+/).filter((w) => !w.startsWith('--'));
      const asIdx = words.findIndex((w) => w.toUpperCase() === 'AS');
      stages.push({
        image: words[0] ?? '',
        name: asIdx >= 0 ? words[asIdx + 1] : undefined,
        instructions: [],
      });
    } else {
      const current = stages.at(-1);
      assert.ok(current, `line ${ins.line}: ${ins.keyword} before the first FROM`);
      current.instructions.push(ins);
    }
  }
  return stages;
}

function execForm(ins: Instruction): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(ins.args);
  } catch {
    assert.fail(`line ${ins.line}: ${ins.keyword} is not in exec (JSON array) form: ${ins.args}`);
  }
  assert.ok(
    Array.isArray(parsed) && parsed.every((p) => typeof p === 'string'),
    `line ${ins.line}: ${ins.keyword} must be a JSON array of strings`,
  );
  return parsed;
}

function find(stage: Stage, keyword: string): Instruction[] {
  return stage.instructions.filter((i) => i.keyword === keyword);
}

const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
const instructions = parseDockerfile(dockerfile);
const stages = splitStages(instructions);
const finalStage = stages.at(-1)!;
describe('Dockerfile', () => {
  it('is multi-stage and every stage uses the glibc bookworm-slim Node 20 image', () => {
    assert.ok(stages.length >= 2, `expected >= 2 FROM stages, got ${stages.length}`);
    for (const stage of stages) assert.equal(stage.image, BASE_IMAGE);
  });

  it('builds with npm ci + npm run build and never uses npm install', () => {
    const runs = instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args);
    assert.ok(
      runs.some((r) => /\bnpm ci\b/.test(r)),
      'no RUN npm ci',
    );
    assert.ok(
      runs.some((r) => /\bnpm run build\b/.test(r)),
      'no RUN npm run build',
    );
    for (const r of runs) {
      assert.doesNotMatch(r, /\bnpm (install|i|add)\b/, `npm install is not reproducible, use npm ci: ${r}`);
    }
  });

  it('final stage installs production dependencies only and copies the emitted dist/', () => {
    const runs = find(finalStage, 'RUN').map((i) => i.args);
    const copies = find(finalStage, 'COPY').map((i) => i.args);
    const prodInstall = runs.some((r) => /\bnpm ci\b.*--omit=dev\b/.test(r));
    const copiedModules = copies.some((c) => /--from=\S+/.test(c) && /node_modules/.test(c));
    assert.ok(
      prodInstall || copiedModules,
      'final stage neither runs npm ci --omit=dev nor copies node_modules',
    );
    assert.ok(
      copies.some((c) => /--from=\S+/.test(c) && c.split(/\s+/).some((w) => w.endsWith(`/${BUILD_DIR}`))),
      `final stage does not COPY --from the build stage's ${BUILD_DIR}/`,
    );
  });

  it('ships the session console: its page in the copied build, and the prebuilt SDK bundle', () => {
    // The build stage bundles the gateway, copying the page into dist/, and the SDK
    // (client/ → dist-client/lifeos-client.js).
    const builder = stages.find((st) => find(st, 'RUN').some((r) => /\bnpm run build:client\b/.test(r.args)));
    assert.ok(builder?.name, 'no named stage runs npm run build:client');
    assert.ok(
      find(builder, 'RUN').some((r) => /\bnpm run build\b(?!:)/.test(r.args)),
      'the stage that runs build:client does not run npm run build',
    );
    const copiedIn = find(builder, 'COPY').map((c) => c.args.split(/\s+/)[0]!.replace(/\/$/, ''));
    for (const needed of ['client', 'src', 'scripts/build-gateway.ts']) {
      assert.ok(
        copiedIn.includes(needed),
        `the build stage does not COPY ${needed}: ${JSON.stringify(copiedIn)}`,
      );
    }
    // From the sources the gateway reads the page where the build copies it from.
    assert.equal(path.relative(ROOT, ASSETS_DIR).split(path.sep).join('/'), CONSOLE_ASSETS);
    assert.ok(existsSync(path.join(ASSETS_DIR, 'index.html')), `${CONSOLE_ASSETS} has no index.html`);
    assert.equal(CONSOLE_ASSETS_OUT, 'inspector/assets');
    const workdir = find(builder, 'WORKDIR').at(-1)?.args ?? '/';
    const fromBuilder = find(finalStage, 'COPY')
      .map((c) => c.args.split(/\s+/))
      .filter((w) => w[0] === `--from=${builder.name ?? ''}`)
      .map(([, src = '', dest = '']) => ({
        src: path.posix.relative(workdir, path.posix.resolve(workdir, src)),
        dest: path.posix.normalize(dest).replace(/^\.\//, '').replace(/\/$/, ''),
      }));
    assert.ok(
      fromBuilder.some((c) => c.src === BUILD_DIR && c.dest === BUILD_DIR),
      `final stage does not COPY --from=${builder.name} ${BUILD_DIR} to ${BUILD_DIR}: ${JSON.stringify(fromBuilder)}`,
    );
    const bundleRel = path.relative(ROOT, BUNDLE_SOURCES.prebuilt).split(path.sep).join('/');
    assert.equal(bundleRel, 'dist-client/lifeos-client.js');
    assert.ok(
      fromBuilder.some(
        (c) => c.src === bundleRel && (c.dest === bundleRel || c.dest === path.posix.dirname(bundleRel)),
      ),
      `final stage does not COPY --from=${builder.name} ${bundleRel}: ${JSON.stringify(fromBuilder)}`,
    );
  });

  it('runs as a non-root user in the final stage', () => {
    const users = find(finalStage, 'USER');
    assert.ok(users.length > 0, 'final stage has no USER');
    const user = users.at(-1)!.args.split(':')[0]!;
    assert.notEqual(user, 'root');
    assert.notEqual(user, '0');
  });

  it('sets NODE_ENV=production and exposes 8080', () => {
    assert.ok(
      find(finalStage, 'ENV').some((i) => /\bNODE_ENV[= ]production\b/.test(i.args)),
      'final stage lacks ENV NODE_ENV=production',
    );
    assert.ok(
      find(finalStage, 'EXPOSE').some((i) => i.args.split(/\s+/).includes('8080')),
      'final stage does not EXPOSE 8080',
    );
  });

  it('has a HEALTHCHECK on /healthz that uses node itself (no curl/wget in slim)', () => {
    const checks = find(finalStage, 'HEALTHCHECK');
    assert.equal(checks.length, 1, 'expected exactly one HEALTHCHECK in the final stage');
    const hc = checks[0]!.args;
    assert.doesNotMatch(hc, /^NONE\b/i);
    const cmdIdx = hc.search(/\bCMD\b/);
    assert.ok(cmdIdx >= 0, 'HEALTHCHECK has no CMD');
    const cmd = hc.slice(cmdIdx + 3).trim();
    assert.match(cmd, /^\[?\s*"?node"?/, 'HEALTHCHECK must run node');
    assert.doesNotMatch(cmd, /\b(curl|wget)\b/);
    assert.match(cmd, /http:\/\/(127\.0\.0\.1|localhost):8080\/healthz/);
  });

  it('CMD is exec form `node <file>` pointing at the bundle that npm run build makes of src/main.ts', () => {
    const cmds = find(finalStage, 'CMD');
    assert.ok(cmds.length > 0, 'final stage has no CMD');
    const argv = execForm(cmds.at(-1)!);
    assert.equal(argv[0], 'node');
    assert.equal(argv.at(-1), `${BUILD_DIR}/main.js`);
    assert.ok(existsSync(path.join(ROOT, GATEWAY_ENTRY)), `${GATEWAY_ENTRY} does not exist`);
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    assert.match(pkg.scripts.build ?? '', /scripts\/build-gateway\.ts/);
  });
});

describe('.dockerignore', () => {
  const entries = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) =>
      l
        .replace(/^\/+/, '')
        .replace(/^\*\*\//, '')
        .replace(/\/+$/, ''),
    );

  for (const required of ['node_modules', '.git', 'dist-client']) {
    it(`excludes ${required}`, () => {
      assert.ok(entries.includes(required), `.dockerignore does not exclude ${required}`);
    });
  }

  it('does not exclude what the build stage copies', () => {
    for (const needed of ['src', 'package.json', 'package-lock.json', 'tsconfig.json', 'scripts', 'client']) {
      assert.ok(!entries.includes(needed), `.dockerignore excludes ${needed}, which the build needs`);
    }
  });
});
