import { type DagGraph, dagGraphOf, descendantTaskIds } from './dag-graph.ts';
import { type DagRun, type TaskInstance, type TaskInstanceKey, taskInstanceKeyOf } from './models.ts';
import { priorityWeightsOf } from './priority.ts';
import type { SerializedDag } from './serialized-dag.ts';
import { canTransition, isFinishedTaskInstanceState, type TaskInstanceState } from './states.ts';
import { evaluateTriggerRule, summarizeUpstream } from './trigger-rules.ts';

export interface FinalizeDecision {
  key: TaskInstanceKey;
  from: TaskInstanceState;
  to: 'skipped' | 'upstream_failed' | 'removed';
  /** The try the decision was made for: the conditional write expects it. */
  tryNumber: number;
}

export interface ReadyTaskInstance {
  ti: TaskInstance;
  priorityWeight: number;
}

export interface RunEvaluation {
  /** TIs to move to a finished state because of their upstream (skip / upstream_failed), or 'removed' for TIs whose task is no longer in the DAG version. */
  finalize: FinalizeDecision[];
  /** TIs whose dependencies are met and that may be queued now (state none, scheduled, or up_for_retry whose nextRetryAt <= now), with their effective priority weight. Highest weight first. */
  ready: ReadyTaskInstance[];
  /** Tasks of the DAG version that have no TaskInstance row yet (a partly written run), to be created. */
  missing: string[];
  /** Final run state once every TI is finished (decided by the leaves, as Airflow), or 'failed' on a deadlock; else null. */
  runState: 'success' | 'failed' | null;
  /** True when `runState` is 'failed' because unfinished TIs can never run (Airflow's "task deadlock"). */
  deadlocked: boolean;
  /** Earliest future moment the run needs another look without any event (the next retry time), or null. */
  nextWakeAt: string | null;
}

/** A TI with the state this evaluation gives it; decisions made earlier in the pass are visible downstream. */
interface Entry {
  ti: TaskInstance;
  state: TaskInstanceState;
}

const IN_FLIGHT_STATES: ReadonlySet<TaskInstanceState> = new Set(['queued', 'running', 'deferred']);

/**
 * Decides everything the scheduler can do for one run from a snapshot of its TIs.
 *
 * Tasks are visited in topological order and each decision updates the state its downstream tasks
 * see, so the evaluation is a fixpoint: a failure or a skipped branch resolves through any depth in one
 * call. Before trigger rules, a TI directly downstream of a succeeded branch task that did not follow it
 * (nor a task downstream of a followed one) is skipped, as Airflow's `SkipMixin.skip_all_except` and
 * `NotPreviouslySkippedDep` do; a branch TI with `followTaskIds` null followed nothing (Airflow's `None`).
 *
 * The run's state follows Airflow's `DagRun.update_state`: once no TI is unfinished, the run failed if a
 * leaf TI (one of a task without downstream, not removed) is failed or upstream_failed, else it
 * succeeded; a task that fails mid-DAG under an `all_done` leaf that succeeds gives a successful run.
 * When unfinished TIs remain but none is in flight, ready or waiting for its retry time, nothing can
 * ever change them: the run is deadlocked and fails. TIs of tasks no longer in the DAG are ignored.
 * The caller evaluates only running runs; the run itself is not consulted yet (its TIs carry its key).
 */
