/**
 * Messages between the worker supervisor and a task runner child process (over Node's IPC
 * channel). The child runs user code only; everything that crosses the network stays in the
 * supervisor, so a task that blocks or crashes its process cannot take the supervisor with it.
 */

import type { Deferral, Resume } from '#contracts/triggers.ts';
import type { CallbackErrorType, CallbackKind } from '#core/callbacks.ts';
import type { DeadlineContext } from '#core/deadlines.ts';
import type { StartedCallback, StartedTask } from './execution-client.ts';
import type { LoadedModule } from './module-tracker.ts';

export interface TaskRunContext {
  dagId: string;
  runId: string;
  taskId: string;
  mapIndex: number;
  tryNumber: number;
  maxTries: number;
  logicalDate: string;
  dataIntervalStart: string | null;
  dataIntervalEnd: string | null;
  params: Record<string, unknown>;
  conf: Record<string, unknown>;
}

/** What a try's code is told about itself, from the Execution API's start answer. */
export function taskRunContextOf(started: StartedTask): TaskRunContext {
  return {
    dagId: started.dag_id,
    runId: started.dag_run_id,
    taskId: started.task_id,
    mapIndex: started.map_index,
    tryNumber: started.try_number,
    maxTries: started.max_tries,
    logicalDate: started.logical_date,
    dataIntervalStart: started.data_interval_start,
    dataIntervalEnd: started.data_interval_end,
    params: started.params,
    conf: started.conf,
  };
}

/** What a callback function is told (its `ctx` without `log`), from the Execution API's start answer. */
export interface CallbackRunContext {
  kind: CallbackKind;
  callbackId: string;
  idempotencyKey: string;
  attempt: number;
  maxAttempts: number;
  previousAttemptMayHaveRun: boolean;
  dagId: string;
  runId: string;
  logicalDate: string;
  conf: Record<string, unknown>;
  taskId?: string;
  mapIndex?: number;
  tryNumber?: number;
  errorMessage?: string;
  errorType?: CallbackErrorType;
  deadline?: DeadlineContext;
}

/** What the callback function is told, from the start answer (absent fields left out). */
export function callbackRunContextOf(started: StartedCallback): CallbackRunContext {
  return {
    kind: started.kind,
    callbackId: started.callback_id,
    idempotencyKey: started.idempotency_key,
    attempt: started.attempt,
    maxAttempts: started.max_attempts,
    previousAttemptMayHaveRun: started.previous_attempt_may_have_run,
    dagId: started.dag_id,
    runId: started.dag_run_id,
    logicalDate: started.logical_date,
    conf: started.conf,
    ...(started.task_id === null ? {} : { taskId: started.task_id }),
    ...(started.map_index === null ? {} : { mapIndex: started.map_index }),
    ...(started.try_number === null ? {} : { tryNumber: started.try_number }),
    ...(started.error_message === null ? {} : { errorMessage: started.error_message }),
    ...(started.error_type === null ? {} : { errorType: started.error_type }),
    ...(started.deadline === undefined
      ? {}
      : {
          deadline: {
            at: started.deadline.at,
            reference: started.deadline.reference,
            lateByMs: started.deadline.late_by_ms,
          },
        }),
  };
}

export interface PinnedVersion {
  fileloc: string;
  versionHash: string;
}

export type SupervisorToRunner =
  | {
      type: 'run';
      runId: number;
      file: string;
      context: TaskRunContext;
      args: unknown[];
      /** The DAG version the run executes, to tell the task's log when the file has changed since. */
      pinned?: PinnedVersion;
      /** A resumed try: its method, kwargs and event (serde text), rebuilt under `allowedClasses`. */
      resume?: Resume;
      allowedClasses?: readonly string[];
    }
  | {
      /** One attempt of a callback: the function at `index` of the owner's list for `event`, named `name`. */
      type: 'run_callback';
      runId: number;
      file: string;
      dagId: string;
      taskId: string | null;
      event: string;
      index: number;
      name: string;
      context: CallbackRunContext;
    }
  | { type: 'xcom_value'; requestId: number; value?: unknown; error?: string }
  /** Aborts the task's `ctx.signal`; the process is killed if the task has not ended soon after. */
  | { type: 'cancel'; runId: number; reason: string };

export type RunnerOutcome =
  | { kind: 'success'; xcom?: string; followTaskIds?: string[] }
  | { kind: 'skipped'; reason: string }
  | { kind: 'failed_no_retry'; reason: string }
  | { kind: 'deferred'; deferral: Deferral }
  | { kind: 'error'; message: string };

export type RunnerToSupervisor =
  | { type: 'ready' }
  | { type: 'log'; text: string }
  | { type: 'xcom_pull'; requestId: number; taskId: string; key: string }
  /** `loaded`: local modules first loaded during this run, so the supervisor can tell when they change. */
  | { type: 'outcome'; runId: number; outcome: RunnerOutcome; loaded: LoadedModule[] };
