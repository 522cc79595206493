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

/**
 * What a deadline counts from (see `core/deadlines.ts`): the run's logical date, when it was
 * queued, a fixed time, or a multiple of the DAG's average run duration from when it was queued.
 */
export const DEADLINE_REFERENCES = ['logical_date', 'queued_at', 'fixed_time', 'average_duration'] as const;
export type DeadlineReference = (typeof DEADLINE_REFERENCES)[number];

/** `pending` until decided once: `met` (the run finished by then) or `missed` (its callbacks owed). */
export const DEADLINE_STATES = ['pending', 'met', 'missed'] as const;
export type DeadlineState = (typeof DEADLINE_STATES)[number];

/** One deadline of one run, fixed when the run is created. */
export interface RunDeadline {
  /** Position of the deadline in its DAG version's `deadlines`. */
  index: number;
  reference: DeadlineReference;
  /** When the run must have finished (ISO-8601). */
  at: string;
  state: DeadlineState;
}

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
  /** Callbacks owed by the run's finish and not yet turned into callback items (see `core/callbacks.ts`). */
  owedCallbacks?: string[];
  /**
   * The run's deadlines, in the order of its DAG version's (absent: none). Written with the run;
   * afterwards only a deadline's `state` changes, once, by a write conditional on it being pending.
   */
  deadlines?: RunDeadline[];
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
  /**
   * The scheduling pass that last queued the TI (its slot holders carry the same pass id). A
   * holder of that pass for a TI that is ready again (a resumed try handed back) is the one of the
   * ended phase, not a reservation in progress (see `slots.ts`).
   */
  queuedByPass?: string | null;
  /**
   * Deferral of the current try (absent on items written before deferral existed, and until the
   * try first defers). `deferralSeq` counts the try's deferrals; an event is applied only to the
   * deferral it was fired for. `nextMethod` and `nextKwargs` stay while the TI is deferred and
   * resuming, and `nextEvent` holds the payload of the event that resumed it, as opaque text.
   */
  deferralSeq?: number;
  nextMethod?: string | null;
  nextKwargs?: string | null;
  nextEvent?: string | null;
  /** When the event that resumed it was applied (event-to-resume latency is measured from here). */
  nextEventAt?: string | null;
  triggerId?: string | null;
  /** When the wait ends with a timeout: the deferral's own timeout or the execution timeout, whichever is first. */
  triggerTimeoutAt?: string | null;
  /** When the current try first started: its execution timeout counts from here across deferrals. */
  tryStartedAt?: string | null;
  /** Callbacks owed by its state changes and not yet turned into callback items (see `core/callbacks.ts`). */
  owedCallbacks?: string[];
  revision: number;
}

/** The try a TI runs when the scheduler queues it: the same try when it resumes from a deferral. */
export function nextTryNumberOf(ti: Pick<TaskInstance, 'state' | 'tryNumber' | 'nextMethod'>): number {
  return ti.state === 'scheduled' && typeof ti.nextMethod === 'string' && ti.tryNumber > 0
    ? ti.tryNumber
    : ti.tryNumber + 1;
}

/** Whether the TI's next start resumes a deferred try rather than starting a new one. */
export function isResuming(ti: Pick<TaskInstance, 'state' | 'tryNumber' | 'nextMethod'>): boolean {
  return nextTryNumberOf(ti) === ti.tryNumber;
}

/** Changes that forget a try's deferral: for a new try, or a clear. Empty for a TI that never deferred. */
export function forgetDeferral(ti: Pick<TaskInstance, 'deferralSeq'>) {
  if (ti.deferralSeq === undefined) return {};
  return {
    deferralSeq: 0,
    nextMethod: null,
    nextKwargs: null,
    nextEvent: null,
    nextEventAt: null,
    triggerId: null,
    triggerTimeoutAt: null,
    tryStartedAt: null,
  };
}

/** A trigger row: one deferral of one try, waiting for a triggerer to run it. */
export interface Trigger {
  triggerId: string;
  /** The registered trigger name. */
  name: string;
  /** Trigger kwargs, serde JSON text as the worker sent it. */
  kwargs: string;
  queue: string;
  ti: TaskInstanceKey;
  tryNumber: number;
  deferralSeq: number;
  createdAt: string;
  timeoutAt: string | null;
  /** The triggerer job holding it; null while unclaimed. */
  jobId: string | null;
  claimedAt: string | null;
  /** Times it was taken over from a job that died holding it (absent: never). */
  takeovers?: number;
  revision: number;
}

/** A triggerer's liveness job. */
export interface TriggererJob {
  jobId: string;
  hostname: string;
  capacity: number;
  queues: string[];
  state: 'running' | 'complete';
  startedAt: string;
  heartbeatAt: string;
  endedAt: string | null;
  /** Triggers it said it runs, at its last heartbeat. */
  running: number;
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
