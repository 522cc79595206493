import { mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { StartedTask } from '#contracts/execution-api.ts';
import { loadDagFile } from '#sdk/loader.ts';
import { versionDag } from '#sdk/serialize.ts';
import { ProcessTaskExecutor } from '#worker/executor.ts';
import { CANCEL_GRACE_MS, RunnerProcess } from '#worker/runner-process.ts';
import { startedTaskFixture, taskRunContextFixture } from '../unit/helpers/worker-fakes.ts';

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

  it("aborts the task's ctx.signal when the try is stopped, then ends the process", async () => {
    const runner = new RunnerProcess({ cwd: REPO_ROOT });
    const logs: string[] = [];
    const stop = new AbortController();
    // Stopped once the task is running, as an execution timeout would.
    const outcome = runner.run(CANCELLABLE, context('wait'), [], {
      onLog: (text) => {
        logs.push(text);
        if (text.includes('waiting')) stop.abort('Task exceeded its execution timeout of 1s');
      },
      pullXCom: async () => null,
      signal: stop.signal,
    });

    expect(await outcome).toEqual({ kind: 'error', message: 'Task exceeded its execution timeout of 1s' });
    expect(logs.join('')).toContain('cancelled: Error: Task exceeded its execution timeout of 1s');
    expect(runner.usable).toBe(false);
  }, 10_000);

  it('kills a task that ignores its signal once the cancel grace has passed', async () => {
    const runner = new RunnerProcess({ cwd: REPO_ROOT });
    const stop = new AbortController();
    const started = Date.now();
    const outcome = runner.run(CANCELLABLE, context('stubborn'), [], {
      onLog: () => undefined,
      pullXCom: async () => null,
      signal: stop.signal,
    });
    setTimeout(() => stop.abort('stopped'), 300);

    expect(await outcome).toEqual({ kind: 'error', message: 'stopped' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(300 + CANCEL_GRACE_MS - 50);
    expect(runner.usable).toBe(false);
  }, 10_000);
});

describe('RunnerProcess and DAG versions', () => {
  const run = async (versionHash: string) => {
    const runner = new RunnerProcess({ cwd: REPO_ROOT });
    const logs: string[] = [];
    const outcome = await runner.run(
      CANCELLABLE,
      context('quick'),
      [],
      { onLog: (text) => logs.push(text), pullXCom: async () => null, signal: new AbortController().signal },
      { fileloc: 'cancellable.ts', versionHash },
    );
    runner.kill();
    return { outcome, log: logs.join('') };
  };

  it("warns in the try's log when the DAG file no longer matches the version the run started with", async () => {
    const { outcome, log } = await run('0000000000000000');
    expect(outcome).toEqual({ kind: 'success', xcom: '"done"' });
    expect(log).toMatch(
      /cancellable\.ts changed since this run started \(run version 0000000000000000, file version [0-9a-f]{16}\)/,
    );
  });

  it('says nothing when the file is the version the run started with', async () => {
    const [dag] = await loadDagFile(CANCELLABLE);
    const { log } = await run(versionDag(dag!, 'cancellable.ts').versionHash);
    expect(log).not.toContain('changed since this run started');
  });
});

const CANCELLABLE = fileURLToPath(new URL('./dags/cancellable.ts', import.meta.url));

function context(taskId: string) {
  return taskRunContextFixture('cancellable', taskId);
}

describe('ProcessTaskExecutor and changed modules', () => {
  const SDK_URL = new URL('../../src/sdk/index.ts', import.meta.url).href;
  let folder: string | undefined;
  let executor: ProcessTaskExecutor | undefined;

  afterEach(async () => {
    executor?.close();
    spareRunners = 0;
    if (folder) await rm(folder, { recursive: true, force: true });
  });

  /** A DAGs folder outside the repository whose DAG imports a helper module beside it. */
  async function dagsFolder(greeting: string): Promise<{ helper: string }> {
    folder = await mkdtemp(join(tmpdir(), 'updraft-dags-'));
    const helper = join(folder, 'helper.ts');
    await writeFile(helper, `export const greeting = '${greeting}';\n`);
    await writeFile(
      join(folder, 'greet.ts'),
      [
        `import { dag } from '${SDK_URL}';`,
        `import { greeting } from './helper.ts';`,
        `export default dag({ id: 'greet', schedule: null }, (d) => {`,
        `  d.task('hello', async () => greeting);`,
        `  d.task('pid', async () => process.pid);`,
        `});`,
      ].join('\n'),
    );
    executor = new ProcessTaskExecutor({ dagsFolder: folder, cwd: REPO_ROOT, spareRunners });
    return { helper };
  }
  let spareRunners = 0;

  const run = (taskId: string, memoryLimitMb: number | null = null) =>
    executor!.run({ ...started(taskId), memory_limit_mb: memoryLimitMb }, [], {
      onLog: () => undefined,
      pullXCom: async () => null,
      signal: new AbortController().signal,
    });

  it('runs the next task with a helper module changed since the last one', async () => {
    const { helper } = await dagsFolder('one');
    expect(await run('hello')).toEqual({ kind: 'success', xcom: '"one"' });

    await writeFile(helper, "export const greeting = 'two';\n");
    const later = new Date(Date.now() + 5_000);
    await utimes(helper, later, later);

    expect(await run('hello')).toEqual({ kind: 'success', xcom: '"two"' });
  }, 20_000);

  it('retires the process whose modules changed and reuses one whose modules did not', async () => {
    const { helper } = await dagsFolder('one');
    const first = await run('pid');
    expect(await run('pid')).toEqual(first);

    const later = new Date(Date.now() + 5_000);
    await utimes(helper, later, later);

    expect(await run('pid')).not.toEqual(first);
  }, 20_000);

  // Runners serve one memory limit as they serve one bundle: two limits interleave like two DAGs.
  it.each([
    { spare: 1, reused: true },
    { spare: 0, reused: false },
  ])(
    'with $spare spare runner(s) beside one slot, tries of two kinds interleaved reuse their runner: $reused',
    async ({ spare, reused }) => {
      spareRunners = spare;
      await dagsFolder('one');
      executor!.warm(1);
      const first = await run('pid', 300);
      const other = await run('pid', 400);
      expect(other).not.toEqual(first);
      const again = await run('pid', 300);
      const otherAgain = await run('pid', 400);
      if (reused) expect([again, otherAgain]).toEqual([first, other]);
      else {
        expect(again).not.toEqual(first);
        expect(otherAgain).not.toEqual(other);
      }
    },
    30_000,
  );

  function started(taskId: string): StartedTask {
    return startedTaskFixture({
      dag_id: 'greet',
      task_id: taskId,
      fileloc: 'greet.ts',
      max_tries: 1,
      log_chunk_max_bytes: 262_144,
    });
  }
});
