import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import type { StartedTask } from '#contracts/execution-api.ts';
import { ProcessTaskExecutor } from '#worker/executor.ts';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DAGS_FOLDER = fileURLToPath(new URL('.', import.meta.url));

function started(taskId: string, conf: Record<string, unknown> = {}): StartedTask {
  return {
    dag_id: 'attack_runner',
    dag_run_id: 'r',
    task_id: taskId,
    map_index: -1,
    try_number: 1,
    max_tries: 1,
    logical_date: '2026-01-01T00:00:00.000Z',
    data_interval_start: null,
    data_interval_end: null,
    conf,
    params: {},
    fileloc: 'dags/attack-runner.ts',
    dag_version: 'v',
    args: [],
    execution_timeout_ms: null,
    memory_limit_mb: taskId === 'tiny_limit' ? 64 : taskId === 'child_hog' ? 128 : null,
    xcom_max_bytes: 49_152,
    log_chunk_max_bytes: 262_144,
    log_max_chunks: 20,
  };
}

const executor = new ProcessTaskExecutor({ dagsFolder: DAGS_FOLDER, cwd: REPO_ROOT });
afterAll(() => executor.close());

async function runTask(task: StartedTask, signal = new AbortController().signal) {
  const logs: string[] = [];
  const outcome = await executor.run(task, [], {
    onLog: (text) => logs.push(text),
    pullXCom: async () => null,
    signal,
  });
  return { outcome, log: logs.join('') };
}

const psLines = (needle: string) =>
  execFileSync('ps', ['-eo', 'pid=,ppid=,args='], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.includes(needle) && !line.includes('ps -eo'));

describe('attack: per-task memory limit', () => {
  it('a task with the smallest documented limit (64 MB) that allocates nothing succeeds', async () => {
    const { outcome, log } = await runTask(started('tiny_limit'));
    expect(outcome, log).toMatchObject({ kind: 'success' });
  }, 30_000);

  it("counts the memory of a child process the task started and waits for (400 MB under a 128 MB limit)", async () => {
    const { outcome, log } = await runTask(started('child_hog'));
    expect(outcome.kind, log).toBe('error');
    expect(JSON.stringify(outcome)).toContain('memory limit');
  }, 30_000);
});

describe('attack: processes a task started', () => {
  it('do not outlive the runner killed when its try is stopped', async () => {
    const seconds = 100_000 + Math.floor(Math.random() * 800_000);
    const stop = new AbortController();
    const pending = runTask(started('spawns_then_spins', { seconds }), stop.signal);
    await sleep(3_000);
    stop.abort(new Error('Task exceeded its execution timeout of 1s'));
    const { outcome } = await pending;
    expect(outcome.kind).toBe('error');
    await sleep(500);
    const survivors = psLines(`sleep ${seconds}`);
    for (const line of survivors) {
      try {
        process.kill(Number(line.trim().split(/\s+/)[0]), 'SIGKILL');
      } catch {}
    }
    expect(survivors).toEqual([]);
  }, 30_000);
});
