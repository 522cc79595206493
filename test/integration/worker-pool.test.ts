import { resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeTaskInstanceId } from '#contracts/execution-api.ts';
import type { TaskWorkload } from '#contracts/messages.ts';
import { silentLogger } from '#engine/logger.ts';
import { MetricsRegistry } from '#metrics/registry.ts';
import { createInMemoryQueues, type InMemoryQueues } from '#queue/memory.ts';
import type { Queue } from '#queue/port.ts';
import { ExecutionClient } from '#worker/execution-client.ts';
import { WorkerPool } from '#worker/pool.ts';
import { CANCEL_GRACE_MS } from '#worker/runner-process.ts';

/**
 * The worker pool against real in-process queues and real task runner processes, with an
 * Execution API that records what the pool asks of it (the API itself is tested over HTTP).
 */

const DAGS_FOLDER = resolve('test');
const FILES: Record<string, string> = {
  sleepy: 'e2e/dags/sleepy.ts',
  cancellable: 'integration/dags/cancellable.ts',
};
/** Execution timeouts the fake API hands out, by task id. */
const TIMEOUTS: Record<string, number> = { stubborn: 300 };
/** How long the fake API takes to answer a start, by task id. */
const START_DELAYS: Record<string, number> = { spread20: 20, spread40: 40, spread60: 60 };

interface Call {
  method: string;
  action: string;
  taskId: string;
  body: Record<string, unknown>;
}

function fakeExecutionApi(calls: Call[]) {
  return async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(String(input));
    const [, , , tiId, action] = url.pathname.split('/');
    const key = decodeTaskInstanceId(tiId ?? '');
    const body = JSON.parse(String(init?.body ?? '{}')) as Record<string, unknown>;
    calls.push({ method: init?.method ?? 'GET', action: action ?? '', taskId: key?.taskId ?? '', body });
    if (action === 'run') {
      await new Promise((resolve) => setTimeout(resolve, START_DELAYS[key?.taskId ?? ''] ?? 0));
      return Response.json({
        dag_id: key?.dagId,
        dag_run_id: 'r',
        task_id: key?.taskId,
        map_index: -1,
        try_number: 2,
        max_tries: 2,
        logical_date: '2026-01-01T00:00:00.000Z',
        data_interval_start: null,
        data_interval_end: null,
        conf: {},
        params: { firstTrySleepMs: 1 },
        fileloc: FILES[key?.dagId ?? ''],
        dag_version: 'v',
        args: [],
        execution_timeout_ms: TIMEOUTS[key?.taskId ?? ''] ?? null,
        xcom_max_bytes: 49_152,
        log_chunk_max_bytes: 262_144,
        log_max_chunks: 20,
      });
    }
    return Response.json({ ok: true });
  };
}

function workload(taskId: string, dagId = 'sleepy'): string {
  const body: TaskWorkload = {
    type: 'execute_task',
    ti: { dag_id: dagId, run_id: 'r', task_id: taskId, map_index: -1 },
    try_number: 2,
    token: 'token',
    fileloc: FILES[dagId] ?? '',
    dag_version: 'v',
  };
  return JSON.stringify(body);
}

const SHUTDOWN_GRACE_MS = 1_000;
const logOf = (call: Call | undefined) => String((call?.body.log as { text?: string } | undefined)?.text);

let pool: WorkerPool | undefined;
let queues: InMemoryQueues | undefined;

afterEach(async () => {
  await pool?.stop();
  queues?.close();
});

