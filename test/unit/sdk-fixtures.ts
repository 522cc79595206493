import type { TaskLogger, WorkerTaskContext } from '#sdk/context.ts';

export interface RecordedLog {
  level: keyof TaskLogger;
  message: string;
  fields?: Record<string, unknown>;
}

/** A worker's context for running tasks in tests (executeTask adds defer); log lines land in `logs`. */
export function testContext(
  overrides: Partial<WorkerTaskContext> = {},
): WorkerTaskContext & { logs: RecordedLog[] } {
  const logs: RecordedLog[] = [];
  const record =
    (level: keyof TaskLogger) =>
    (message: string, fields?: Record<string, unknown>): void => {
      logs.push(fields === undefined ? { level, message } : { level, message, fields });
    };
  return {
    dagId: 'test_dag',
    runId: 'manual__2026-01-01T00:00:00+00:00',
    taskId: 'task',
    mapIndex: -1,
    tryNumber: 1,
    maxTries: 1,
    logicalDate: '2026-01-01T00:00:00.000Z',
    dataIntervalStart: null,
    dataIntervalEnd: null,
    params: {},
    conf: {},
    log: { debug: record('debug'), info: record('info'), warn: record('warn'), error: record('error') },
    xcomPull: async () => null,
    signal: new AbortController().signal,
    logs,
    ...overrides,
  };
}
