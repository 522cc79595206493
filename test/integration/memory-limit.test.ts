import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { StartedTask } from '#contracts/execution-api.ts';
import { ProcessTaskExecutor } from '#worker/executor.ts';
import { RunnerProcess } from '#worker/runner-process.ts';

/** The per-task memory limit with real task runner processes: heap and resident memory. */

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DAGS_FOLDER = fileURLToPath(new URL('.', import.meta.url));

function started(taskId: string, memoryLimitMb: number | null): StartedTask {
  return {
    dag_id: 'runner_faults',
    dag_run_id: 'r',
    task_id: taskId,
    map_index: -1,
    try_number: 1,
    max_tries: 1,
    logical_date: '2026-01-01T00:00:00.000Z',
    data_interval_start: null,
    data_interval_end: null,
    conf: {},
    params: {},
    fileloc: 'dags/runner-faults.ts',
    dag_version: 'v',
    args: [],
    execution_timeout_ms: null,
    memory_limit_mb: memoryLimitMb,
    xcom_max_bytes: 49_152,
    log_chunk_max_bytes: 262_144,
    log_max_chunks: 20,
  };
}

function contextOf(taskId: string) {
  return {
    dagId: 'runner_faults',
    runId: 'r',
    taskId,
    mapIndex: -1,
    tryNumber: 1,
    maxTries: 1,
    logicalDate: '2026-01-01T00:00:00.000Z',
    dataIntervalStart: null,
    dataIntervalEnd: null,
    params: {},
    conf: {},
  };
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
      memoryLimit: { mb: 96, source: "the task's memoryLimitMb" },
      memoryPollMs: 0,
    });
    const logs: string[] = [];
    const outcome = await runner.run(`${DAGS_FOLDER}/dags/runner-faults.ts`, contextOf('heap_hog'), [], {
      onLog: (text) => logs.push(text),
      pullXCom: async () => null,
      signal: new AbortController().signal,
    });
    const message =
      "Task exceeded its memory limit of 96 MB (the task's memoryLimitMb): its JavaScript heap ran out";
    expect(outcome.kind === 'error' && outcome.message).toContain(message);
    expect(logs.join('')).toContain(`{ERROR} Task failed: ${message}`);
    expect(runner.usable).toBe(false);
  }, 30_000);

  it('fails a try whose resident memory grows past UPDRAFT_TASK_MEMORY_LIMIT_MB', async () => {
    const executor = new ProcessTaskExecutor({ dagsFolder: DAGS_FOLDER, cwd: REPO_ROOT, memoryLimitMb: 160 });
    try {
      // rss_hog sets 160 itself; without it the setting applies and is named.
      const { outcome, log } = await runTask(executor, started('rss_hog', null));
      const message =
        'Task exceeded its memory limit of 160 MB (UPDRAFT_TASK_MEMORY_LIMIT_MB): its resident memory reached';
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
      const { outcome, log } = await runTask(executor, started('rss_hog', 160));
      const message = "Task exceeded its memory limit of 160 MB (the task's memoryLimitMb)";
      expect(outcome.kind === 'error' && outcome.message).toContain(message);
      expect(log).toContain(message);
    } finally {
      executor.close();
    }
  }, 30_000);
});
