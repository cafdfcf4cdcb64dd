/**
 * The gateway as its own process, through the real entry point:
 * `node --import tsx src/main.ts` with PORT=0, reading the port from the `listening` log
 * line. Keeps the warn/error log lines for the report. Killed on exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface LogLine {
  level: string;
  msg: string;
  [key: string]: unknown;
}

const live = new Set<GatewayProcess>();
let hookInstalled = false;

export class GatewayProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly engine: string;
  readonly transport: string;
  /** warn/error/fatal lines, newest last (bounded). */
  readonly problems: LogLine[];
  #exited: Promise<number | null>;

  private constructor(
    child: ChildProcess,
    listening: LogLine,
    problems: LogLine[],
    exited: Promise<number | null>,
  ) {
    this.child = child;
    this.port = Number(listening.port);
    this.engine = String(listening.engine);
    this.transport = String(listening.transport);
    this.problems = problems;
    this.#exited = exited;
  }

  get pid(): number {
    return this.child.pid!;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}/v1/realtime`;
  }

  static start(env: Record<string, string>, timeoutMs = 30_000): Promise<GatewayProcess> {
    installHook();
    const childEnv: NodeJS.ProcessEnv = { ...process.env };
    delete childEnv.REDIS_URL;
    Object.assign(childEnv, env);
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', '--import', './bench/lib/orphan-watch.ts', 'src/main.ts'],
      { cwd: repoRoot, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const problems: LogLine[] = [];
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    return new Promise((resolve, reject) => {
      let started = false;
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`gateway did not log "listening" within ${timeoutMs} ms\n${stderr}`));
      }, timeoutMs);
      const lines = createInterface({ input: child.stdout });
      lines.on('line', (text) => {
        let line: LogLine;
        try {
          line = JSON.parse(text) as LogLine;
        } catch {
          return;
        }
        if (line.level === 'warn' || line.level === 'error' || line.level === 'fatal') {
          problems.push(line);
          if (problems.length > 200) problems.shift();
        }
        if (!started && line.msg === 'listening') {
          started = true;
          clearTimeout(timer);
          const gateway = new GatewayProcess(child, line, problems, exited);
          live.add(gateway);
          resolve(gateway);
        }
      });
      void exited.then((code) => {
        if (started) return;
        clearTimeout(timer);
        reject(new Error(`gateway exited with ${String(code)} before listening\n${stderr.trim()}`));
      });
    });
  }

  /** SIGTERM (the gateway drains), SIGKILL after `graceMs`. Resolves with the exit code. */
  async stop(graceMs = 15_000): Promise<number | null> {
    live.delete(this);
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    const code = await this.#exited;
    clearTimeout(timer);
    return code;
  }

  killNow(): void {
    try {
      this.child.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
}

function installHook(): void {
  if (hookInstalled) return;
  hookInstalled = true;
  process.once('exit', () => {
    for (const gateway of live) gateway.killNow();
  });
}