function startPool(
  calls: Call[],
  slots: number,
  /** Stands in for the high-priority queue (a failing one). */
  high?: (queue: Queue) => Queue,
): { pool: WorkerPool; queues: InMemoryQueues } {
  queues = createInMemoryQueues({
    queueVisibilityTimeoutSeconds: 30,
    queueMaxReceives: 5,
    queueMaxMessageBytes: 262_144,
  });
  pool = new WorkerPool({
    queues: [
      high ? high(queues.queues.tasks_high) : queues.queues.tasks_high,
      queues.queues.tasks_default,
      queues.queues.tasks_low,
    ],
    client: new ExecutionClient('http://api.invalid', { fetch: fakeExecutionApi(calls) }),
    slots,
    dagsFolder: DAGS_FOLDER,
    heartbeatIntervalMs: 60_000,
    heartbeatTimeoutMs: 300_000,
    shutdownGraceMs: SHUTDOWN_GRACE_MS,
    metrics: new MetricsRegistry(),
    log: silentLogger,
  });
  return { pool, queues };
}

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('WorkerPool', () => {
  it('runs a workload: starts it, runs the task in a runner process, reports success with its XCom', async () => {
    const calls: Call[] = [];
    const { pool: started, queues: q } = startPool(calls, 2);
    started.start();
    await q.queues.tasks_default.send([{ body: workload('nap') }]);

    await waitFor(() => calls.some((call) => call.action === 'state'));
    expect(calls.map((call) => `${call.method} ${call.action}`)).toEqual(['PATCH run', 'PATCH state']);
    expect(calls[1]?.body).toMatchObject({ state: 'success', xcom: '"rested"' });
    expect(logOf(calls[1])).toContain('woke up');
    expect((await q.queues.tasks_default.stats()).inFlight).toBe(0);
  });

  it('takes the high-priority queue first when a single slot frees', async () => {
    const calls: Call[] = [];
    const { pool: started, queues: q } = startPool(calls, 1);
    await q.queues.tasks_low.send([{ body: workload('low_task') }]);
    await q.queues.tasks_default.send([{ body: workload('default_task') }]);
    await q.queues.tasks_high.send([{ body: workload('high_task') }]);
    started.start();

    await waitFor(() => calls.filter((call) => call.action === 'run').length === 3);
    expect(calls.filter((call) => call.action === 'run').map((call) => call.taskId)).toEqual([
      'high_task',
      'default_task',
      'low_task',
    ]);
  });

  it('keeps one long-poll per idle queue instead of one per workload', async () => {
    const calls: Call[] = [];
    const { pool: started, queues: q } = startPool(calls, 4);
    started.start();
    await new Promise((resolve) => setTimeout(resolve, 200));
    const receivesOf = () =>
      [q.queues.tasks_high, q.queues.tasks_low].map((queue) => queue.operations().receive);
    const idleBefore = receivesOf();
    for (const taskId of ['one', 'two', 'three']) {
      await q.queues.tasks_default.send([{ body: workload(taskId) }]);
      await waitFor(
        () =>
          calls.filter((call) => call.action === 'state').length ===
          ['one', 'two', 'three'].indexOf(taskId) + 1,
      );
    }
    // Three workloads on the default queue; the high and low queues were not asked again.
    expect(receivesOf()).toEqual(idleBefore);
  });

  it('deletes the messages of workloads received together in one call, however their starts spread', async () => {
    const calls: Call[] = [];
    const { pool: started, queues: q } = startPool(calls, 4);
    const tasks = ['spread0', 'spread20', 'spread40', 'spread60'];
    await q.queues.tasks_default.send(tasks.map((taskId) => ({ body: workload(taskId) })));
    started.start();
    await waitFor(() => calls.filter((call) => call.action === 'state').length === tasks.length);
    await waitFor(async () => (await q.queues.tasks_default.stats()).inFlight === 0);
    // Four starts over 60 ms, one delete call.
    expect(q.queues.tasks_default.operations().delete).toBe(1);
  });

  it('keeps working, without spinning, while a queue fails every receive', async () => {
    const calls: Call[] = [];
    let failedReceives = 0;
    const failing = (queue: Queue): Queue =>
      new Proxy(queue, {
        get(target, property) {
          if (property === 'receive') {
            return async () => {
              failedReceives += 1;
              throw new Error('receive refused');
            };
          }
          const value = Reflect.get(target, property, target);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
    const { pool: started, queues: q } = startPool(calls, 2, failing);
    started.start();
    await q.queues.tasks_default.send([{ body: workload('one') }]);
    await waitFor(() => calls.filter((call) => call.action === 'state').length === 1);
    // Idle: the failing queue's long-poll pauses before asking again.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const idle = failedReceives;
    expect(idle).toBeGreaterThanOrEqual(2);
    expect(idle).toBeLessThanOrEqual(6);
    // Busy: rounds of full receives on the default queue; the failing queue waits out its pause
    // instead of being probed (and warned about) on every round.
    const busy = Array.from({ length: 20 }, (_, index) => `busy${index}`);
    await q.queues.tasks_default.send(busy.map((taskId) => ({ body: workload(taskId) })));
    await waitFor(() => calls.filter((call) => call.action === 'state').length === 1 + busy.length);
    expect(failedReceives - idle).toBeLessThanOrEqual(6);
  });

  it('stops a task at its execution timeout and reports a retryable failure', async () => {
    const calls: Call[] = [];
    const { pool: started, queues: q } = startPool(calls, 1);
    started.start();
    await q.queues.tasks_default.send([{ body: workload('stubborn', 'cancellable') }]);

    await waitFor(() => calls.some((call) => call.action === 'state'));
    const report = calls.find((call) => call.action === 'state');
    expect(report?.body).toMatchObject({
      state: 'failed',
      retryable: true,
      error_message: 'Task exceeded its execution timeout of 0.3s',
    });
    expect(logOf(report)).toContain('Task exceeded its execution timeout of 0.3s');
  });

  it('drops a malformed workload and keeps working', async () => {
    const calls: Call[] = [];
    const { pool: started, queues: q } = startPool(calls, 1);
    started.start();
    await q.queues.tasks_default.send([{ body: '{"type":"nonsense"}' }, { body: workload('nap') }]);

    await waitFor(() => calls.some((call) => call.action === 'state'));
    expect(calls.map((call) => call.taskId)).toEqual(['nap', 'nap']);
    expect(await q.queues.tasks_default.stats()).toMatchObject({ visible: 0, inFlight: 0 });
  });

  it('stops while busy without starting new workloads, within the grace bound', async () => {
    const calls: Call[] = [];
    const { pool: started, queues: q } = startPool(calls, 1);
    started.start();
    await q.queues.tasks_default.send([{ body: workload('wait', 'cancellable') }]);
    await waitFor(() => calls.some((call) => call.action === 'run'));
    await q.queues.tasks_default.send([{ body: workload('quick', 'cancellable') }]);

    const begin = Date.now();
    await started.stop();

    expect(Date.now() - begin).toBeLessThan(SHUTDOWN_GRACE_MS + CANCEL_GRACE_MS + 1_000);
    expect(calls.filter((call) => call.action === 'run').map((call) => call.taskId)).toEqual(['wait']);
    expect(calls.find((call) => call.action === 'state')?.body.state).toBe('handed_back');
    expect(await q.queues.tasks_default.stats()).toMatchObject({ visible: 1, inFlight: 0 });
  });
});
