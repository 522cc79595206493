import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UnrecognisedEventError } from '#aws/handler-errors.ts';
import { settingsSchema } from '#config/settings.ts';
import { decodeTaskInstanceId, type StartedTask } from '#contracts/execution-api.ts';
import type { TaskWorkload } from '#contracts/messages.ts';
import type { DagRun } from '#contracts/public-api.ts';
import type { ReceivedMessage } from '#queue/port.ts';
import type { CallbackContext } from '#sdk/callback-context.ts';
import { dag } from '#sdk/dag.ts';
import { systemClock } from '#worker/clock.ts';
import type { TaskExecutor } from '#worker/executor.ts';
import { makeHandler } from '../../functions/worker.ts';
import { type HandlerWorld, startHandlerWorld } from '../support/handler-world.ts';
import { type LambdaHandler, lambdaContext, quietObservability, sqsEvent } from '../support/lambda-events.ts';

/**
 * The worker handler's edges: which records of a batch it reports for redelivery, how it stops a
 * try before the function's timeout, which events it refuses, and the DAG modules it bundles.
 * The Execution API is a stub answering per task id; the engine's own worker tests cover the rest.
 */

const EXECUTION_API_URL = 'https://stub.lambda-url.us-east-1.on.aws';

type Behaviour = 'start' | 'refuse' | 'conflict';

interface Stub {
  fetch: typeof fetch;
  finished: { taskId: string; body: Record<string, unknown> }[];
  /** The path of each request the worker sent. */
  requests: string[];
}

/**
 * Starts `start_*` tasks, answers 403 to `refuse_*` and 409 to `conflict_*`, records the reports;
 * serves `POST /execution/batch` call by call, unless `batchRoute` is false (an API without it).
 */
function executionApiStub(options: { batchRoute?: boolean } = {}): Stub {
  const finished: Stub['finished'] = [];
  const requests: string[] = [];
  const stub = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const request = new Request(input, init);
    requests.push(new URL(request.url).pathname);
    if (new URL(request.url).pathname === '/execution/batch' && options.batchRoute !== false) {
      const { calls } = (await request.json()) as {
        calls: { method: string; path: string; body: unknown }[];
      };
      const results = await Promise.all(
        calls.map(async (call) => {
          const answer = await serve(
            new Request(`${EXECUTION_API_URL}${call.path}`, {
              method: call.method,
              body: JSON.stringify(call.body),
            }),
          );
          return { status: answer.status, body: await answer.json() };
        }),
      );
      return Response.json({ results });
    }
    return serve(request);
  };
  const serve = async (request: Request): Promise<Response> => {
    const [, id, action] = /\/execution\/task-instances\/([^/]+)\/(run|state|heartbeat)$/.exec(
      new URL(request.url).pathname,
    ) ?? [undefined, '', ''];
    const key = decodeTaskInstanceId(id ?? '');
    if (!key) return Response.json({ detail: 'unknown route', status: 404 }, { status: 404 });
    const behaviour = key.taskId.split('_')[0] as Behaviour;
    if (action === 'run') {
      if (behaviour === 'refuse') return Response.json({ Message: 'Forbidden' }, { status: 403 });
      if (behaviour === 'conflict')
        return Response.json({ detail: 'already started', status: 409 }, { status: 409 });
      return Response.json(startedTask(key.taskId));
    }
    if (action === 'state') {
      finished.push({ taskId: key.taskId, body: (await request.json()) as Record<string, unknown> });
      return Response.json({ ok: true });
    }
    return Response.json({ ok: true });
  };
  return { fetch: stub as typeof fetch, finished, requests };
}

function startedTask(taskId: string): StartedTask {
  return {
    dag_id: 'd',
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
    fileloc: 'd.ts',
    dag_version: 'v1',
    args: [],
    execution_timeout_ms: null,
    memory_limit_mb: null,
    xcom_max_bytes: 48 * 1024,
    log_chunk_max_bytes: 128 * 1024,
    log_max_chunks: 40,
  };
}

function workload(taskId: string): string {
  const body: TaskWorkload = {
    type: 'execute_task',
    ti: { dag_id: 'd', run_id: 'r', task_id: taskId, map_index: -1 },
    try_number: 1,
    token: 'task-token',
    fileloc: 'd.ts',
    dag_version: 'v1',
  };
  return JSON.stringify(body);
}

