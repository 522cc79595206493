import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DagRun } from '#contracts/public-api.ts';
import {
  childPids,
  E2E_DAGS_FOLDER,
  e2eEnv,
  freePort,
  jsonOf,
  makeHome,
  PublicApi,
  readTextOrEmpty,
  removeHome,
  runCli,
  StandaloneProcess,
  waitFor,
} from './harness.ts';

interface CallbackList {
  callbacks: {
    kind: string;
    name: string;
    state: string;
    attempt: number;
    place: string;
    error_message: string | null;
  }[];
}

/**
 * Callbacks in standalone, every part a real process: owed by the task reports and the run's
 * finish, run by the worker's callback lane in task runner processes or (async ones) by the
 * triggerer child, listed by the CLI. The
 * DAGs (`dags/callbacks.ts`) append one line per effect to a file, so the tests count effects.
 */
describe('callbacks in standalone', () => {
  let home: string;
  let effects: string;
  let env: NodeJS.ProcessEnv;
  const processes: StandaloneProcess[] = [];

  const start = async () => {
    const standalone = new StandaloneProcess('node', env);
    processes.push(standalone);
    const apiUrl = await standalone.waitUntilReady();
    return { standalone, apiUrl, api: await PublicApi.fromHome(apiUrl, home) };
  };
  const cli = (apiUrl: string, ...args: string[]) => runCli(args, { ...env, UPDRAFT_API_URL: apiUrl });
  const callbacksOf = async (apiUrl: string, dagId: string, runId: string) =>
    jsonOf<CallbackList>(await cli(apiUrl, 'callbacks', 'list', dagId, runId, '--json')).callbacks;
  const settled = (apiUrl: string, dagId: string, runId: string, count: number) =>
    waitFor(
      `${count} callbacks of ${dagId}/${runId} to end`,
      async () => {
        const list = await callbacksOf(apiUrl, dagId, runId);
        return list.length === count && list.every((c) => c.state === 'success' || c.state === 'failed')
          ? list
          : undefined;
      },
      60_000,
      500,
    );

  beforeEach(async () => {
    home = await makeHome();
    effects = join(home, 'effects');
    await mkdir(effects);
    env = e2eEnv(home, await freePort(), {
      UPDRAFT_DAGS_FOLDER: E2E_DAGS_FOLDER,
      UPDRAFT_E2E_EFFECTS: effects,
    });
  });

  afterEach(async () => {
    for (const standalone of processes.splice(0)) await standalone.kill();
    await removeHome(home);
  });

  it('runs retry, success, failure and DAG callbacks once each; a raising one is retried, then failed', async () => {
    const { apiUrl } = await start();
    expect((await cli(apiUrl, 'dags', 'trigger', 'cb_flaky', '--run-id', 'f1', '--wait')).code).toBe(0);
    const flaky = await settled(apiUrl, 'cb_flaky', 'f1', 5);
    expect(flaky.map((c) => `${c.kind} ${c.name} ${c.state}`).sort()).toEqual([
      'dag_success dag_done success',
      'task_execute started success',
      'task_execute started success',
      'task_retry retrying success',
      'task_success succeeded success',
    ]);
    const failed = await cli(apiUrl, 'dags', 'trigger', 'cb_doomed', '--run-id', 'd1', '--wait');
    expect(failed.code).not.toBe(0);
    const doomed = await settled(apiUrl, 'cb_doomed', 'd1', 3);
    expect(doomed.map((c) => `${c.kind} ${c.name} ${c.state} ${c.attempt}`).sort()).toEqual([
      'dag_failure dag_failed success 1',
      'dag_failure raising failed 2',
      'task_failure task_failed success 1',
    ]);
    const lines = (await readTextOrEmpty(join(effects, 'effects.log'))).trim().split('\n').sort();
    expect(lines.map((line) => line.split(' ').slice(0, 2).join(' '))).toEqual([
      'dag_failure dag_failed',
      'dag_success dag_done',
      'task_execute started',
      'task_execute started',
      'task_failure task_failed',
      'task_retry retrying',
      'task_success succeeded',
    ]);
    // One effect per callback: no idempotency key twice.
    const keys = lines.map((line) => line.split(' ')[2]);
    expect(new Set(keys).size).toBe(keys.length);
    const raising = await cli(apiUrl, 'callbacks', 'list', 'cb_doomed', 'd1', '--state', 'failed', '--json');
    const [raised] = jsonOf<CallbackList & { callbacks: { callback_id: string }[] }>(raising).callbacks;
    expect(raised?.error_message).toBe('callback raised on attempt 2');
    const log = await cli(
      apiUrl,
      'callbacks',
      'logs',
      'cb_doomed',
      'd1',
      raised?.callback_id as string,
      '--attempt',
      '1',
    );
    expect(log.stdout).toContain('about to raise on attempt 1');
  }, 120_000);

  it('runs callbacks once more after kill -9 stopped them mid-attempt (on the triggerer and on a worker), with one finished effect each', async () => {
    const first = await start();
    await first.api.request<DagRun>('POST', '/dags/cb_slow/dagRuns', { dag_run_id: 's1' });
    const begun = async () =>
      new Set(
        (await readTextOrEmpty(join(effects, 'slow.log')))
          .split('\n')
          .filter((line) => line.startsWith('begin'))
          .map((line) => line.split(' ')[1]),
      );
    await waitFor(
      'both success callbacks to begin',
      async () => ((await begun()).size === 2 ? true : undefined),
      45_000,
      100,
    );
    const children = await childPids(first.standalone.pid);
    process.kill(first.standalone.pid, 'SIGKILL');
    await first.standalone.waitForExit(5_000);
    await waitFor(
      'the children of the killed process to exit',
      async () => (children.some((pid) => isRunning(pid)) ? undefined : true),
      5_000,
    );
    const second = await start();
    const callbacks = await settled(second.apiUrl, 'cb_slow', 's1', 2);
    expect(callbacks.map((callback) => [callback.kind, callback.state, callback.place]).sort()).toEqual([
      ['task_success', 'success', 'triggerer'],
      ['task_success', 'success', 'worker'],
    ]);
    const lines = (await readTextOrEmpty(join(effects, 'slow.log'))).trim().split('\n');
    for (const key of await begun()) {
      expect(lines.filter((line) => line.startsWith(`done ${key} `))).toHaveLength(1);
      // The attempt after the kill knows an earlier one may have had its effect.
      expect(lines.filter((line) => line.startsWith(`begin ${key} `)).at(-1)).toMatch(/ true$/);
    }
    expect(callbacks.every((callback) => callback.attempt >= 2)).toBe(true);
  }, 120_000);
});

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
