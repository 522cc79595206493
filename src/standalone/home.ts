import { constants } from 'node:fs';
import { access, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Settings } from '#config/settings.ts';
import type { Logger } from '#engine/logger.ts';
import { StandaloneError } from './errors.ts';

/**
 * The standalone home (`UPDRAFT_HOME`): checked before anything starts, so a wrong setting or a
 * lost store is one clear message instead of a stack trace or a silent fresh start.
 *
 * - `store/`: the embedded store's LevelDB database (absent with an in-memory store);
 * - `logs/`: task logs, keyed by run and try, so they are only meaningful with their store;
 * - `api-token`, `execution-secret`: secrets, kept across a store reset;
 * - `standalone.pid`: the lock of the running process.
 */
export interface HomeOptions {
  /** The store lives in memory: nothing on disk to check or move. */
  inMemoryStore: boolean;
  /** Start with an empty store: move the old store and logs aside (`updraft standalone --reset-store`). */
  resetStore: boolean;
  log: Logger;
}

/** Checks the home and the DAGs folder, locks the home; returns the lock's release. */
export async function prepareHome(settings: Settings, options: HomeOptions): Promise<() => Promise<void>> {
  await ensureHomeFolder(settings.home);
  await checkDagsFolder(settings.dagsFolder);
  const release = await lockHome(settings.home);
  try {
    if (!options.inMemoryStore) {
      if (options.resetStore) await moveStoreAside(settings.home, options.log);
      else await checkStore(settings.home);
    }
  } catch (error) {
    await release();
    throw error;
  }
  return release;
}

async function ensureHomeFolder(home: string): Promise<void> {
  const kind = await kindOf(home);
  if (kind === 'file' || kind === 'other') {
    throw new StandaloneError(
      `UPDRAFT_HOME is ${home}, which is a file, not a folder: set UPDRAFT_HOME to a folder (it is created when missing)`,
    );
  }
  try {
    await mkdir(home, { recursive: true });
    await access(home, constants.R_OK | constants.W_OK | constants.X_OK);
  } catch (error) {
    throw new StandaloneError(
      `UPDRAFT_HOME is ${home}, which cannot be used (${codeOf(error)}): set UPDRAFT_HOME to a folder this user can write`,
      { cause: error },
    );
  }
}

async function checkDagsFolder(folder: string): Promise<void> {
  const kind = await kindOf(folder);
  if (kind === 'missing') {
    throw new StandaloneError(
      `The DAGs folder ${folder} does not exist: create it, or set UPDRAFT_DAGS_FOLDER to the folder that holds your DAG files`,
    );
  }
  if (kind === 'file' || kind === 'other') {
    throw new StandaloneError(
      `The DAGs folder ${folder} is a file, not a folder: set UPDRAFT_DAGS_FOLDER to the folder that holds your DAG files`,
    );
  }
}

/**
 * A home whose store is gone or unreadable while its logs or token show an earlier start: the
 * runs, task states and DAG settings are lost, and starting would silently run every catch-up
 * run again and write new tries into old log files. Refused unless the reset is asked for.
 */
async function checkStore(home: string): Promise<void> {
  const store = join(home, 'store');
  const problem = await storeProblem(store);
  if (problem === undefined) return;
  const traces = [
    ...((await kindOf(join(home, 'api-token'))) === 'file' ? ['an API token'] : []),
    ...((await hasEntries(join(home, 'logs'))) ? ['task logs'] : []),
  ];
  if (problem === 'missing' && traces.length === 0) return; // a new home
  throw new StandaloneError(
    `The store of ${home} ${problem === 'missing' ? `(${store}) is missing` : `(${store}) cannot be read: ${problem}`}, but the folder holds ${traces.join(' and ') || 'data'} of an earlier start: its runs and task states would be lost. Restore the folder, or start with an empty store with \`npx updraft standalone --reset-store\` (\`npm start -- --reset-store\`), which moves the old store and logs aside`,
  );
}

