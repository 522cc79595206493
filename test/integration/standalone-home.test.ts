import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSettings } from '#config/settings.ts';
import { silentLogger } from '#engine/logger.ts';
import { StandaloneError } from '#standalone/errors.ts';
import { type Standalone, startStandalone } from '#standalone/services.ts';

let home: string;
let first: Standalone;

const settingsFor = (dir: string) =>
  loadSettings({
    UPDRAFT_HOME: dir,
    PORT: '0',
    UPDRAFT_DAGS_FOLDER: resolve('dags'),
    UPDRAFT_DAG_REFRESH_INTERVAL_MS: '0',
    UPDRAFT_METRICS_LOG_INTERVAL_MS: '0',
  });

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'updraft-home-'));
  first = await startStandalone(settingsFor(home), { log: silentLogger, inMemoryStore: true });
}, 60_000);

afterAll(async () => {
  await first?.stop();
  await rm(home, { recursive: true, force: true });
});

describe('standalone home', () => {
  it('records the owning process in the home', async () => {
    expect((await readFile(join(home, 'standalone.pid'), 'utf8')).trim()).toBe(String(process.pid));
  });

  it('refuses a second standalone process on the same home, naming the owner and UPDRAFT_HOME', async () => {
    const owner = 1; // init: always alive, never this process
    await writeFile(join(home, 'standalone.pid'), `${owner}\n`);
    const second = startStandalone(settingsFor(home), { log: silentLogger, inMemoryStore: true });
    await expect(second).rejects.toThrow(StandaloneError);
    await expect(second).rejects.toThrow(
      `Another Updraft standalone process (pid ${owner}) is using ${home}`,
    );
    await writeFile(join(home, 'standalone.pid'), `${process.pid}\n`);
  });

  it('takes over the lock of a process that is gone', async () => {
    const other = await mkdtemp(join(tmpdir(), 'updraft-home-'));
    await writeFile(join(other, 'standalone.pid'), '999999999\n');
    const standalone = await startStandalone(settingsFor(other), { log: silentLogger, inMemoryStore: true });
    expect((await readFile(join(other, 'standalone.pid'), 'utf8')).trim()).toBe(String(process.pid));
    await standalone.stop();
    await rm(other, { recursive: true, force: true });
  }, 60_000);
});
