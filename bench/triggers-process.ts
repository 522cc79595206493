import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TRIGGERER_NODE_FLAGS } from '#triggerer/node-flags.ts';
import { parseProcStat } from './costs.ts';

/**
 * The real triggerer (`src/triggerer/main.ts`) as a child process of its own, as standalone starts
 * it: it gets the API's URL and a `triggerer` credential, and every other setting from its
 * environment. None of the caller's UPDRAFT_* variables are passed on, so the heartbeat, timeout
 * and load settings are the defaults unless `env` sets them. Every child started here is killed
 * when this process exits, however it exits.
 */

const ENTRY = fileURLToPath(new URL('../src/triggerer/main.ts', import.meta.url));
const live = new Set<ChildProcess>();
const killAll = () => {
  for (const child of live) child.kill('SIGKILL');
};
process.once('exit', killAll);
// 'exit' does not run when a signal ends the process.
for (const [signal, code] of [
  ['SIGTERM', 143],
  ['SIGHUP', 129],
] as const) {
  process.once(signal, () => {
    killAll();
    process.exit(code);
  });
}

export interface TriggererChild {
  pid: number;
  /** The last lines it wrote to stderr (warnings and errors: it logs at warn level). */
  output(): string;
  /** Its warnings and errors so far, counted by level and message (cut at 160 characters). */
  warnings(): Record<string, number>;
  /** Peak and current resident set, in bytes (VmHWM, VmRSS of /proc/<pid>/status). */
  memory(): Promise<{ peakBytes: number; rssBytes: number } | undefined>;
  /** User + system CPU time so far, in ms (/proc/<pid>/stat). */
  cpuMs(): Promise<number | undefined>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The exit code or signal once it exited; null while it runs. */
  exitCode(): number | string | null;
  /** SIGKILL: no stop, no completion of its job (a crash). */
  kill(): void;
}

export async function startTriggerer(options: {
  apiUrl: string;
  credential: string;
  env?: Record<string, string>;
}): Promise<TriggererChild> {
  const home = await mkdtemp(join(tmpdir(), 'updraft-bench-triggerer-'));
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith('UPDRAFT_')),
  );
  const child = spawn(
    process.execPath,
    [...TRIGGERER_NODE_FLAGS, '--disable-warning=ExperimentalWarning', ENTRY],
    {
      cwd: home,
      env: {
        ...inherited,
        UPDRAFT_HOME: home,
        UPDRAFT_API_URL: options.apiUrl,
        UPDRAFT_TRIGGERER_TOKEN: options.credential,
        UPDRAFT_LOG_LEVEL: 'warn',
        UPDRAFT_METRICS_LOG_INTERVAL_MS: '0',
        ...options.env,
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  live.add(child);
  let output = '';
  let partial = '';
  const warnings: Record<string, number> = {};
  child.stderr?.on('data', (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    output = (output + text).slice(-8_000);
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      const message = warningOf(line);
      if (message !== undefined) warnings[message] = (warnings[message] ?? 0) + 1;
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    });
  });
  void exited.then(() => rm(home, { recursive: true, force: true }));
  const pid = child.pid;
  if (pid === undefined) throw new Error('The triggerer process did not start');
  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    pid,
    output: () => output,
    warnings: () => ({ ...warnings }),
    async memory() {
      const status = await readProc(pid, 'status');
      if (!status) return undefined;
      const kib = (field: string) =>
        Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
      return { peakBytes: kib('VmHWM') * 1024, rssBytes: kib('VmRSS') * 1024 };
    },
    cpuMs: () => processCpuMs(pid),
    exited,
    exitCode: () => child.exitCode ?? child.signalCode,
    kill() {
      if (running()) child.kill('SIGKILL');
    },
  };
}

/** CPU milliseconds (user and system) a process has used so far, from /proc; undefined once it is gone. */
export async function processCpuMs(pid: number): Promise<number | undefined> {
  const stat = await readProc(pid, 'stat');
  return stat ? parseProcStat(stat).cpuMs : undefined;
}

async function readProc(pid: number, file: string): Promise<string | undefined> {
  try {
    return await readFile(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return undefined;
  }
}

/** `warn: <message>` of a JSON log line at warn or error level. */
function warningOf(line: string): string | undefined {
  try {
    const parsed = JSON.parse(line) as { level?: unknown; message?: unknown };
    if (parsed.level !== 'warn' && parsed.level !== 'error') return undefined;
    return `${parsed.level}: ${String(parsed.message).slice(0, 160)}`;
  } catch {
    return line.trim() === '' ? undefined : `other: ${line.slice(0, 160)}`;
  }
}