function event(bodies: string[]): SQSEvent {
  const messages: ReceivedMessage[] = bodies.map((body, index) => ({
    messageId: `m${index + 1}`,
    receiptHandle: `receipt-${index + 1}`,
    body,
    receiveCount: 1,
  }));
  return sqsEvent('tasks_default', messages);
}

const succeeding: TaskExecutor = { run: async () => ({ kind: 'success', xcom: '42' }) };

function worker(stub: Stub, executor: TaskExecutor = succeeding) {
  return makeHandler({
    ...quietObservability(),
    settings: settingsSchema.parse({}),
    clock: systemClock,
    executionApiUrl: EXECUTION_API_URL,
    executionFetch: stub.fetch,
    executor,
  }) as unknown as LambdaHandler<unknown, SQSBatchResponse>;
}

describe('the worker handler', () => {
  it('reports a malformed record and a refused start for redelivery, and not a run try or a duplicate', async () => {
    const stub = executionApiStub();
    const response = await worker(stub)(
      event(['{"type":"execute_task"}', workload('refuse_a'), workload('start_b'), workload('conflict_c')]),
      lambdaContext('updraft-worker'),
    );
    expect(response.batchItemFailures.map((failure) => failure.itemIdentifier).sort()).toEqual(['m1', 'm2']);
    expect(stub.finished).toEqual([
      { taskId: 'start_b', body: expect.objectContaining({ state: 'success', xcom: '42' }) },
    ]);
  });

  it('answers an empty failure list when every record is done', async () => {
    const stub = executionApiStub();
    const response = await worker(stub)(
      event([workload('start_a'), workload('start_b')]),
      lambdaContext('w'),
    );
    expect(response).toEqual({ batchItemFailures: [] });
    expect(stub.finished.map((report) => report.taskId).sort()).toEqual(['start_a', 'start_b']);
  });

  it("runs a batch's records side by side: each try starts before any other ends", async () => {
    const stub = executionApiStub();
    const taskIds = Array.from({ length: 10 }, (_, index) => `start_${index}`);
    // Each try ends only once all ten have started: one at a time, the first would never end.
    let started = 0;
    let allStarted: () => void = () => undefined;
    const barrier = new Promise<void>((resolve) => {
      allStarted = resolve;
    });
    const rendezvous: TaskExecutor = {
      run: async () => {
        started += 1;
        if (started === taskIds.length) allStarted();
        const outcome = await Promise.race([
          barrier.then(() => 'met' as const),
          new Promise<'alone'>((resolve) => setTimeout(() => resolve('alone'), 2_000).unref()),
        ]);
        return outcome === 'met'
          ? { kind: 'success', xcom: '1' }
          : { kind: 'error', message: 'the batch ran one record at a time' };
      },
    };
    const response = await worker(stub, rendezvous)(event(taskIds.map(workload)), lambdaContext('w'));
    expect(response).toEqual({ batchItemFailures: [] });
    expect(stub.finished.map((report) => report.body.state)).toEqual(taskIds.map(() => 'success'));
  });

  it("sends a batch's starts in one Execution API request and its reports, ending together, in another", async () => {
    const stub = executionApiStub();
    const taskIds = Array.from({ length: 10 }, (_, index) => `start_${index}`);
    const response = await worker(stub)(event(taskIds.map(workload)), lambdaContext('w'));
    expect(response).toEqual({ batchItemFailures: [] });
    expect(stub.requests).toEqual(['/execution/batch', '/execution/batch']);
    expect(stub.finished.map((report) => report.taskId).sort()).toEqual([...taskIds].sort());
  });

  it('sends each call alone to an Execution API without the batch route, and to one with batches off', async () => {
    const withoutRoute = executionApiStub({ batchRoute: false });
    const taskIds = ['start_a', 'start_b', 'start_c'];
    const response = await worker(withoutRoute)(event(taskIds.map(workload)), lambdaContext('w'));
    expect(response).toEqual({ batchItemFailures: [] });
    expect(withoutRoute.requests.filter((path) => path === '/execution/batch')).toEqual(['/execution/batch']);
    expect(withoutRoute.requests.filter((path) => path.endsWith('/run'))).toHaveLength(3);
    expect(withoutRoute.finished).toHaveLength(3);

    const single = executionApiStub();
    const off = makeHandler({
      ...quietObservability(),
      settings: settingsSchema.parse({ executionBatchMaxCalls: 1 }),
      clock: systemClock,
      executionApiUrl: EXECUTION_API_URL,
      executionFetch: single.fetch,
      executor: succeeding,
    }) as unknown as LambdaHandler<unknown, SQSBatchResponse>;
    await off(event(taskIds.map(workload)), lambdaContext('w'));
    expect(single.requests.filter((path) => path === '/execution/batch')).toEqual([]);
    expect(single.finished).toHaveLength(3);
  });

  it('reports every record when none is done, rather than failing the invocation', async () => {
    const stub = executionApiStub();
    const response = await worker(stub)(event([workload('refuse_a'), 'not json']), lambdaContext('w'));
    expect(response.batchItemFailures.map((failure) => failure.itemIdentifier).sort()).toEqual(['m1', 'm2']);
  });

  it('fails a try still running before the function times out, retryable, saying why in its log, and counts its record as done', async () => {
    const stub = executionApiStub();
    const waitsForStop: TaskExecutor = {
      run: (_started, _args, hooks) =>
        new Promise((resolve) => {
          hooks.signal.addEventListener('abort', () => resolve({ kind: 'error', message: 'stopped' }));
        }),
    };
    const startedAt = Date.now();
    // 900 ms left: the stop comes a third of that before the end.
    const response = await worker(stub, waitsForStop)(event([workload('start_a')]), lambdaContext('w', 900));
    expect(Date.now() - startedAt).toBeLessThan(900);
    expect(response.batchItemFailures).toEqual([]);
    // About 600 ms of the 900 ms: what is left when the handler starts, less the margin.
    const reason =
      /The task outlived the worker function's time limit of 0\.\d s \(its timeout minus the hand-back margin of 0\.3 s for the report\)/;
    expect(stub.finished).toEqual([
      {
        taskId: 'start_a',
        body: expect.objectContaining({
          state: 'failed',
          retryable: true,
          error_message: expect.stringMatching(reason),
          log: expect.objectContaining({
            text: expect.stringMatching(new RegExp(`\\{ERROR\\} ${reason.source}`)),
          }),
        }),
      },
    ]);
  });

  it('refuses an event that is not an SQS batch', async () => {
    const stub = executionApiStub();
    await expect(
      worker(stub)({ source: 'aws.events', 'detail-type': 'Scheduled Event' }, lambdaContext('w')),
    ).rejects.toThrow(UnrecognisedEventError);
  });

  it('runs a bundled DAG file by its fileloc and refuses files that are not bundled', async () => {
    const stub = executionApiStub();
    const started = startedTask('start_extract');
    const fetchStarting = (async (input: string | URL | Request, init?: RequestInit) => {
      const request = new Request(input, init);
      const run = /\/task-instances\/([^/]+)\/run$/.exec(new URL(request.url).pathname);
      if (run?.[1]) {
        const outside = decodeTaskInstanceId(run[1])?.taskId === 'start_outside';
        const fileloc = outside ? '../package.ts' : 'example_etl.ts';
        return Response.json({ ...started, dag_id: 'example_etl', task_id: 'extract', fileloc });
      }
      return stub.fetch(request);
    }) as typeof fetch;
    const handler = makeHandler({
      ...quietObservability(),
      // Each start alone, so fetchStarting sees it.
      settings: settingsSchema.parse({ executionBatchMaxCalls: 1 }),
      executionApiUrl: EXECUTION_API_URL,
      executionFetch: fetchStarting,
    }) as unknown as LambdaHandler<unknown, SQSBatchResponse>;
    await handler(event([workload('start_inside'), workload('start_outside')]), lambdaContext('w'));
    const byTask = Object.fromEntries(stub.finished.map((report) => [report.taskId, report.body]));
    expect(byTask.start_inside).toMatchObject({ state: 'success', xcom: '[1,2,3,4]' });
    expect(byTask.start_outside).toMatchObject({ state: 'failed', retryable: true });
    expect(String(byTask.start_outside?.error_message)).toContain('is not bundled');
  });
});

