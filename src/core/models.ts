import type { DagRunState, TaskInstanceState } from './states.ts';

/** Identity of a task instance: map index -1 when the task is not mapped. */
export interface TaskInstanceKey {
  dagId: string;
  runId: string;
  taskId: string;
  mapIndex: number;
}

export interface DagRunKey {
  dagId: string;
  runId: string;
}

export type RunType = 'manual' | 'scheduled';

export interface DagRun {
  dagId: string;
  runId: string;
  runType: RunType;
  state: DagRunState;
  /** ISO-8601 timestamps throughout: they sort as strings and survive JSON. */
  logicalDate: string;
  dataIntervalStart: string | null;
  dataIntervalEnd: string | null;
  conf: Record<string, unknown>;
  /** Version hash of the serialized DAG this run executes. */
  dagVersion: string;
  queuedAt: string;
  startDate: string | null;
  endDate: string | null;
  /**
   * Bumped when a clear begins (before it resets any TI) and again when it ends (0 at creation), so
   * a scheduler that decided to finish the run on an older read finds it changed and does not.
   */
  clearCount: number;
  /**
   * Clears begun and not ended (absent: none). While one is in progress, TIs are being reset and a
   * run's state summary cannot be trusted or rebuilt. A clear that died half way leaves it above 0.
   */
  clearsInProgress?: number;
  /** When the latest clear began: a clear still "in progress" long after it began has died. */
  clearBegunAt?: string;
  /** Bumped by every write; lets readers tell a stale copy from a fresh one. */
  revision: number;
}

export interface TaskInstance extends TaskInstanceKey {
  state: TaskInstanceState;
  /** 0 before the first try; incremented when the scheduler queues a new try. */
  tryNumber: number;
  /** Total tries allowed: retries + 1, raised by a clear so a cleared task can retry again. */
  maxTries: number;
  operator: string;
  pool: string;
  poolSlots: number;
  priorityWeight: number;
  /** Priority class of the task queue the workload is sent to. */
  queue: string;
  queuedAt: string | null;
  startDate: string | null;
  endDate: string | null;
  heartbeatAt: string | null;
  /** When an `up_for_retry` TI becomes runnable again. */
  nextRetryAt: string | null;
  hostname: string | null;
  /** Identifies the worker process that runs the current try. */
  workerId: string | null;
  /** Names the start call of the current try: a repeat of it (a lost response) is answered again. */
  startId: string | null;
  durationMs: number | null;
  errorMessage: string | null;
  /** Set by a branch task: the direct downstream task ids it chose to follow. */
  followTaskIds: string[] | null;
  /** Id of the report that ended the current try; a repeat of the same report is answered as done. */
  reportId: string | null;
  /** Workloads sent for the current try (bounds re-sending a TI stuck in `queued`). */
  queuedSends: number;
  revision: number;
}

export function taskInstanceKeyOf(ti: TaskInstanceKey): TaskInstanceKey {
  return { dagId: ti.dagId, runId: ti.runId, taskId: ti.taskId, mapIndex: ti.mapIndex };
}

export function formatTaskInstanceKey(key: TaskInstanceKey): string {
  const base = `${key.dagId}/${key.runId}/${key.taskId}`;
  return key.mapIndex >= 0 ? `${base}[${key.mapIndex}]` : base;
}

export function sameTaskInstance(a: TaskInstanceKey, b: TaskInstanceKey): boolean {
  return a.dagId === b.dagId && a.runId === b.runId && a.taskId === b.taskId && a.mapIndex === b.mapIndex;
}

/** A fresh task instance row, as created with its run. */
export function newTaskInstance(
  key: TaskInstanceKey,
  task: {
    operator: string;
    pool: string;
    poolSlots: number;
    priorityWeight: number;
    queue: string;
    retries: number;
  },
): TaskInstance {
  return {
    ...taskInstanceKeyOf(key),
    state: 'none',
    tryNumber: 0,
    maxTries: task.retries + 1,
    operator: task.operator,
    pool: task.pool,
    poolSlots: task.poolSlots,
    priorityWeight: task.priorityWeight,
    queue: task.queue,
    queuedAt: null,
    startDate: null,
    endDate: null,
    heartbeatAt: null,
    nextRetryAt: null,
    hostname: null,
    workerId: null,
    startId: null,
    durationMs: null,
    errorMessage: null,
    followTaskIds: null,
    reportId: null,
    queuedSends: 0,
    revision: 0,
  };
}
