import { execFile } from 'node:child_process';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DagRun, TaskInstance, TaskInstanceCollection } from '#contracts/public-api.ts';
import {
  E2E_DAGS_FOLDER,
  e2eEnv,
  freePort,
  makeHome,
  PublicApi,
  readTextOrEmpty,
  removeHome,
  StandaloneProcess,
  waitFor,
} from './harness.ts';

/** The embedded store's process among the children of standalone. */
async function storePidOf(standalonePid: number): Promise<number> {
  const { stdout } = await promisify(execFile)('ps', ['-o', 'pid=,args=', '--ppid', String(standalonePid)]);
  const line = stdout.split('\n').find((text) => text.includes('embedded-server'));
  if (!line) throw new Error(`No embedded store process under ${standalonePid}:\n${stdout}`);
  return Number(line.trim().split(' ')[0]);
}

/** kill -9 of the embedded store process while a task runs. */
describe('standalone when its store process is killed', () => {
  let home: string;
  let env: NodeJS.ProcessEnv;
  const processes: StandaloneProcess[] = [];

  const start = async () => {
    const standalone = new StandaloneProcess('node', env);
    processes.push(standalone);
    const apiUrl = await standalone.waitUntilReady();
    return { standalone, api: await PublicApi.fromHome(apiUrl, home) };
  };

  beforeEach(async () => {
    home = await makeHome();
    // A heartbeat timeout longer than a store restart: the running try keeps its place.
    env = e2eEnv(home, await freePort(), {
      UPDRAFT_DAGS_FOLDER: E2E_DAGS_FOLDER,
      UPDRAFT_HEARTBEAT_TIMEOUT_MS: '30000',
    });
  });

  afterEach(async () => {
    for (const standalone of processes.splice(0)) await standalone.kill();
    await removeHome(home);
  });

  it('restarts the store; the run completes and no task runs twice', async () => {
    const { standalone, api } = await start();
    await api.request<DagRun>('POST', '/dags/durable/dagRuns', {
      dag_run_id: 'store_death',
      conf: { markerDir: home },
    });
    await waitFor(
      'slow to be running',
      async () => ((await readTextOrEmpty(join(home, 'slow.txt'))) === 'try 1\n' ? true : undefined),
      30_000,
    );
    process.kill(await storePidOf(standalone.pid), 'SIGKILL');

    const finished = await waitFor(
      'the run to finish after the store restart',
      async () => {
        const run = await api.request<DagRun>('GET', '/dags/durable/dagRuns/store_death');
        return run.state === 'success' || run.state === 'failed' ? run : undefined;
      },
      60_000,
      200,
    );
    expect(finished.state).toBe('success');
    const collection = await api.request<TaskInstanceCollection>(
      'GET',
      '/dags/durable/dagRuns/store_death/taskInstances',
    );
    const tries = Object.fromEntries(
      collection.task_instances.map((ti: TaskInstance) => [ti.task_id, [ti.state, ti.try_number]]),
    );
    expect(tries).toEqual({ first: ['success', 1], slow: ['success', 1], last: ['success', 1] });
    expect(await readTextOrEmpty(join(home, 'first.txt'))).toBe('try 1\n');
    expect(await readTextOrEmpty(join(home, 'slow.txt'))).toBe('try 1\n');
    expect(standalone.output).toContain('The embedded store is running again');
    expect(standalone.output).not.toContain('Internal server error');
  }, 120_000);

  it('stops with exit code 1 and a message when the store cannot be restarted', async () => {
    const { standalone } = await start();
    // The store folder becomes a file: every restart fails to open it.
    await rename(join(home, 'store'), join(home, 'store.moved'));
    await writeFile(join(home, 'store'), 'not a database');
    process.kill(await storePidOf(standalone.pid), 'SIGKILL');

    const exit = await standalone.waitForExit(60_000);
    expect(exit.code).toBe(1);
    expect(standalone.output).toContain(
      `Error: The embedded store (${join(home, 'store')}) stopped and could not be restarted after 5 attempts`,
    );
  }, 90_000);
});
