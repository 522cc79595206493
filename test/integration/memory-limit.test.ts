import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { StartedTask } from '#contracts/execution-api.ts';
import { MEMORY_LIMIT_MIN_MB } from '#sdk/options.ts';
import { ProcessTaskExecutor } from '#worker/executor.ts';
import { RunnerProcess } from '#worker/runner-process.ts';
import { startedTaskFixture, taskRunContextFixture } from '../unit/helpers/worker-fakes.ts';

/** The per-task memory limit with real task runner processes: heap and resident memory. */

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DAGS_FOLDER = fileURLToPath(new URL('.', import.meta.url));

function started(
  taskId: string,
  memoryLimitMb: number | null,
  dag = { id: 'runner_faults', fileloc: 'dags/runner-faults.ts' },
): StartedTask {
  return startedTaskFixture({
    dag_id: dag.id,
    task_id: taskId,
    fileloc: dag.fileloc,
    memory_limit_mb: memoryLimitMb,
    max_tries: 1,
    log_chunk_max_bytes: 262_144,
  });
}

function contextOf(taskId: string) {
  return taskRunContextFixture('runner_faults', taskId);
}

async function runTask(executor: ProcessTaskExecutor, task: StartedTask) {
  const logs: string[] = [];
  const outcome = await executor.run(task, [], {
    onLog: (text) => logs.push(text),
    pullXCom: async () => null,
    signal: new AbortController().signal,
  });
  return { outcome, log: logs.join('') };
}

describe('task memory limit', () => {
  it("fails a try whose heap grows past the task's memoryLimitMb, naming the limit in its log", async () => {
    // Resident memory is not watched here, so the heap limit (--max-old-space-size) is what ends it.
    const runner = new RunnerProcess({
      cwd: REPO_ROOT,
      memoryLimit: { mb: 256, source: "the task's memoryLimitMb" },
      memoryPollMs: 0,
    });
    const logs: string[] = [];
    const outcome = await runner.run(`${DAGS_FOLDER}/dags/runner-faults.ts`, contextOf('heap_hog'), [], {
      onLog: (text) => logs.push(text),
      pullXCom: async () => null,
      signal: new AbortController().signal,
    });
    const message =
      "Task exceeded its memory limit of 256 MB (the task's memoryLimitMb): its JavaScript heap ran out";
    expect(outcome.kind === 'error' && outcome.message).toContain(message);
    expect(logs.join('')).toContain(`{ERROR} Task failed: ${message}`);
    expect(runner.usable).toBe(false);
  }, 30_000);

  it('fails a try whose resident memory grows past UPDRAFT_TASK_MEMORY_LIMIT_MB', async () => {
    const executor = new ProcessTaskExecutor({ dagsFolder: DAGS_FOLDER, cwd: REPO_ROOT, memoryLimitMb: 256 });
    try {
      // rss_hog sets 256 itself; without it the setting applies and is named.
      const { outcome, log } = await runTask(executor, started('rss_hog', null));
      const message =
        'Task exceeded its memory limit of 256 MB (UPDRAFT_TASK_MEMORY_LIMIT_MB): its resident memory reached';
      expect(outcome.kind === 'error' && outcome.message).toContain(message);
      expect(log).toContain(message);
    } finally {
      executor.close();
    }
  }, 30_000);

  it('gives a task with its own memoryLimitMb a runner of that limit, and names the option', async () => {
    const executor = new ProcessTaskExecutor({
      dagsFolder: DAGS_FOLDER,
      cwd: REPO_ROOT,
      memoryLimitMb: 1024,
    });
    try {
      const { outcome, log } = await runTask(executor, started('rss_hog', 256));
      const message = "Task exceeded its memory limit of 256 MB (the task's memoryLimitMb)";
      expect(outcome.kind === 'error' && outcome.message).toContain(message);
      expect(log).toContain(message);
    } finally {
      executor.close();
    }
  }, 30_000);
});

describe('task memory limit at its smallest, and with child processes', () => {
  const LIMITS = { id: 'memory_limits', fileloc: 'dags/memory-limits.ts' };
  const executor = new ProcessTaskExecutor({ dagsFolder: DAGS_FOLDER, cwd: REPO_ROOT });
  afterAll(() => executor.close());

  it(`runs a task that allocates nothing under the smallest limit (${MEMORY_LIMIT_MIN_MB} MB)`, async () => {
    const { outcome, log } = await runTask(executor, started('smallest_limit', MEMORY_LIMIT_MIN_MB, LIMITS));
    expect(outcome, log).toMatchObject({ kind: 'success' });
  }, 30_000);

  it('runs a task that holds 96 MB of Buffers under the smallest limit', async () => {
    const { outcome, log } = await runTask(executor, started('under_limit', MEMORY_LIMIT_MIN_MB, LIMITS));
    expect(outcome, log).toMatchObject({ kind: 'success', xcom: '6' });
  }, 30_000);

  it('counts the memory of a child process the task started and waits for (400 MB under 256 MB)', async () => {
    const { outcome, log } = await runTask(executor, started('child_hog', 256, LIMITS));
    const message =
      "Task exceeded its memory limit of 256 MB (the task's memoryLimitMb): its resident memory reached";
    expect(outcome.kind === 'error' && outcome.message, log).toContain(message);
    expect(log).toContain('the processes it started');
    // The child was killed with the runner's process group.
    const child = Number(/child (\d+)/.exec(log)?.[1]);
    expect(child).toBeGreaterThan(0);
    // SIGKILL is delivered at once, but tearing down 400 MB of pages takes the kernel a moment.
    await expect.poll(() => isAlive(child), { timeout: 5_000, interval: 50 }).toBe(false);
  }, 30_000);
});

/** Whether a process exists and is not a zombie. */
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
