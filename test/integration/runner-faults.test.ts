import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { RunnerProcess } from '#worker/runner-process.ts';
import { taskRunContextFixture } from '../unit/helpers/worker-fakes.ts';

/** A try's log holds the error that ended it, however the task ended its runner. */

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FAULTS = fileURLToPath(new URL('./dags/runner-faults.ts', import.meta.url));

function contextOf(taskId: string) {
  return taskRunContextFixture('runner_faults', taskId);
}

async function run(taskId: string) {
  const runner = new RunnerProcess({ cwd: REPO_ROOT });
  const logs: string[] = [];
  try {
    const outcome = await runner.run(FAULTS, contextOf(taskId), [], {
      onLog: (text) => logs.push(text),
      pullXCom: async () => null,
      signal: new AbortController().signal,
    });
    return { outcome, log: logs.join('') };
  } finally {
    runner.kill();
  }
}

describe('runner faults in the try log', () => {
  it('says in the log that the task called process.exit()', async () => {
    const { outcome, log } = await run('exits');
    const message =
      'The task runner process exited unexpectedly (exit code 1) (the task or a library it uses called process.exit())';
    expect(outcome).toEqual({ kind: 'error', message });
    expect(log).toContain('about to exit');
    expect(log).toContain(`{ERROR} Task failed: ${message}`);
  }, 20_000);

  it('shows a thrown plain object, not [object Object]', async () => {
    const { outcome, log } = await run('throws_object');
    const message =
      "Task 'throws_object' threw a value that is not an Error: { code: 42, reason: 'bad row' }";
    expect(outcome).toEqual({ kind: 'error', message });
    expect(log).toContain(`{ERROR} Task failed: ThrownValueError: ${message}`);
    expect(log).not.toContain('[object Object]');
  }, 20_000);
});
