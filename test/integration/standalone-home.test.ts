import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { main } from '#cli/main.ts';
import { loadSettings } from '#config/settings.ts';
import { silentLogger } from '#engine/logger.ts';
import { StandaloneError } from '#standalone/errors.ts';
import { startTimeOf } from '#standalone/home.ts';
import { type Standalone, startStandalone } from '#standalone/services.ts';

let home: string;
let first: Standalone;
const homes: string[] = [];
const children: ChildProcess[] = [];

const settingsFor = (dir: string, extra: Record<string, string> = {}) =>
  loadSettings({
    UPDRAFT_HOME: dir,
    PORT: '0',
    UPDRAFT_DAGS_FOLDER: resolve('dags'),
    UPDRAFT_DAG_REFRESH_INTERVAL_MS: '0',
    UPDRAFT_METRICS_LOG_INTERVAL_MS: '0',
    ...extra,
  });

const newHome = async () => {
  const dir = await mkdtemp(join(tmpdir(), 'updraft-home-'));
  homes.push(dir);
  return dir;
};

/** A live process that is not this one; `args` end up in its command line. */
const spawnProcess = async (command: string, args: string[]) => {
  const child = spawn(command, args, { stdio: 'ignore' });
  children.push(child);
  await sleep(100);
  return child.pid as number;
};

/** Runs the CLI in this process and returns what it printed on stderr and its exit code. */
const cli = async (args: string[], env: Record<string, string>) => {
  let stderr = '';
  const code = await main(['node', 'updraft', ...args], {
    env: { ...env, PORT: '0', UPDRAFT_METRICS_LOG_INTERVAL_MS: '0' },
    stdout: { write: () => true } as unknown as NodeJS.WriteStream,
    stderr: {
      write: (text: string) => {
        stderr += text;
        return true;
      },
    } as unknown as NodeJS.WriteStream,
  });
  return { code, stderr };
};

beforeAll(async () => {
  home = await newHome();
  first = await startStandalone(settingsFor(home), { log: silentLogger, inMemoryStore: true });
}, 60_000);

afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
});

afterAll(async () => {
  await first?.stop();
  for (const dir of homes) await rm(dir, { recursive: true, force: true });
});

describe('standalone home lock', () => {
  it('records the owning process and its start time in the home', async () => {
    const [pid, started] = (await readFile(join(home, 'standalone.pid'), 'utf8')).split('\n');
    expect(pid).toBe(String(process.pid));
    expect(started).toBe(`started ${await startTimeOf(process.pid)}`);
  });

  it('refuses a second standalone process on the same home, naming the owner and UPDRAFT_HOME', async () => {
    const owner = await spawnProcess(process.execPath, ['-e', 'setTimeout(() => {}, 30000)']);
    await writeFile(join(home, 'standalone.pid'), `${owner}\nstarted ${await startTimeOf(owner)}\n`);
    const second = startStandalone(settingsFor(home), { log: silentLogger, inMemoryStore: true });
    await expect(second).rejects.toThrow(StandaloneError);
    await expect(second).rejects.toThrow(
      `Another Updraft standalone process (pid ${owner}) is using ${home}`,
    );
    await writeFile(join(home, 'standalone.pid'), `${process.pid}\n`);
  });

  it('takes over the lock of a process that is gone', async () => {
    const other = await newHome();
    await writeFile(join(other, 'standalone.pid'), '999999999\n');
    const standalone = await startStandalone(settingsFor(other), { log: silentLogger, inMemoryStore: true });
    expect((await readFile(join(other, 'standalone.pid'), 'utf8')).split('\n')[0]).toBe(String(process.pid));
    await standalone.stop();
  }, 60_000);

  it('takes over a stale lock whose pid now belongs to another program', async () => {
    const other = await newHome();
    const stranger = await spawnProcess('sleep', ['30']);
    await writeFile(join(other, 'standalone.pid'), `${stranger}\n`);
    const standalone = await startStandalone(settingsFor(other), { log: silentLogger, inMemoryStore: true });
    expect((await readFile(join(other, 'standalone.pid'), 'utf8')).split('\n')[0]).toBe(String(process.pid));
    await standalone.stop();
  }, 60_000);

  it('takes over a lock whose pid was reused: the recorded start time differs', async () => {
    const other = await newHome();
    const reused = await spawnProcess(process.execPath, ['-e', 'setTimeout(() => {}, 30000)', 'updraft']);
    await writeFile(join(other, 'standalone.pid'), `${reused}\nstarted 1\n`);
    const standalone = await startStandalone(settingsFor(other), { log: silentLogger, inMemoryStore: true });
    await standalone.stop();
  }, 60_000);
});

