import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DagRun, TaskInstance, TaskLog } from '#contracts/public-api.ts';
import {
  childPids,
  E2E_DAGS_FOLDER,
  e2eEnv,
  freePort,
  isRunning,
  makeHome,
  PublicApi,
  removeHome,
  StandaloneProcess,
  waitFor,
} from './harness.ts';

const NAP = '/dags/sleepy/dagRuns/nap_run/taskInstances/nap';

/**
 * Ctrl-C of standalone while a task runs: the signal goes to the whole process group, as a
 * terminal sends it, so the embedded store and the task runner receive it too.
 */
describe('standalone stopped with Ctrl-C', () => {
  let home: string;
  const processes: StandaloneProcess[] = [];

  const start = async (env: NodeJS.ProcessEnv) => {
    const standalone = new StandaloneProcess('node', env);
    processes.push(standalone);
    const apiUrl = await standalone.waitUntilReady();
    return { standalone, api: await PublicApi.fromHome(apiUrl, home) };
  };

  /** Starts standalone, triggers `sleepy`, waits until `nap` runs, then sends Ctrl-C. */
  const interruptNap = async (env: NodeJS.ProcessEnv, firstTrySleepMs: number) => {
    const { standalone, api } = await start(env);
    await api.request('POST', '/dags/sleepy/dagRuns', { dag_run_id: 'nap_run', conf: { firstTrySleepMs } });
    // Running, and past the start of its body: its first log line came with a heartbeat.
    await waitFor(
      'nap to be running and to have logged',
      async () => {
        if ((await api.request<TaskInstance>('GET', NAP)).state !== 'running') return undefined;
        const log = await api.request<TaskLog>('GET', `${NAP}/logs/1`);
        return log.content.includes('napping') ? true : undefined;
      },
      // Generous: on a loaded 2-core machine the start and the first log chunk can take a while.
      45_000,
    );
    const children = await childPids(standalone.pid);
    const stoppedAt = Date.now();
    standalone.signalGroup('SIGINT');
    const exit = await standalone.waitForExit(15_000);
    return { exit, stopSeconds: (Date.now() - stoppedAt) / 1000, children };
  };

  const napAfterRestart = async (env: NodeJS.ProcessEnv) => {
    const { api } = await start(env);
    const run = await waitFor(
      'the run to finish',
      async () => {
        const current = await api.request<DagRun>('GET', '/dags/sleepy/dagRuns/nap_run');
        return current.state === 'success' || current.state === 'failed' ? current : undefined;
      },
      20_000,
      200,
    );
    return { api, run, nap: await api.request<TaskInstance>('GET', NAP) };
  };

  beforeEach(async () => {
    home = await makeHome();
  });

  afterEach(async () => {
    for (const standalone of processes.splice(0)) await standalone.kill();
    await removeHome(home);
  });

  it('lets a running task finish within the grace period and exits 0', async () => {
    const env = e2eEnv(home, await freePort(), { UPDRAFT_DAGS_FOLDER: E2E_DAGS_FOLDER });

    // Long enough to be seen running with its first log line (shipped with a heartbeat every 500 ms)
    // on a loaded machine, short enough to end well within the 5 s grace.
    const { exit, stopSeconds, children } = await interruptNap(env, 3_000);

    expect(exit).toEqual({ code: 0, signal: null });
    expect(stopSeconds).toBeLessThan(5);
    expect(children.filter(isRunning)).toEqual([]);
    const { run, nap } = await napAfterRestart(env);
    expect(run.state).toBe('success');
    expect([nap.state, nap.try_number, nap.max_tries, nap.error_message]).toEqual(['success', 1, 1, null]);
  }, 90_000);

  it('hands a task still running after the grace period back, to run again without using a try', async () => {
    const env = e2eEnv(home, await freePort(), {
      UPDRAFT_DAGS_FOLDER: E2E_DAGS_FOLDER,
      UPDRAFT_SHUTDOWN_GRACE_SECONDS: '1',
    });

    const { exit, stopSeconds, children } = await interruptNap(env, 20_000);

    expect(exit).toEqual({ code: 0, signal: null });
    expect(stopSeconds).toBeLessThan(5);
    expect(children.filter(isRunning)).toEqual([]);
    const { api, run, nap } = await napAfterRestart(env);
    // No retries: had the handed-back try counted as a failure, the run would have failed.
    expect(run.state).toBe('success');
    // The hand-back gave the try back (max_tries + 1), so the rerun is try 2 of 2.
    expect([nap.state, nap.try_number, nap.max_tries, nap.error_message]).toEqual(['success', 2, 2, null]);
    const firstTry = await api.request<TaskLog>('GET', `${NAP}/logs/1`);
    expect(firstTry.content).toContain('napping {"tryNumber":1}');
    expect(firstTry.content).not.toContain('woke up');
    const secondTry = await api.request<TaskLog>('GET', `${NAP}/logs/2`);
    expect(secondTry.content).toContain('woke up {"tryNumber":2}');
  }, 90_000);
});