export function evaluateRun(
  dag: SerializedDag,
  _run: DagRun,
  tis: TaskInstance[],
  nowMs: number,
): RunEvaluation {
  const graph = dagGraphOf(dag);
  const weights = priorityWeightsOf(dag);
  const finalize: FinalizeDecision[] = [];
  const entriesByTask = new Map<string, Entry[]>();

  for (const ti of tis) {
    if (!graph.tasks.has(ti.taskId)) {
      if (ti.state !== 'removed' && canTransition(ti.state, 'removed')) {
        finalize.push({ key: taskInstanceKeyOf(ti), from: ti.state, to: 'removed', tryNumber: ti.tryNumber });
      }
      continue;
    }
    const entries = entriesByTask.get(ti.taskId);
    if (entries) entries.push({ ti, state: ti.state });
    else entriesByTask.set(ti.taskId, [{ ti, state: ti.state }]);
  }

  const ready: ReadyTaskInstance[] = [];
  const missing: string[] = [];
  const followedByBranch = new Map<string, ReadonlySet<string>>();
  let inFlight = false;
  let unfinished = 0;
  let nextWakeMs = Number.POSITIVE_INFINITY;

  for (const taskId of graph.topologicalOrder) {
    const task = graph.tasks.get(taskId)!;
    const entries = entriesByTask.get(taskId);
    if (!entries) {
      missing.push(taskId);
      continue;
    }
    const upstream = graph.upstream.get(taskId) ?? [];
    for (const entry of entries) {
      if (isFinishedTaskInstanceState(entry.state)) continue;
      if (IN_FLIGHT_STATES.has(entry.state)) {
        inFlight = true;
        unfinished += 1;
        continue;
      }
      const decision = isSkippedByBranch(graph, taskId, entriesByTask, followedByBranch)
        ? 'skip'
        : evaluateTriggerRule(task.triggerRule, summarizeUpstream({ upstream }, entriesByTask), {
            mapIndex: entry.ti.mapIndex,
          });
      if (decision === 'skip' || decision === 'upstream_failed') {
        const to = decision === 'skip' ? 'skipped' : 'upstream_failed';
        finalize.push({
          key: taskInstanceKeyOf(entry.ti),
          from: entry.state,
          to,
          tryNumber: entry.ti.tryNumber,
        });
        entry.state = to;
        continue;
      }
      unfinished += 1;
      if (decision === 'wait') continue;
      const retryAtMs = retryDueMs(entry.ti);
      if (entry.state === 'up_for_retry' && retryAtMs > nowMs) {
        nextWakeMs = Math.min(nextWakeMs, retryAtMs);
        continue;
      }
      ready.push({ ti: entry.ti, priorityWeight: weights.get(taskId) ?? task.priorityWeight });
    }
  }

  ready.sort(
    (a, b) =>
      b.priorityWeight - a.priorityWeight ||
      compareStrings(a.ti.taskId, b.ti.taskId) ||
      a.ti.mapIndex - b.ti.mapIndex,
  );
  const waitingForRetry = Number.isFinite(nextWakeMs);
  const deadlocked =
    missing.length === 0 && unfinished > 0 && !inFlight && ready.length === 0 && !waitingForRetry;
  let runState: RunEvaluation['runState'] = null;
  if (deadlocked) runState = 'failed';
  else if (missing.length === 0 && unfinished === 0) runState = finalRunState(graph, entriesByTask);

  return {
    finalize,
    ready,
    missing,
    runState,
    deadlocked,
    nextWakeAt: waitingForRetry ? new Date(nextWakeMs).toISOString() : null,
  };
}

/** Whether a task's leaf TIs say the finished run failed. Removed TIs do not count; no leaf TI → success. */
function finalRunState(graph: DagGraph, entriesByTask: ReadonlyMap<string, Entry[]>): 'success' | 'failed' {
  for (const [taskId, children] of graph.downstream) {
    if (children.length > 0) continue;
    for (const entry of entriesByTask.get(taskId) ?? []) {
      if (entry.state === 'failed' || entry.state === 'upstream_failed') return 'failed';
    }
  }
  return 'success';
}

function isSkippedByBranch(
  graph: DagGraph,
  taskId: string,
  entriesByTask: ReadonlyMap<string, Entry[]>,
  followedByBranch: Map<string, ReadonlySet<string>>,
): boolean {
  for (const upstreamId of graph.upstream.get(taskId) ?? []) {
    if (!graph.tasks.get(upstreamId)?.isBranch) continue;
    const branchTi = entriesByTask.get(upstreamId)?.find((entry) => entry.state === 'success')?.ti;
    if (!branchTi) continue;
    let followed = followedByBranch.get(upstreamId);
    if (!followed) {
      followed = followedTaskIds(graph, branchTi.followTaskIds ?? []);
      followedByBranch.set(upstreamId, followed);
    }
    if (!followed.has(taskId)) return true;
  }
  return false;
}

/**
 * The followed tasks and everything downstream of them: a join directly under the branch that is also
 * reached through a followed task must not be skipped (Airflow's "empty branch" case).
 */
function followedTaskIds(graph: DagGraph, followTaskIds: readonly string[]): Set<string> {
  const followed = new Set<string>();
  for (const taskId of followTaskIds) {
    if (!graph.tasks.has(taskId)) continue;
    followed.add(taskId);
    for (const descendant of descendantTaskIds(graph, taskId)) followed.add(descendant);
  }
  return followed;
}

/** A TI up for retry without a readable retry time is due now rather than stranded. */
function retryDueMs(ti: TaskInstance): number {
  if (ti.nextRetryAt === null) return Number.NEGATIVE_INFINITY;
  const parsed = Date.parse(ti.nextRetryAt);
  return Number.isNaN(parsed) ? Number.NEGATIVE_INFINITY : parsed;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