describe('a task that outlives every worker invocation', () => {
  /** Never ends by itself; stops when its signal aborts (as a well-behaved long task does). */
  const outlivesWorker = dag(
    {
      id: 'outlives_worker',
      schedule: null,
      startDate: '2026-01-01T00:00:00Z',
      catchup: false,
      defaultArgs: { retries: 0 },
    },
    (d) => {
      d.task('long', async (ctx) => {
        await new Promise<void>((resolve) => {
          if (ctx.signal.aborted) resolve();
          ctx.signal.addEventListener('abort', () => resolve(), { once: true });
        });
        return null;
      });
    },
  );
  let world: HandlerWorld;
  beforeAll(async () => {
    world = await startHandlerWorld(settingsSchema.parse({}), [outlivesWorker]);
  }, 60_000);
  afterAll(async () => {
    await world?.close();
  });

  it('does not run forever on free retries: with retries 0 it runs once, then fails, saying why', async () => {
    const run = await world.api<DagRun>('POST', '/api/v2/dags/outlives_worker/dagRuns', {});
    expect(run.status).toBe(201);
    // Each invocation has 1.5 s: the worker stops the try 0.5 s before its deadline, as a deployed
    // worker does 20 s before its 900 s timeout for a task that needs longer.
    for (let invocation = 0; invocation < 4; invocation += 1) {
      await world.drainScheduler();
      const workload = await world.nextWorkload();
      if (!workload) break;
      await world.invokeWorker(workload, 1_500);
    }
    await world.drainScheduler();
    const ti = await world.taskInstance('outlives_worker', run.body.dag_run_id, 'long');
    expect(world.starts, `starts; the TI now: ${ti.state} try ${ti.try_number} of ${ti.max_tries}`).toEqual([
      'long#1',
    ]);
    expect(ti.state).toBe('failed');
    const log = await world.logs.read(
      { dagId: 'outlives_worker', runId: run.body.dag_run_id, taskId: 'long', mapIndex: -1 },
      1,
    );
    expect(log).toMatch(/\{ERROR\} The task outlived the worker function's time limit of [\d.]+ s/);
  }, 60_000);
});

describe('a callback that outlives a worker invocation', () => {
  let calls = 0;
  /** Its first call waits for its signal (as a long callback that respects it does); later ones return. */
  function waitsOnFirstCall(ctx: CallbackContext): Promise<void> {
    calls += 1;
    if (calls > 1) return Promise.resolve();
    return new Promise<void>((resolve) => {
      if (ctx.signal.aborted) resolve();
      ctx.signal.addEventListener('abort', () => resolve(), { once: true });
    });
  }
  const alerts = dag(
    { id: 'alert_outlives_worker', schedule: null, startDate: '2026-01-01T00:00:00Z', catchup: false },
    (d) => {
      d.task({ id: 'fails', retries: 0, onFailure: waitsOnFirstCall }, () => {
        throw new Error('fails at once');
      });
    },
  );
  let world: HandlerWorld;
  beforeAll(async () => {
    world = await startHandlerWorld(settingsSchema.parse({}), [alerts]);
  }, 60_000);
  afterAll(async () => {
    await world?.close();
  });

  it('is handed back at the time limit, not counted, and its next delivery runs the same attempt', async () => {
    const run = await world.api<DagRun>('POST', '/api/v2/dags/alert_outlives_worker/dagRuns', {});
    expect(run.status).toBe(201);
    const callbacksOf = async () =>
      (
        await world.api<{ callbacks: { state: string; attempt: number }[] }>(
          'GET',
          `/api/v2/dags/alert_outlives_worker/dagRuns/${run.body.dag_run_id}/callbacks`,
        )
      ).body.callbacks;
    await world.drainScheduler();
    const task = await world.nextWorkload();
    expect(task?.queue).toBe('tasks_default');
    await world.invokeWorker(task as NonNullable<typeof task>, 10_000);

    const first = await world.nextWorkload();
    expect(first?.queue).toBe('callbacks');
    // 1.5 s for the invocation: the attempt is stopped 0.5 s before its end and handed back.
    const startedAt = Date.now();
    await world.invokeWorker(first as NonNullable<typeof first>, 1_500);
    expect(Date.now() - startedAt).toBeLessThan(1_500);
    expect(await callbacksOf()).toEqual([expect.objectContaining({ state: 'queued', attempt: 1 })]);

    const again = await world.nextWorkload();
    expect(again?.queue).toBe('callbacks');
    await world.invokeWorker(again as NonNullable<typeof again>, 10_000);
    expect(calls).toBe(2);
    expect(await callbacksOf()).toEqual([expect.objectContaining({ state: 'success', attempt: 1 })]);
  }, 60_000);
});
