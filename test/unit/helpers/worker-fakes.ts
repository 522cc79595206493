import type { StartedTask } from '#contracts/execution-api.ts';
import type { CallbackWorkload, TaskWorkload } from '#contracts/messages.ts';
import { type Logger, silentLogger } from '#engine/logger.ts';
import { MetricsRegistry } from '#metrics/registry.ts';
import type { Queue } from '#queue/port.ts';
import type { WorkerClock } from '#worker/clock.ts';
import { ExecutionClient } from '#worker/execution-client.ts';
import type { TaskExecutor } from '#worker/executor.ts';
import { WorkerPool, type WorkerPoolOptions } from '#worker/pool.ts';
import type { TaskRunContext } from '#worker/protocol.ts';

/**
 * A clock whose time moves only when everything else is waiting on it: once the pending
 * promise work has settled, it jumps to the earliest sleep's end. Hours of heartbeats and
 * backoffs run in milliseconds, in the same order every time.
 */
export class FakeClock implements WorkerClock {
  #now: number;
  #seq = 0;
  #timers: { at: number; seq: number; wake: () => void }[] = [];
  #pumping = false;

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const timer = { at: this.#now + Math.max(0, ms), seq: this.#seq++, wake: () => undefined };
      const onAbort = () => {
        this.#timers = this.#timers.filter((other) => other !== timer);
        resolve();
      };
      timer.wake = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#timers.push(timer);
      void this.#pump();
    });
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      for (;;) {
        for (let turn = 0; turn < 5; turn += 1) await new Promise((resolve) => setImmediate(resolve));
        if (this.#timers.length === 0) return;
        this.#timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
        const next = this.#timers.shift()!;
        this.#now = Math.max(this.#now, next.at);
        next.wake();
      }
    } finally {
      this.#pumping = false;
    }
  }
}

export interface LogLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  message: string;
  fields: Record<string, unknown>;
}

export function recordingLogger(lines: LogLine[] = [], base: Record<string, unknown> = {}): Logger {
  const at =
    (level: LogLine['level']) =>
    (message: string, fields: Record<string, unknown> = {}) =>
      lines.push({ level, message, fields: { ...base, ...fields } });
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (fields) => recordingLogger(lines, { ...base, ...fields }),
  };
}

/** What the Execution API's start answers, for tests: a no-op task `d/r/t`, try 1 of 2; fields overridable. */
export function startedTaskFixture(overrides: Partial<StartedTask> = {}): StartedTask {
  return {
    dag_id: 'd',
    dag_run_id: 'r',
    task_id: 't',
    map_index: -1,
    try_number: 1,
    max_tries: 2,
    logical_date: '2026-01-01T00:00:00.000Z',
    data_interval_start: null,
    data_interval_end: null,
    conf: {},
    params: {},
    fileloc: 'd.ts',
    dag_version: 'v',
    args: [],
    execution_timeout_ms: null,
    xcom_max_bytes: 49_152,
    log_chunk_max_bytes: 1024,
    log_max_chunks: 20,
    ...overrides,
  };
}

/** What a task runner is given to run one try of `dagId`'s `taskId` (try 1 of 1), for tests. */
export function taskRunContextFixture(dagId: string, taskId: string): TaskRunContext {
  return {
    dagId,
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

/** A task workload for try 1 of task `taskId` of run d/r. */
export function taskWorkloadFixture(taskId = 't'): TaskWorkload {
  return {
    type: 'execute_task',
    ti: { dag_id: 'd', run_id: 'r', task_id: taskId, map_index: -1 },
    try_number: 1,
    token: 'token',
    fileloc: 'd.ts',
    dag_version: 'v',
  };
}

/** A callback workload for attempt 1 of callback `id` of run d/r. */
export function callbackWorkloadFixture(id: string): CallbackWorkload {
  return {
    type: 'run_callback',
    dag_id: 'd',
    run_id: 'r',
    callback_id: id,
    attempt: 1,
    token: 't',
    fileloc: 'd.ts',
    dag_version: 'v',
  };
}

/**
 * A worker pool on one queue, running tries with `executor` and reaching the Execution API
 * through `fetch` (at http://api.invalid), with a short grace and no heartbeat in a test's time.
 */
export function fakeApiWorkerPool(options: {
  queue: Queue;
  fetch: typeof fetch;
  executor: TaskExecutor;
  slots: number;
  onWorkloadEnd?: WorkerPoolOptions['onWorkloadEnd'];
}): WorkerPool {
  return new WorkerPool({
    queues: [options.queue],
    client: new ExecutionClient('http://api.invalid', { fetch: options.fetch }),
    slots: options.slots,
    dagsFolder: '.',
    heartbeatIntervalMs: 5_000,
    heartbeatTimeoutMs: 60_000,
    shutdownGraceMs: 200,
    metrics: new MetricsRegistry(),
    log: silentLogger,
    executor: options.executor,
    ...(options.onWorkloadEnd ? { onWorkloadEnd: options.onWorkloadEnd } : {}),
  });
}
