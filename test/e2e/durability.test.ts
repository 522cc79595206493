import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DagRun, TaskInstance, TaskInstanceCollection } from '#contracts/public-api.ts';
import {
  childPids,
  E2E_DAGS_FOLDER,
  e2eEnv,
  freePort,
  isRunning,
  makeHome,
  PublicApi,
  readTextOrEmpty,
  removeHome,
  StandaloneProcess,
  waitFor,
} from './harness.ts';

/** kill -9 of standalone while a task runs, then a restart on the same home and port. */
describe('standalone after kill -9', () => {
  let home: string;
  let env: NodeJS.ProcessEnv;
  const processes: StandaloneProcess[] = [];

  const start = async () => {
    const standalone = new StandaloneProcess('node', env);
    processes.push(standalone);
    const apiUrl = await standalone.waitUntilReady();
    return { standalone, api: await PublicApi.fromHome(apiUrl, home) };
  };
  const taskInstancesOf = async (api: PublicApi, runId: string) => {
    const collection = await api.request<TaskInstanceCollection>(
      'GET',
      `/dags/durable/dagRuns/${runId}/taskInstances`,
    );
    return Object.fromEntries(collection.task_instances.map((ti) => [ti.task_id, ti])) as Record<
      string,
      TaskInstance
    >;
  };

  beforeEach(async () => {
    home = await makeHome();
    env = e2eEnv(home, await freePort(), { UPDRAFT_DAGS_FOLDER: E2E_DAGS_FOLDER });
  });

  afterEach(async () => {
    for (const standalone of processes.splice(0)) await standalone.kill();
    await removeHome(home);
  });

  it('finishes the run, running no finished task again and retrying the interrupted one', async () => {
    const first = await start();
    const runId = 'durable_run';
    await first.api.request<DagRun>('POST', '/dags/durable/dagRuns', {
      dag_run_id: runId,
      conf: { markerDir: home },
    });
    await waitFor(
      'slow to run its first try',
      async () => {
        const tis = await taskInstancesOf(first.api, runId);
        const marker = await readTextOrEmpty(join(home, 'slow.txt'));
        return tis.slow?.state === 'running' && marker === 'try 1\n' ? true : undefined;
      },
      45_000,
    );
    // The embedded DynamoDB server and the task runner that is running `slow`, at least.
    const children = await childPids(first.standalone.pid);
    expect(children.length).toBeGreaterThanOrEqual(2);

    process.kill(first.standalone.pid, 'SIGKILL');
    expect((await first.standalone.waitForExit(5_000)).signal).toBe('SIGKILL');
    await waitFor(
      'the children of the killed process to exit',
      async () => (children.some(isRunning) ? undefined : true),
      5_000,
    );

    // Same home and port: it starts only if nothing of the killed process still holds the port.
    const second = await start();
    const finished = await waitFor(
      'the run to finish after the restart',
      async () => {
        const run = await second.api.request<DagRun>('GET', `/dags/durable/dagRuns/${runId}`);
        return run.state === 'success' || run.state === 'failed' ? run : undefined;
      },
      30_000,
      200,
    );

    expect(finished.state).toBe('success');
    const tis = await taskInstancesOf(second.api, runId);
    expect(
      Object.fromEntries(
        Object.entries(tis).map(([id, ti]) => [id, [ti.state, ti.try_number, ti.max_tries]]),
      ),
    ).toEqual({ first: ['success', 1, 1], slow: ['success', 2, 2], last: ['success', 1, 1] });
    expect(await readTextOrEmpty(join(home, 'first.txt'))).toBe('try 1\n');
    expect(await readTextOrEmpty(join(home, 'slow.txt'))).toBe('try 1\ntry 2\n');
  }, 120_000);
});