/** Why the store folder cannot be opened; undefined when it looks like a LevelDB database. */
async function storeProblem(store: string): Promise<string | undefined> {
  const kind = await kindOf(store);
  if (kind === 'missing') return 'missing';
  if (kind === 'file' || kind === 'other') return 'it is a file, not a folder';
  try {
    await access(store, constants.R_OK | constants.W_OK | constants.X_OK);
    // LevelDB's pointer to its current manifest: without it the database is empty or broken.
    await access(join(store, 'CURRENT'), constants.R_OK);
    return undefined;
  } catch (error) {
    if (codeOf(error) === 'ENOENT') return (await hasEntries(store)) ? 'it has no CURRENT file' : 'missing';
    return codeOf(error);
  }
}

/** `--reset-store`: the old store and logs move to `<name>.before-<time>`; nothing is deleted. */
async function moveStoreAside(home: string, log: Logger): Promise<void> {
  const suffix = `before-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  for (const name of ['store', 'logs']) {
    const from = join(home, name);
    if ((await kindOf(from)) === 'missing') continue;
    const to = join(home, `${name}.${suffix}`);
    await rename(from, to);
    log.warn(`--reset-store: moved ${from} to ${to}; Updraft starts with an empty ${name} folder`);
  }
}

/**
 * One standalone process per home: its store is a LevelDB database that only one process may
 * open. The lock file holds the owner's pid and, on Linux, its start time. A lock whose pid is
 * gone (kill -9), or now belongs to another process (pid reuse after a reboot), is taken over.
 */
export async function lockHome(home: string): Promise<() => Promise<void>> {
  const path = join(home, 'standalone.pid');
  const owner = await readLock(path);
  if (owner && owner.pid !== process.pid && (await isUpdraftProcess(owner))) {
    throw new StandaloneError(
      `Another Updraft standalone process (pid ${owner.pid}) is using ${home}: stop it, or set UPDRAFT_HOME to another folder`,
    );
  }
  const startTime = await startTimeOf(process.pid);
  await writeFile(path, `${process.pid}\n${startTime === undefined ? '' : `started ${startTime}\n`}`);
  return async () => {
    await rm(path, { force: true });
  };
}

interface LockOwner {
  pid: number;
  /** The owner's start time in clock ticks since boot (/proc/<pid>/stat), when recorded. */
  startTime: string | undefined;
}

async function readLock(path: string): Promise<LockOwner | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if (codeOf(error) === 'ENOENT') return undefined;
    throw error;
  }
  const [first = '', second = ''] = text.split('\n');
  const pid = Number(first.trim());
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  return { pid, startTime: /^started (\d+)$/.exec(second.trim())?.[1] };
}

/**
 * Whether the lock's pid is still the Updraft process that wrote it: alive, and with the start
 * time the lock recorded; for a lock without one, a command line that names Updraft. Without
 * /proc (not Linux) a live pid counts as the owner.
 */
async function isUpdraftProcess(owner: LockOwner): Promise<boolean> {
  if (!isAlive(owner.pid)) return false;
  const startTime = await startTimeOf(owner.pid);
  if (startTime !== undefined && owner.startTime !== undefined) return startTime === owner.startTime;
  try {
    const commandLine = (await readFile(`/proc/${owner.pid}/cmdline`, 'utf8')).split('\0').join(' ');
    return /updraft/i.test(commandLine);
  } catch {
    return true;
  }
}

/** Field 22 of /proc/<pid>/stat; the fields after the command name, which may hold spaces. */
export async function startTimeOf(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat
      .slice(stat.lastIndexOf(')') + 2)
      .split(' ')
      .at(19);
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return codeOf(error) === 'EPERM';
  }
}

async function kindOf(path: string): Promise<'missing' | 'folder' | 'file' | 'other'> {
  try {
    const info = await stat(path);
    if (info.isDirectory()) return 'folder';
    return info.isFile() ? 'file' : 'other';
  } catch (error) {
    if (codeOf(error) === 'ENOENT') return 'missing';
    if (codeOf(error) === 'ENOTDIR') return 'other';
    throw error;
  }
}

async function hasEntries(folder: string): Promise<boolean> {
  try {
    return (await readdir(folder)).length > 0;
  } catch {
    return false;
  }
}

function codeOf(error: unknown): string {
  return (error as NodeJS.ErrnoException | undefined)?.code ?? String(error);
}
