import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { RunnerProcess } from '#worker/runner-process.ts';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('RunnerProcess', () => {
  it('fails a try whose runner process died while starting, instead of waiting forever', async () => {
    const runner = new RunnerProcess({ cwd: REPO_ROOT });
    runner.kill();

    const outcome = await runner.run(
      fileURLToPath(new URL('../../dags/example_etl.ts', import.meta.url)),
      {
        dagId: 'example_etl',
        runId: 'r',
        taskId: 'extract',
        mapIndex: -1,
        tryNumber: 1,
        maxTries: 2,
        logicalDate: '2026-01-01T00:00:00.000Z',
        dataIntervalStart: null,
        dataIntervalEnd: null,
        params: {},
        conf: {},
      },
      [],
      { onLog: () => undefined, pullXCom: async () => null, signal: new AbortController().signal },
    );

    expect(outcome).toEqual({
      kind: 'error',
      message: 'The task runner process exited unexpectedly (signal SIGKILL)',
    });
  }, 10_000);
});
