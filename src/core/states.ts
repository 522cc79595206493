/**
 * Task instance and DAG run states, with Airflow's names and meanings.
 * `deferred`: the try gave up its worker slot and waits for its trigger to fire.
 */
export const TASK_INSTANCE_STATES = [
  'none',
  'scheduled',
  'queued',
  'running',
  'success',
  'failed',
  'up_for_retry',
  'upstream_failed',
  'skipped',
  'removed',
  'deferred',
] as const;
export type TaskInstanceState = (typeof TASK_INSTANCE_STATES)[number];

export const DAG_RUN_STATES = ['queued', 'running', 'success', 'failed'] as const;
export type DagRunState = (typeof DAG_RUN_STATES)[number];

/** States a task instance never leaves on its own: only a clear moves it back to `none`. */
export const FINISHED_TI_STATES: ReadonlySet<TaskInstanceState> = new Set([
  'success',
  'failed',
  'upstream_failed',
  'skipped',
  'removed',
]);

/** States that hold an executor slot (and a pool slot) while the task instance is in them. */
export const OCCUPYING_TI_STATES: ReadonlySet<TaskInstanceState> = new Set(['queued', 'running']);

export function isFinishedTaskInstanceState(state: TaskInstanceState): boolean {
  return FINISHED_TI_STATES.has(state);
}

export function isFinishedDagRunState(state: DagRunState): boolean {
  return state === 'success' || state === 'failed';
}

/**
 * Allowed task instance transitions. Anything not listed is refused by the store's
 * conditional writes, so a late or duplicated message cannot move a TI backwards.
 * `none` is reachable from every state through a clear, which is not a transition but a reset.
 */
export const TASK_INSTANCE_TRANSITIONS: Readonly<Record<TaskInstanceState, readonly TaskInstanceState[]>> = {
  // deferred from none, scheduled or up_for_retry: a task that starts in a trigger, without a worker.
  none: ['scheduled', 'queued', 'deferred', 'upstream_failed', 'skipped', 'removed'],
  scheduled: ['queued', 'deferred', 'upstream_failed', 'skipped', 'none', 'removed'],
  // skipped from queued and deferred: the run timed out (its unfinished TIs are skipped).
  queued: ['running', 'failed', 'up_for_retry', 'scheduled', 'removed', 'skipped'],
  running: ['success', 'failed', 'up_for_retry', 'skipped', 'deferred', 'scheduled'],
  up_for_retry: ['queued', 'scheduled', 'deferred', 'failed', 'upstream_failed', 'skipped'],
  // success and failed without a worker: a trigger's end event (Airflow's end from trigger).
  deferred: ['scheduled', 'queued', 'success', 'failed', 'up_for_retry', 'skipped'],
  success: [],
  failed: [],
  upstream_failed: [],
  skipped: [],
  removed: [],
};

export function canTransition(from: TaskInstanceState, to: TaskInstanceState): boolean {
  return TASK_INSTANCE_TRANSITIONS[from].includes(to);
}
