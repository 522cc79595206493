import { type ChildProcess, fork } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DagRun, TaskInstanceCollection } from '#contracts/public-api.ts';
import { parseExecutionKeys, TaskTokenSigner } from '#engine/tokens.ts';
import {
  childPids,
  E2E_DAGS_FOLDER,
  e2eEnv,
  freePort,
  makeHome,
  PublicApi,
  REPO_ROOT,
  removeHome,
  StandaloneProcess,
  waitFor,
} from './harness.ts';

/**
 * Deferrable tasks in standalone, every part a real process: the server (API, scheduler, worker
 * pool) and its triggerer child, which reaches the API over HTTP only.
 */
describe('deferrable tasks in standalone', () => {
  let home: string;
  let env: NodeJS.ProcessEnv;
  const processes: StandaloneProcess[] = [];
  const extraTriggerers: ChildProcess[] = [];

  const start = async (extra: Record<string, string> = {}) => {
    const standalone = new StandaloneProcess('node', { ...env, ...extra });
    processes.push(standalone);
    const apiUrl = await standalone.waitUntilReady();
    return { standalone, apiUrl, api: await PublicApi.fromHome(apiUrl, home) };
  };
  const trigger = async (api: PublicApi, dagId: string, runId: string) =>
    api.request<DagRun>('POST', `/dags/${dagId}/dagRuns`, { dag_run_id: runId });
  const finished = (api: PublicApi, dagId: string, runId: string, timeoutMs: number) =>
    waitFor(
      `run ${dagId}/${runId} to finish`,
      async () => {
        const run = await api.request<DagRun>('GET', `/dags/${dagId}/dagRuns/${runId}`);
        return run.state === 'success' || run.state === 'failed' ? run : undefined;
      },
      timeoutMs,
      200,
    );
  const taskInstances = async (api: PublicApi, dagId: string, runId: string) =>
    (await api.request<TaskInstanceCollection>('GET', `/dags/${dagId}/dagRuns/${runId}/taskInstances`))
      .task_instances;

  beforeEach(async () => {
    home = await makeHome();
    env = e2eEnv(home, await freePort(), {
      UPDRAFT_DAGS_FOLDER: E2E_DAGS_FOLDER,
      UPDRAFT_TRIGGERER_LOAD_INTERVAL_MS: '200',
      UPDRAFT_TRIGGERER_HEARTBEAT_INTERVAL_MS: '500',
      UPDRAFT_TRIGGERER_HEARTBEAT_TIMEOUT_MS: '2000',
      UPDRAFT_TRIGGER_MODULES: 'end_triggers.ts',
    });
  });

  afterEach(async () => {
    for (const child of extraTriggerers.splice(0)) child.kill('SIGKILL');
    for (const standalone of processes.splice(0)) await standalone.kill();
    await removeHome(home);
  });

  it('defers, resumes, defers again and succeeds, with the trigger lines in the try log', async () => {
    const { api } = await start();
    await trigger(api, 'deferring', 'twice');
    const run = await finished(api, 'deferring', 'twice', 60_000);
    expect(run.state).toBe('success');
    const xcom = await api.request<{ value: unknown }>(
      'GET',
      '/dags/deferring/dagRuns/twice/taskInstances/wait_twice/xcomEntries/return_value',
    );
    expect(xcom.value).toEqual({ rounds: 2, startedAtIsDate: true, eventIsDate: true });
    const tis = await taskInstances(api, 'deferring', 'twice');
    expect(tis.map((ti) => [ti.task_id, ti.state, ti.try_number]).sort()).toEqual([
      ['defer_once', 'success', 1],
      ['wait_twice', 'success', 1],
    ]);
    const log = await api.request<{ content: string }>(
      'GET',
      '/dags/deferring/dagRuns/twice/taskInstances/wait_twice/logs/1',
    );
    // The worker's lines, then the trigger's (a trigger whose moment has passed when it starts
    // logs nothing), then the worker's again after each resume.
    expect(log.content).toMatch(
      /submitting and deferring[\s\S]*resumed.*"round":1[\s\S]*Waiting until[\s\S]*resumed.*"round":2/,
    );
  }, 90_000);

  it('completes 50 deferred tasks on 2 worker slots: a deferred task holds no slot', async () => {
    const { api } = await start({ UPDRAFT_WORKER_SLOTS: '2' });
    await trigger(api, 'deferring_many', 'many');
    let mostDeferred = 0;
    const run = await waitFor(
      'the 50 tasks',
      async () => {
        const tis = await taskInstances(api, 'deferring_many', 'many');
        mostDeferred = Math.max(mostDeferred, tis.filter((ti) => ti.state === 'deferred').length);
        const state = (await api.request<DagRun>('GET', '/dags/deferring_many/dagRuns/many')).state;
        return state === 'success' || state === 'failed' ? state : undefined;
      },
      90_000,
      200,
    );
    expect(run).toBe('success');
    // Two slots, yet many tasks waited at once: each gave its slot back when it deferred.
    expect(mostDeferred).toBeGreaterThan(10);
  }, 120_000);

  it('ends tasks from their trigger, and starts one in its trigger, without a worker in between', async () => {
    const { api } = await start();
    await trigger(api, 'deferring_ends', 'ends');
    const run = await finished(api, 'deferring_ends', 'ends', 60_000);
    expect(run.state).toBe('failed');
    const tis = Object.fromEntries(
      (await taskInstances(api, 'deferring_ends', 'ends')).map((ti) => [ti.task_id, ti]),
    );
    expect(tis.end_ok).toMatchObject({ state: 'success', try_number: 1 });
    const xcom = await api.request<{ value: unknown }>(
      'GET',
      '/dags/deferring_ends/dagRuns/ends/taskInstances/end_ok/xcomEntries/return_value',
    );
    expect(xcom.value).toEqual({ rows: 3 });
    // A failure event ends the task at once, its retries unused.
    expect(tis.end_bad).toMatchObject({ state: 'failed', try_number: 1 });
    expect(tis.end_bad?.error_message).toContain('the external job failed');
    expect(tis.from_trigger).toMatchObject({ state: 'success', try_number: 1 });
    const started = await api.request<{ value: unknown }>(
      'GET',
      '/dags/deferring_ends/dagRuns/ends/taskInstances/from_trigger/xcomEntries/return_value',
    );
    expect(started.value).toEqual({ resumed: 'resume', note: 'started in a trigger' });
  }, 90_000);

  it('fails a task whose deferral times out, saying so', async () => {
    const { api } = await start();
    await trigger(api, 'deferring_timeout', 'late');
    const run = await finished(api, 'deferring_timeout', 'late', 60_000);
    expect(run.state).toBe('failed');
    const [ti] = await taskInstances(api, 'deferring_timeout', 'late');
    expect(ti?.state).toBe('failed');
    expect(ti?.error_message).toContain('Deferral timed out');
  }, 90_000);

  it("fires a killed triggerer's triggers through the other triggerer", async () => {
    const { standalone, apiUrl, api } = await start();
    // A second triggerer, with its own credential signed by the server's keyring.
    const keys = parseExecutionKeys(await readFile(join(home, 'execution-secret'), 'utf8'));
    const credential = await new TaskTokenSigner(keys, 3600).issueClaims({ kind: 'triggerer' }, Date.now());
    const second = fork(join(REPO_ROOT, 'src', 'triggerer', 'main.ts'), [], {
      env: { ...env, UPDRAFT_API_URL: apiUrl, UPDRAFT_TRIGGERER_TOKEN: credential },
      stdio: 'ignore',
      execArgv: ['--disable-warning=ExperimentalWarning'],
    });
    extraTriggerers.push(second);
    await trigger(api, 'deferring_failover', 'failover');
    await waitFor(
      'every task deferred',
      async () => {
        const tis = await taskInstances(api, 'deferring_failover', 'failover');
        return tis.every((ti) => ti.state === 'deferred') ? true : undefined;
      },
      30_000,
      100,
    );
    // kill -9 of standalone's own triggerer child, while it may hold some or all of the triggers.
    const children = await childPids(standalone.pid);
    const triggererPid = await firstMatching(children, 'triggerer/main.ts');
    expect(triggererPid).toBeDefined();
    process.kill(triggererPid as number, 'SIGKILL');
    const run = await finished(api, 'deferring_failover', 'failover', 60_000);
    expect(run.state).toBe('success');
    const tis = await taskInstances(api, 'deferring_failover', 'failover');
    expect(tis.every((ti) => ti.try_number === 1)).toBe(true);
  }, 120_000);
});

/** The first of `pids` whose command line contains `needle`. */
async function firstMatching(pids: number[], needle: string): Promise<number | undefined> {
  for (const pid of pids) {
    const command = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (command.includes(needle)) return pid;
  }
  return undefined;
}
