import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { TaskInstance } from '#contracts/public-api.ts';
import {
  childPids,
  e2eEnv,
  freePort,
  isRunning,
  makeHome,
  PublicApi,
  removeHome,
  StandaloneProcess,
  waitFor,
} from './harness.ts';

const DAGS_FOLDER = fileURLToPath(new URL('./runner-dags', import.meta.url));
const SPIN = '/dags/runner_spin/dagRuns/spin_run/taskInstances/spin';

/** The children of a process whose command line holds `entry`. */
async function childrenRunning(pid: number, entry: string): Promise<number[]> {
  const children = await childPids(pid);
  return children.filter((child) => {
    try {
      return readFileSync(`/proc/${child}/cmdline`, 'utf8').includes(entry);
    } catch {
      return false;
    }
  });
}

/** The live processes running `sleep <seconds>`: the helper the spinning task started. */
function sleepers(seconds: number): number[] {
  return execFileSync('ps', ['-eo', 'pid=,stat=,args='], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.endsWith(`sleep ${seconds}`) && !/^\s*\d+\s+Z/.test(line))
    .map((line) => Number(line.trim().split(/\s+/)[0]));
}

/**
 * kill -9 of standalone while a task is stuck in `while (true) {}`: no task runner, no process
 * the task started and no DAG parser may outlive the server, whether the whole process group or
 * only the server process was killed.
 */
describe('task runners when standalone is killed with SIGKILL', () => {
  let home: string;
  const processes: StandaloneProcess[] = [];
  /** Every child seen, killed at the end whatever happened (the store runs in its own group). */
  const seen = new Set<number>();
  /** The helper's `sleep <seconds>`, unique to this run of the test. */
  let seconds = 0;

  const startSpinning = async (env: NodeJS.ProcessEnv, trigger: boolean) => {
    const standalone = new StandaloneProcess('node', env);
    processes.push(standalone);
    const api = await PublicApi.fromHome(await standalone.waitUntilReady(), home);
    if (trigger) {
      await api.request('POST', '/dags/runner_spin/dagRuns', { dag_run_id: 'spin_run', conf: { seconds } });
    }
    await waitFor(
      'spin to be running',
      async () => ((await api.request<TaskInstance>('GET', SPIN)).state === 'running' ? true : undefined),
      // Generous: on a loaded 2-core machine a start (DAG parsing, runners) can take a while.
      45_000,
    );
    // A restart may see the try it lost as running before it runs it again: no helper to wait for.
    const helpers = trigger
      ? await waitFor(
          "the task's helper process to be running",
          async () => {
            const pids = sleepers(seconds);
            return pids.length > 0 ? pids : undefined;
          },
          10_000,
        )
      : sleepers(seconds);
    const runners = await childrenRunning(standalone.pid, 'task-runner.ts');
    const parsers = await childrenRunning(standalone.pid, 'dag-processor.ts');
    for (const pid of [...(await childPids(standalone.pid)), ...helpers]) seen.add(pid);
    expect(runners.length).toBeGreaterThan(0);
    // Every process the server started, and the one the task started.
    return { standalone, runners: [...runners, ...parsers, ...helpers] };
  };

  beforeEach(async () => {
    home = await makeHome();
    seconds = 100_000 + Math.floor(Math.random() * 800_000);
  });

  afterEach(async () => {
    for (const standalone of processes.splice(0)) await standalone.kill();
    for (const pid of seen) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone, as it should be.
      }
    }
    seen.clear();
    await removeHome(home);
  });

  const env = async () =>
    e2eEnv(home, await freePort(), { UPDRAFT_DAGS_FOLDER: DAGS_FOLDER, UPDRAFT_WORKER_SLOTS: '2' });

  it('leaves no runner after kill -9 of the process group, nor after the next start', async () => {
    const settings = await env();
    const first = await startSpinning(settings, true);

    first.standalone.signalGroup('SIGKILL');
    await first.standalone.waitForExit(5_000);
    await waitFor(
      'every runner to be gone',
      async () => (first.runners.some(isRunning) ? undefined : true),
      5_000,
    );

    // The next start runs the task again (the first try became a zombie); the old processes stay gone.
    const second = await startSpinning(settings, false);
    expect(first.runners.filter(isRunning)).toEqual([]);
    second.standalone.signalGroup('SIGKILL');
    await second.standalone.waitForExit(5_000);
    await waitFor(
      'every runner to be gone',
      async () => (second.runners.some(isRunning) ? undefined : true),
      5_000,
    );
  }, 150_000);

  it('leaves no runner after kill -9 of the server process alone', async () => {
    const { standalone, runners } = await startSpinning(await env(), true);

    process.kill(standalone.pid, 'SIGKILL');
    await standalone.waitForExit(5_000);
    // The runners' watchdog threads notice the supervisor is gone, whatever their task does, and
    // kill their process groups: the runners and the processes their tasks started.
    await waitFor('every runner to be gone', async () => (runners.some(isRunning) ? undefined : true), 5_000);
  }, 90_000);
});
