import { describe, expect, it } from 'vitest';
import { InProcessTaskExecutor } from '#aws/lambda-executor.ts';
import type { StartedTask } from '#contracts/execution-api.ts';
import { dag, skip } from '#sdk/index.ts';
import type { TaskHooks } from '#worker/executor.ts';

/** The Lambda worker's executor: a try's code in this process, from the bundled DAG modules. */

let release: () => void = () => undefined;
const waiting = new Promise<void>((resolve) => {
  release = resolve;
});

const tasks = dag({ id: 'in_process', startDate: '2026-01-01T00:00:00Z' }, (d) => {
  const source = d.task('source', async (ctx) => {
    console.log('printed by the task', { try: ctx.tryNumber });
    ctx.log.info('logged by the task', { n: 1 });
    return { rows: [1, 2] };
  });
  d.task('pulls', async (ctx) => ctx.xcomPull('source')).after(source);
  d.task('skips', async () => skip('nothing to do'));
  d.task('throws', async () => {
    throw new Error('boom');
  });
  d.task('ignores_stop', async () => new Promise(() => undefined));
  d.task(
    'honours_stop',
    async (ctx) =>
      new Promise<null>((resolve) =>
        ctx.signal.addEventListener('abort', () => resolve(null), { once: true }),
      ),
  );
  d.task('waits', async () => {
    await waiting;
    console.log('printed by the task after its wait');
  });
});

const modules: Record<string, Record<string, unknown>> = { 'in_process.ts': { default: tasks } };

function executor(): InProcessTaskExecutor {
  return new InProcessTaskExecutor({
    loadModule: async (fileloc) => {
      const module = modules[fileloc];
      if (!module) throw new Error(`no module ${fileloc}`);
      return module;
    },
  });
}

function started(taskId: string, overrides: Partial<StartedTask> = {}): StartedTask {
  return {
    dag_id: 'in_process',
    dag_run_id: 'r1',
    task_id: taskId,
    map_index: -1,
    try_number: 1,
    max_tries: 1,
    logical_date: '2026-01-01T00:00:00.000Z',
    data_interval_start: null,
    data_interval_end: null,
    conf: {},
    params: {},
    fileloc: 'in_process.ts',
    dag_version: 'v1',
    args: [],
    execution_timeout_ms: null,
    memory_limit_mb: null,
    xcom_max_bytes: 1024,
    log_chunk_max_bytes: 1024,
    log_max_chunks: 4,
    ...overrides,
  };
}

function hooks(signal = new AbortController().signal): TaskHooks & { log: string[] } {
  const log: string[] = [];
  return {
    log,
    onLog: (text) => log.push(text),
    pullXCom: async (taskId, key) => ({ from: taskId, key }),
    signal,
  };
}

describe('InProcessTaskExecutor', () => {
  it('runs the task and returns its value as the XCom, with its console output and log lines in the try log', async () => {
    const h = hooks();
    expect(await executor().run(started('source'), [], h)).toEqual({
      kind: 'success',
      xcom: '{"rows":[1,2]}',
      followTaskIds: undefined,
    });
    const log = h.log.join('');
    expect(log).toContain('printed by the task { try: 1 }');
    expect(log).toMatch(/\{INFO\} logged by the task \{"n":1\}/);
  });

  it('pulls XComs through the worker', async () => {
    expect(await executor().run(started('pulls'), [], hooks())).toMatchObject({
      kind: 'success',
      xcom: '{"from":"source","key":"return_value"}',
    });
  });

  it('reports a skip, and a thrown error with its stack in the log', async () => {
    expect(await executor().run(started('skips'), [], hooks())).toEqual({
      kind: 'skipped',
      reason: 'nothing to do',
    });
    const h = hooks();
    expect(await executor().run(started('throws'), [], h)).toEqual({ kind: 'error', message: 'boom' });
    expect(h.log.join('')).toMatch(/\{ERROR\} Task failed: Error: boom\n\s+at /);
  });

  it('gives up on a task that ignores its stop, at once, and says in the try log that its code goes on running', async () => {
    const stop = new AbortController();
    const h = hooks(stop.signal);
    const outcome = executor().run(started('ignores_stop'), [], h);
    stop.abort('Task exceeded its execution timeout of 1s');
    expect(await outcome).toEqual({ kind: 'error', message: 'Task exceeded its execution timeout of 1s' });
    expect(h.log.join('')).toMatch(
      /\{WARNING\} The task did not return when it was stopped \(does it honour ctx\.signal\?\)/,
    );
  });

  it('writes no such warning for a task that returns when its signal aborts', async () => {
    const stop = new AbortController();
    const h = hooks(stop.signal);
    const outcome = executor().run(started('honours_stop'), [], h);
    await new Promise((resolve) => setTimeout(resolve, 10));
    stop.abort('The worker is out of time');
    expect(await outcome).toEqual({ kind: 'error', message: 'The worker is out of time' });
    expect(h.log.join('')).not.toContain('did not return');
  });

  it('fails the try, naming the file, when the DAG is not in the bundle', async () => {
    const missingFile = await executor().run(started('source', { fileloc: 'gone.ts' }), [], hooks());
    expect(missingFile).toMatchObject({
      kind: 'error',
      message: expect.stringContaining('Cannot load gone.ts'),
    });
    const missingDag = await executor().run(started('source', { dag_id: 'renamed' }), [], hooks());
    expect(missingDag).toMatchObject({
      kind: 'error',
      message: expect.stringContaining('DAG renamed is not defined'),
    });
  });

  it('keeps the console output of code outside the task out of its log, while the task waits', async () => {
    const h = hooks();
    const outcome = executor().run(started('waits'), [], h);
    await new Promise((resolve) => setTimeout(resolve, 10));
    console.log('printed outside any task');
    release();
    expect(await outcome).toMatchObject({ kind: 'success' });
    const log = h.log.join('');
    expect(log).toContain('printed by the task after its wait');
    expect(log).not.toContain('printed outside any task');
  });
});
