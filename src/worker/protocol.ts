/**
 * Messages between the worker supervisor and a task runner child process (over Node's IPC
 * channel). The child runs user code only; everything that crosses the network stays in the
 * supervisor, so a task that blocks or crashes its process cannot take the supervisor with it.
 */

import type { Deferral, Resume } from '#contracts/triggers.ts';
import type { StartedTask } from './execution-client.ts';
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
