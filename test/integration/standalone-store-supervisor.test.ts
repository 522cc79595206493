import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSettings } from '#config/settings.ts';
import { silentLogger } from '#engine/logger.ts';
import type { StandaloneError } from '#standalone/errors.ts';
import { type Standalone, startStandalone } from '#standalone/services.ts';
import { StoreSupervisor } from '#standalone/store-supervisor.ts';
import { startEmbeddedDynamoProcess } from '#store/embedded.ts';

/** The embedded store's process, a child of this one, serving `home`. */
async function storePidOf(home: string): Promise<number> {
  const { stdout } = await promisify(execFile)('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)]);
  const line = stdout.split('\n').find((text) => text.includes('embedded-server') && text.includes(home));
  if (!line) throw new Error(`No embedded store process for ${home}:\n${stdout}`);
  return Number(line.trim().split(' ')[0]);
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await sleep(50);
  }
  throw new Error(`Timed out waiting for ${what}`);
}

describe('standalone when its store process dies', () => {
  let home: string;
  let standalone: Standalone;
  const fatal: StandaloneError[] = [];
  const get = (path: string, token?: string) =>
    fetch(`${standalone.apiUrl}${path}`, token ? { headers: { authorization: `Bearer ${token}` } } : {});

  beforeAll(async () => {
    home = await mkdtemp(join(tmpdir(), 'updraft-store-death-'));
    const settings = loadSettings({
      UPDRAFT_HOME: home,
      PORT: '0',
      UPDRAFT_DAGS_FOLDER: resolve('dags'),
      UPDRAFT_DAG_REFRESH_INTERVAL_MS: '0',
      UPDRAFT_METRICS_LOG_INTERVAL_MS: '0',
    });
    standalone = await startStandalone(settings, {
      log: silentLogger,
      onFatal: (error) => fatal.push(error),
    });
  }, 60_000);

  afterAll(async () => {
    await standalone?.stop();
    await rm(home, { recursive: true, force: true });
  });

  it('says degraded and answers 503 (not 500) while the store restarts, then recovers with its data', async () => {
    const registered = (
      (await (await get('/api/v2/dags', standalone.apiToken)).json()) as { total_entries: number }
    ).total_entries;
    expect(registered).toBeGreaterThan(0);
    const before = await storePidOf(home);
    process.kill(before, 'SIGKILL');

    const degraded = await until('health to say degraded', async () => {
      const response = await get('/api/v2/monitor/health');
      return response.status === 503 ? ((await response.json()) as Record<string, unknown>) : undefined;
    });
    expect(degraded).toMatchObject({ status: 'degraded', metadatabase: { status: 'unhealthy' } });
    // Either the supervisor has seen the process exit, or the health probe found it not answering.
    expect(String((degraded.metadatabase as { detail: string }).detail)).toMatch(
      /being restarted|does not answer/,
    );

    const statuses = new Set<number>();
    const recovered = await until('the API to answer 200 again', async () => {
      const response = await get('/api/v2/dags', standalone.apiToken);
      statuses.add(response.status);
      if (response.status === 503) expect(response.headers.get('retry-after')).toBe('1');
      return response.status === 200 ? ((await response.json()) as { total_entries: number }) : undefined;
    });
    expect([...statuses].filter((status) => status !== 200 && status !== 503)).toEqual([]);
    expect(recovered.total_entries).toBe(registered); // the DAGs registered before the death are still there
    expect((await get('/api/v2/monitor/health')).status).toBe(200);
    expect(await storePidOf(home)).not.toBe(before);
    expect(fatal).toEqual([]);
  }, 60_000);
});

describe('StoreSupervisor', () => {
  it('gives up after its attempts, once, with a message naming the store and the last error', async () => {
    const given: StandaloneError[] = [];
    let starts = 0;
    const supervisor = await StoreSupervisor.start({
      start: async () => {
        starts += 1;
        if (starts > 1) throw new Error(`cannot open the database (start ${starts})`);
        return startEmbeddedDynamoProcess();
      },
      ready: async () => {},
      log: silentLogger,
      restartDelaysMs: [10, 10],
      onGiveUp: (error) => given.push(error),
      description: '/some/home/store',
    });
    process.kill(supervisor.pid, 'SIGKILL');
    await until('the supervisor to give up', async () => (given.length > 0 ? true : undefined));
    await sleep(100);
    expect(given.map((error) => error.message)).toEqual([
      'The embedded store (/some/home/store) stopped and could not be restarted after 2 attempts (last error: cannot open the database (start 3)): Updraft stops. Check the folder and the log above, then start again',
    ]);
    expect(supervisor.health().status).toBe('unhealthy');
    await supervisor.close();
  }, 30_000);

  it('does not restart a store it was asked to stop', async () => {
    let starts = 0;
    const supervisor = await StoreSupervisor.start({
      start: async () => {
        starts += 1;
        return startEmbeddedDynamoProcess();
      },
      ready: async () => {},
      log: silentLogger,
      restartDelaysMs: [10],
      onGiveUp: () => {},
      description: 'memory',
    });
    await supervisor.close();
    await sleep(200);
    expect(starts).toBe(1);
    expect(supervisor.health()).toEqual({ status: 'healthy' });
  }, 30_000);
});
