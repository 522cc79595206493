import type { DagRun, TaskInstance } from '#core/models.ts';
import { newTaskInstance } from '#core/models.ts';
import type { SerializedDag, SerializedTask } from '#core/serialized-dag.ts';
import type { TaskInstanceState } from '#core/states.ts';

export const DAG_ID = 'example_dag';
export const RUN_ID = 'manual__2025-01-01T00:00:00.000Z';
export const LOGICAL_DATE = '2025-01-01T00:00:00.000Z';

/** A serialized task with every field at its authoring default. */
export function task(taskId: string, overrides: Partial<SerializedTask> = {}): SerializedTask {
  return {
    taskId,
    operator: 'task',
    isBranch: false,
    upstream: [],
    args: [],
    retries: 0,
    retryDelayMs: 300_000,
    retryExponentialBackoff: false,
    maxRetryDelayMs: null,
    executionTimeoutMs: null,
    triggerRule: 'all_success',
    priorityWeight: 1,
    weightRule: 'downstream',
    queue: 'default',
    pool: 'default_pool',
    poolSlots: 1,
    doc: null,
    ...overrides,
  };
}

export function dag(tasks: SerializedTask[], overrides: Partial<SerializedDag> = {}): SerializedDag {
  return {
    formatVersion: 1,
    dagId: DAG_ID,
    description: null,
    fileloc: 'example_dag.ts',
    schedule: null,
    startDate: null,
    endDate: null,
    catchup: false,
    maxActiveRuns: 16,
    maxActiveTasks: 16,
    params: {},
    tags: [],
    tasks,
    ...overrides,
  };
}

export function dagRun(overrides: Partial<DagRun> = {}): DagRun {
  return {
    dagId: DAG_ID,
    runId: RUN_ID,
    runType: 'manual',
    state: 'running',
    logicalDate: LOGICAL_DATE,
    dataIntervalStart: null,
    dataIntervalEnd: null,
    conf: {},
    dagVersion: 'v1',
    queuedAt: LOGICAL_DATE,
    startDate: LOGICAL_DATE,
    endDate: null,
    clearCount: 0,
    revision: 1,
    ...overrides,
  };
}

/** A task instance of `DAG_ID`/`RUN_ID`, fresh (state none, try 0) unless overridden. */
export function taskInstance(taskId: string, overrides: Partial<TaskInstance> = {}): TaskInstance {
  const fresh = newTaskInstance(
    { dagId: DAG_ID, runId: RUN_ID, taskId, mapIndex: -1 },
    { operator: 'task', pool: 'default_pool', poolSlots: 1, priorityWeight: 1, queue: 'default', retries: 0 },
  );
  return { ...fresh, ...overrides };
}

/** One TI per task of `serializedDag`, in the given states (`none` for tasks not listed). */
export function taskInstancesOf(
  serializedDag: SerializedDag,
  states: Record<string, TaskInstanceState> = {},
): TaskInstance[] {
  return serializedDag.tasks.map((t) => taskInstance(t.taskId, { state: states[t.taskId] ?? 'none' }));
}
