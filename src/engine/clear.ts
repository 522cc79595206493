import { forgetDeferral, formatTaskInstanceKey, type TaskInstance } from '#core/models.ts';
import type { SerializedDag } from '#core/serialized-dag.ts';
import { isFinishedDagRunState, type TaskInstanceState } from '#core/states.ts';
import { ConditionFailedError } from '#store/errors.ts';
import type { Store } from '#store/port.ts';
import { ignoreConflict } from './conflicts.ts';
import type { DagVersionCache } from './dag-cache.ts';
import { InvalidRequestError, NotFoundError, StateConflictError } from './errors.ts';
import type { SchedulingNotifier } from './notifier.ts';

export interface ClearRequest {
  dagId: string;
  runId: string;
  /** Tasks to clear; every task of the run when empty. */
  taskIds: string[];
  includeDownstream: boolean;
  onlyFailed: boolean;
  dryRun: boolean;
}

const CLEARABLE: readonly TaskInstanceState[] = [
  'success',
  'failed',
  'upstream_failed',
  'skipped',
  'up_for_retry',
  'scheduled',
  'none',
  'removed',
  // A deferred task holds no slot: a clear ends its wait (its trigger is deleted below).
  'deferred',
];
const FAILED_STATES: ReadonlySet<TaskInstanceState> = new Set(['failed', 'upstream_failed']);

/**
 * Clears task instances so they run again, like Airflow's clear: the TI goes back to `none`,
 * keeps its try number, gets `retries + 1` more tries, loses its XCom, and the run goes back
 * to `queued` if it had finished. Queued or running TIs are refused rather than killed; a dry
 * run lists what is selected, whatever its state.
 */
export async function clearTaskInstances(
  deps: { store: Store; dags: DagVersionCache; notifier: SchedulingNotifier; now: () => number },
  request: ClearRequest,
): Promise<TaskInstance[]> {
  const { store } = deps;
  const snapshot = await store.getRunSnapshot(request);
  if (!snapshot) throw new NotFoundError(`DAG run ${request.dagId}/${request.runId} not found`);
  const dag = await deps.dags.get(snapshot.run.dagId, snapshot.run.dagVersion);
  const known = new Set(dag.tasks.map((task) => task.taskId));
  const unknown = request.taskIds.filter((id) => !known.has(id));
  if (unknown.length > 0)
    throw new InvalidRequestError(`Unknown task id(s) in DAG ${dag.dagId}: ${unknown.join(', ')}`);

  const selected = request.taskIds.length === 0 ? known : new Set(request.taskIds);
  const taskIds = request.includeDownstream ? withDownstream(dag, selected) : selected;
  const targets = snapshot.taskInstances.filter(
    (ti) => taskIds.has(ti.taskId) && (!request.onlyFailed || FAILED_STATES.has(ti.state)),
  );
  // A preview lists every selected TI, queued or running ones too (their state shows why the
  // clear itself would be refused), rather than refusing to show anything.
  if (request.dryRun) return targets;
  const busy = targets.filter((ti) => !CLEARABLE.includes(ti.state));
  if (busy.length > 0) {
    throw new StateConflictError(
      `Cannot clear task instances that are queued or running: ${busy.map((ti) => `${formatTaskInstanceKey(ti)} (${ti.state})`).join(', ')}`,
    );
  }

  const retriesOf = new Map(dag.tasks.map((task) => [task.taskId, task.retries]));
  if (targets.length === 0) {
    await deps.notifier.notify(snapshot.run);
    return [];
  }
  // Counted on the run before any TI moves: a scheduling pass that read the run earlier cannot
  // finish it (its finish is conditional on the clears it saw) while these TIs are reset, and no
  // pass trusts or rebuilds the run's state summary until the clear has ended.
  const begun = await store.markRunCleared(snapshot.run, 'begin');
  // A finished run goes back to queued before any TI is reset: a clear that dies half way must
  // not leave a final run over TIs that will never run (its passes finish it again if need be).
  if (isFinishedDagRunState(begun.state)) {
    await ignoreConflict(store.transitionDagRun(begun, begun.state, { state: 'queued', endDate: null }));
  }
  const cleared: TaskInstance[] = [];
  try {
    await resetAll(store, targets, retriesOf, cleared);
  } finally {
    // Counted again once the TIs are reset (or the clear stopped on a conflict): a pass that read
    // them before the reset (after the first count) either finished the run already, seen here and
    // undone, or has its finish refused.
    const run = await store.markRunCleared(snapshot.run, 'end');
    if (cleared.length > 0 && isFinishedDagRunState(run.state)) {
      await ignoreConflict(store.transitionDagRun(run, run.state, { state: 'queued', endDate: null }));
    }
  }
  await deps.notifier.notify(snapshot.run);
  return cleared;
}

async function resetAll(
  store: Store,
  targets: readonly TaskInstance[],
  retriesOf: ReadonlyMap<string, number>,
  cleared: TaskInstance[],
): Promise<void> {
  for (const ti of targets) {
    try {
      cleared.push(
        await store.transitionTaskInstance(
          ti,
          { state: ti.state, tryNumber: ti.tryNumber },
          {
            state: 'none',
            maxTries: ti.tryNumber + (retriesOf.get(ti.taskId) ?? 0) + 1,
            queuedAt: null,
            startDate: null,
            endDate: null,
            heartbeatAt: null,
            nextRetryAt: null,
            durationMs: null,
            errorMessage: null,
            followTaskIds: null,
            workerId: null,
            hostname: null,
            reportId: null,
            ...forgetDeferral(ti),
          },
          { reset: true },
        ),
      );
    } catch (error) {
      if (!(error instanceof ConditionFailedError)) throw error;
      throw new StateConflictError(`${formatTaskInstanceKey(ti)} changed state while being cleared`, {
        cause: error,
      });
    }
    // Only once the reset won: a clear that loses its race leaves the TI's XComs alone.
    await store.deleteXComs(ti);
    // Nothing waits on a cleared deferral's trigger; its triggerer stops it at its next cleanup.
    if (typeof ti.triggerId === 'string') await store.deleteTrigger(ti.triggerId);
  }
}

function withDownstream(dag: SerializedDag, roots: ReadonlySet<string>): Set<string> {
  const downstream = new Map<string, string[]>();
  for (const task of dag.tasks) {
    for (const upstream of task.upstream)
      downstream.set(upstream, [...(downstream.get(upstream) ?? []), task.taskId]);
  }
  const result = new Set(roots);
  const stack = [...roots];
  while (stack.length > 0) {
    for (const next of downstream.get(stack.pop() as string) ?? []) {
      if (!result.has(next)) {
        result.add(next);
        stack.push(next);
      }
    }
  }
  return result;
}
