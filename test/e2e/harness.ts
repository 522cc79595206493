import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/**
 * Helpers of the end-to-end tests: standalone Updraft and the CLI as real child processes,
 * talking HTTP on 127.0.0.1. Linux only: process groups and `ps --ppid`.
 */

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** DAGs of the durability and shutdown tests; inside the repo so their `import 'updraft'` resolves. */
export const E2E_DAGS_FOLDER = fileURLToPath(new URL('./dags', import.meta.url));
const CLI_ENTRY = join(REPO_ROOT, 'bin', 'updraft.ts');

/** Short timings so heartbeats, ticks and retries happen within seconds. */
export const FAST_SETTINGS = {
  UPDRAFT_HEARTBEAT_INTERVAL_MS: '500',
  UPDRAFT_HEARTBEAT_TIMEOUT_MS: '3000',
  UPDRAFT_SCHEDULER_TICK_MS: '500',
  UPDRAFT_QUEUED_TIMEOUT_MS: '5000',
  UPDRAFT_DAG_REFRESH_INTERVAL_MS: '0',
  UPDRAFT_SHUTDOWN_GRACE_SECONDS: '5',
  UPDRAFT_METRICS_LOG_INTERVAL_MS: '0',
} as const;

/** A port nothing listens on right now: the kernel's pick for port 0, released at once. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export async function makeHome(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'updraft-e2e-'));
}

export async function removeHome(home: string | undefined): Promise<void> {
  if (home) await rm(home, { recursive: true, force: true });
}

/**
 * The environment of every child: this one without Updraft settings that would point it
 * elsewhere, plus its own home and port and the short timings.
 */
export function e2eEnv(home: string, port: number, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('UPDRAFT_') && name !== 'PORT') env[name] = value;
  }
  return { ...env, ...FAST_SETTINGS, UPDRAFT_HOME: home, PORT: String(port), ...extra };
}

const BANNER = /Updraft is running: API and Execution API at (http:\/\/\S+)/;

/**
 * One standalone process (`npm start`, or `node bin/updraft.ts standalone`), in a process group
 * of its own so a test can signal it like a terminal's Ctrl-C does and clean up everything it
 * started, even after a failed assertion.
 */
export class StandaloneProcess {
  readonly child: ChildProcess;
  output = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(launcher: 'npm' | 'node', env: NodeJS.ProcessEnv) {
    const [command, args] =
      launcher === 'npm'
        ? ['npm', ['start']]
        : [process.execPath, ['--disable-warning=ExperimentalWarning', CLI_ENTRY, 'standalone']];
    this.child = spawn(command, args, {
      cwd: REPO_ROOT,
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout?.on('data', (chunk: Buffer) => {
      this.output += chunk.toString();
    });
    this.child.stderr?.on('data', (chunk: Buffer) => {
      this.output += chunk.toString();
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => resolve({ code, signal }));
    });
  }

  get pid(): number {
    if (this.child.pid === undefined)
      throw new Error(`The standalone process did not start:\n${this.output}`);
    return this.child.pid;
  }

  /** Waits for the banner and returns the API URL it names. */
  async waitUntilReady(timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    void this.exited.then(() => {
      exited = true;
    });
    while (Date.now() < deadline) {
      const url = BANNER.exec(this.output)?.[1];
      if (url) return url;
      if (exited) throw new Error(`Standalone exited before it was ready. Its output:\n${this.output}`);
      await sleep(50);
    }
    throw new Error(`Standalone printed no banner within ${timeoutMs} ms. Its output:\n${this.output}`);
  }

  /** Signals the whole process group, as a terminal's Ctrl-C does. */
  signalGroup(signal: NodeJS.Signals): void {
    signalGroup(this.pid, signal);
  }

  /** Resolves with how the process ended, or fails after `timeoutMs`. */
  async waitForExit(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const timeout = sleep(timeoutMs).then(() => {
      throw new Error(`Standalone did not exit within ${timeoutMs} ms. Its output:\n${this.output}`);
    });
    return Promise.race([this.exited, timeout]);
  }

  /** Cleanup: SIGKILL to the group, which also reaches children whose parent already died. */
  async kill(): Promise<void> {
    signalGroup(this.pid, 'SIGKILL');
    await Promise.race([this.exited, sleep(5_000)]);
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/** Direct children of a process. */
export async function childPids(pid: number): Promise<number[]> {
  try {
    const { stdout } = await promisify(execFile)('ps', ['-o', 'pid=', '--ppid', String(pid)]);
    return stdout
      .split('\n')
      .map((line) => Number(line.trim()))
      .filter((value) => value > 0);
  } catch {
    return []; // ps exits 1 when there is no child
  }
}

/** Whether a process still runs; a zombie (exited, not yet reaped) counts as gone. */
export function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state follows the command name, which is in parentheses and may contain spaces.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node bin/updraft.ts <args>` with `env`, as a user would from the repo. */
export async function runCli(args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000) {
  return new Promise<CliResult>((resolve, reject) => {
    const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', CLI_ENTRY, ...args], {
      cwd: REPO_ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(`updraft ${args.join(' ')} did not finish within ${timeoutMs} ms:\n${stdout}${stderr}`),
      );
    }, timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Parses the stdout of a `--json` command, failing with the whole output when it is not JSON. */
export function jsonOf<T>(result: CliResult): T {
  try {
    return JSON.parse(result.stdout) as T;
  } catch {
    throw new Error(
      `Expected JSON (exit ${result.code}); stdout:\n${result.stdout}\nstderr:\n${result.stderr}`,
    );
  }
}

/** A minimal client of the public API with the token standalone wrote into its home. */
export class PublicApi {
  readonly baseUrl: string;
  readonly #token: string;

  constructor(baseUrl: string, token: string) {
    this.baseUrl = baseUrl;
    this.#token = token;
  }

  static async fromHome(baseUrl: string, home: string): Promise<PublicApi> {
    return new PublicApi(baseUrl, (await readFile(join(home, 'api-token'), 'utf8')).trim());
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await fetch(`${this.baseUrl}/api/v2${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.#token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${text}`);
    return JSON.parse(text) as T;
  }
}

/** Polls `probe` until it returns a value other than undefined; fails naming `what` after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    await sleep(intervalMs);
  }
  const reason = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}${reason}`);
}

/** A file's text, or '' when it does not exist yet. */
export async function readTextOrEmpty(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw error;
  }
}
