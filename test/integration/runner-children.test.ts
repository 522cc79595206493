import { execFile, execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import type { StartedTask } from '#contracts/execution-api.ts';
import { ProcessTaskExecutor } from '#worker/executor.ts';
import { startedTaskFixture } from '../unit/helpers/worker-fakes.ts';

/** Processes a task starts end with its task runner: a stopped try, a crash. */

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DAGS_FOLDER = fileURLToPath(new URL('.', import.meta.url));

function started(taskId: string, conf: Record<string, unknown>): StartedTask {
  return startedTaskFixture({
    dag_id: 'runner_children',
    task_id: taskId,
    conf,
    fileloc: 'dags/runner-children.ts',
    memory_limit_mb: null,
    max_tries: 1,
    log_chunk_max_bytes: 262_144,
  });
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

/** A `sleep` no other test starts, to find the helper the task started. */
const uniqueSeconds = () => 100_000 + Math.floor(Math.random() * 800_000);

/** The live processes running `sleep <seconds>` (zombies left out). */
function sleepers(seconds: number): string[] {
  return execFileSync('ps', ['-eo', 'pid=,stat=,args='], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.endsWith(`sleep ${seconds}`) && !/^\s*\d+\s+Z/.test(line));
}

/** The live processes running `sleep <seconds>`, killed so a failure leaves none behind. */
function killSurvivors(seconds: number): string[] {
  const survivors = sleepers(seconds);
  for (const line of survivors) {
    try {
      process.kill(Number(line.trim().split(/\s+/)[0]), 'SIGKILL');
    } catch {}
  }
  return survivors;
}

describe('processes a task started', () => {
  it('do not outlive the runner killed when its try is stopped (a timeout, a clear)', async () => {
    const seconds = uniqueSeconds();
    const stop = new AbortController();
    const pending = runTask(started('spawns_then_spins', { seconds }), stop.signal);
    await sleep(3_000);
    expect(sleepers(seconds), 'the helper runs before the stop').toHaveLength(1);
    stop.abort(new Error('Task exceeded its execution timeout of 1s'));
    const { outcome } = await pending;
    expect(outcome).toEqual({ kind: 'error', message: 'Error: Task exceeded its execution timeout of 1s' });
    await sleep(500);
    expect(killSurvivors(seconds)).toEqual([]);
  }, 30_000);

  it('do not outlive a runner whose task called process.exit()', async () => {
    const seconds = uniqueSeconds();
    const { outcome } = await runTask(started('spawns_then_exits', { seconds }));
    expect(outcome.kind).toBe('error');
    await sleep(500);
    expect(killSurvivors(seconds)).toEqual([]);
  }, 30_000);

  it('do not outlive a server that exits while their try runs', async () => {
    const seconds = uniqueSeconds();
    // A server in miniature: starts a try that starts a helper and spins, then exits.
    const script = `
      import { RunnerProcess } from ${JSON.stringify(`${REPO_ROOT}src/worker/runner-process.ts`)};
      const runner = new RunnerProcess({ cwd: ${JSON.stringify(REPO_ROOT)} });
      const context = { dagId: 'runner_children', runId: 'r', taskId: 'spawns_then_spins', mapIndex: -1,
        tryNumber: 1, maxTries: 1, logicalDate: '2026-01-01T00:00:00.000Z', dataIntervalStart: null,
        dataIntervalEnd: null, params: {}, conf: { seconds: ${seconds} } };
      void runner.run(${JSON.stringify(`${DAGS_FOLDER}dags/runner-children.ts`)}, context, [], {
        onLog: () => undefined, pullXCom: async () => null, signal: new AbortController().signal,
      });
      setTimeout(async () => {
        const { execFileSync } = await import('node:child_process');
        const ps = execFileSync('ps', ['-eo', 'args='], { encoding: 'utf8' });
        if (ps.split('\\n').includes('sleep ${seconds}')) console.log('helper running');
        process.exit(0);
      }, 3000);
    `;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
      cwd: REPO_ROOT,
    });
    expect(stdout).toContain('helper running');
    await sleep(500);
    expect(killSurvivors(seconds)).toEqual([]);
  }, 30_000);
});