describe('standalone home and DAGs folder errors', () => {
  it('says UPDRAFT_HOME is a file, in one line without a stack trace or a doubled "Error:"', async () => {
    const dir = await newHome();
    const file = join(dir, 'not-a-folder');
    await writeFile(file, 'x');
    const result = await cli(['standalone'], { UPDRAFT_HOME: file, UPDRAFT_DAGS_FOLDER: resolve('dags') });
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      `Error: UPDRAFT_HOME is ${file}, which is a file, not a folder: set UPDRAFT_HOME to a folder (it is created when missing)\n`,
    );
  });

  it('says the DAGs folder is missing and which setting to change', async () => {
    const dir = await newHome();
    const missing = join(dir, 'no-dags');
    const result = await cli(['standalone'], { UPDRAFT_HOME: dir, UPDRAFT_DAGS_FOLDER: missing });
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      `Error: The DAGs folder ${missing} does not exist: create it, or set UPDRAFT_DAGS_FOLDER to the folder that holds your DAG files\n`,
    );
  });
});

describe('a home that lost its store', () => {
  /** A home as an earlier start leaves it (token and logs), but without its store folder. */
  const homeWithoutStore = async () => {
    const dir = await newHome();
    await writeFile(join(dir, 'api-token'), 'a'.repeat(43));
    await mkdir(join(dir, 'logs', 'old_run'), { recursive: true });
    await writeFile(join(dir, 'logs', 'old_run', 'try-1.log'), 'old line\n');
    return dir;
  };

  it('refuses to start, naming the missing store and the flag that starts fresh', async () => {
    const dir = await homeWithoutStore();
    const start = startStandalone(settingsFor(dir), { log: silentLogger });
    await expect(start).rejects.toThrow(StandaloneError);
    await expect(start).rejects.toThrow(
      `The store of ${dir} (${join(dir, 'store')}) is missing, but the folder holds an API token and task logs of an earlier start`,
    );
    await expect(start).rejects.toThrow('--reset-store');
    expect(await readdir(dir)).not.toContain('store');
    expect(await readdir(dir)).not.toContain('standalone.pid');
  });

  it('starts with an empty store with --reset-store, moving the old logs aside', async () => {
    const dir = await homeWithoutStore();
    const standalone = await startStandalone(settingsFor(dir), { log: silentLogger, resetStore: true });
    await standalone.stop();
    const entries = await readdir(dir);
    const movedLogs = entries.find((name) => name.startsWith('logs.before-'));
    expect(movedLogs).toBeDefined();
    expect(await readFile(join(dir, movedLogs!, 'old_run', 'try-1.log'), 'utf8')).toBe('old line\n');
    expect(entries).toContain('store');
    expect(entries).not.toContain('logs'); // no new try yet: the new logs folder starts empty
  }, 60_000);

  it('starts a new home (no token, no logs) without the flag', async () => {
    const dir = await newHome();
    const standalone = await startStandalone(settingsFor(dir), { log: silentLogger });
    await standalone.stop();
    expect(await readdir(dir)).toContain('store');
  }, 60_000);

  it('starts again on the store it left', async () => {
    const dir = await newHome();
    await (await startStandalone(settingsFor(dir), { log: silentLogger })).stop();
    await (await startStandalone(settingsFor(dir), { log: silentLogger })).stop();
  }, 60_000);
});
