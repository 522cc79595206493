import type { TriggerRule } from './serialized-dag.ts';
import type { TaskInstanceState } from './states.ts';

/**
 * Trigger rules, with the semantics of Airflow 3's `TriggerRuleDep` (ti_deps/deps/trigger_rule_dep.py).
 *
 * Counts are over the direct upstream task instances: `total` upstream TIs, of which `done` are finished
 * (success, failed, upstream_failed, skipped, removed). "failed" below means failed or upstream_failed.
 * A task with no upstream always runs, whatever its rule. Rows are checked top to bottom.
 *
 * | rule                        | skip when                               | upstream_failed when           | run when                                  | else |
 * | --------------------------- | --------------------------------------- | ------------------------------ | ----------------------------------------- | ---- |
 * | all_success                 | any skipped (and none failed)           | any failed (at once)           | every upstream succeeded                  | wait |
 * | all_failed                  | any success or skipped (at once)        | -                              | every upstream failed                     | wait |
 * | all_done                    | -                                       | -                              | every upstream done                       | wait |
 * | all_skipped                 | any success or failed (at once)         | -                              | every upstream skipped                    | wait |
 * | one_success                 | all done and all skipped                | all done and no success        | one upstream succeeded (at once)          | wait |
 * | one_failed                  | all done and none failed                | -                              | one upstream failed (at once)             | wait |
 * | one_done                    | all done, no success and no `failed`    | -                              | one upstream succeeded or `failed` (once) | wait |
 * | none_failed                 | -                                       | any failed (at once)           | every upstream succeeded or skipped       | wait |
 * | none_failed_min_one_success | every upstream skipped (and none failed)| any failed (at once)           | every upstream succeeded or skipped       | wait |
 * | none_skipped                | any skipped (at once)                   | -                              | every upstream done                       | wait |
 * | always                      | -                                       | -                              | at once                                   | -    |
 *
 * Airflow quirks kept on purpose: `one_done` counts only `failed`, not `upstream_failed`, as a failure;
 * `none_skipped` runs after failed upstreams; `none_failed_min_one_success` skips only when every
 * upstream skipped. A `removed` upstream counts as done but neither success nor failure, so an
 * unmapped TI under `all_success`/`all_failed`/`none_failed` waits on it (the run then deadlocks and
 * fails, as in Airflow); for a mapped TI (map index ≥ 0) removed upstreams are discounted.
 */

export type TriggerRuleDecision = 'run' | 'wait' | 'skip' | 'upstream_failed';

export interface UpstreamSummary {
  total: number;
  success: number;
  failed: number;
  upstreamFailed: number;
  skipped: number;
  removed: number;
  done: number;
}

export interface TriggerRuleOptions {
  /** Map index of the TI being evaluated; -1 (the default) for an unmapped TI. */
  mapIndex?: number;
}

/** The states that matter to a trigger rule; a full `TaskInstance` fits. */
export interface UpstreamTaskInstanceState {
  state: TaskInstanceState;
}

/**
 * Counts the states of a task's direct upstream TIs. `tisByTaskId` lists the TIs of each task
 * (one for an unmapped task). An upstream task with no TI yet counts as one TI that is not done,
 * so nothing downstream of a partly written run can run early.
 */
export function summarizeUpstream(
  task: { readonly upstream: readonly string[] },
  tisByTaskId: ReadonlyMap<string, readonly UpstreamTaskInstanceState[]>,
): UpstreamSummary {
  const summary: UpstreamSummary = {
    total: 0,
    success: 0,
    failed: 0,
    upstreamFailed: 0,
    skipped: 0,
    removed: 0,
    done: 0,
  };
  for (const upstreamId of new Set(task.upstream)) {
    const tis = tisByTaskId.get(upstreamId) ?? [];
    if (tis.length === 0) summary.total += 1;
    for (const ti of tis) {
      summary.total += 1;
      countState(summary, ti.state);
    }
  }
  return summary;
}

function countState(summary: UpstreamSummary, state: TaskInstanceState): void {
  switch (state) {
    case 'success':
      summary.success += 1;
      summary.done += 1;
      return;
    case 'failed':
      summary.failed += 1;
      summary.done += 1;
      return;
    case 'upstream_failed':
      summary.upstreamFailed += 1;
      summary.done += 1;
      return;
    case 'skipped':
      summary.skipped += 1;
      summary.done += 1;
      return;
    case 'removed':
      summary.removed += 1;
      summary.done += 1;
      return;
    case 'none':
    case 'scheduled':
    case 'queued':
    case 'running':
    case 'up_for_retry':
    case 'deferred':
      return;
  }
}

/** Decides what a TI with `rule` should do given its upstream summary. */
export function evaluateTriggerRule(
  rule: TriggerRule,
  summary: UpstreamSummary,
  options: TriggerRuleOptions = {},
): TriggerRuleDecision {
  const { total, success, failed, upstreamFailed, skipped, removed, done } = summary;
  if (total === 0 || rule === 'always') return 'run';

  const anyFailed = failed + upstreamFailed > 0;
  const upstreamDone = done >= total;
  // Airflow discounts removed upstream TIs only for mapped TIs: a shrunk expansion must not block them.
  const discountedRemoved = (options.mapIndex ?? -1) > -1 ? removed : 0;

  switch (rule) {
    case 'all_success':
      if (anyFailed) return 'upstream_failed';
      if (skipped > 0) return 'skip';
      return total - success - discountedRemoved > 0 ? 'wait' : 'run';
    case 'all_failed':
      if (success > 0 || skipped > 0) return 'skip';
      return total - failed - upstreamFailed - discountedRemoved > 0 ? 'wait' : 'run';
    case 'all_done':
      return upstreamDone ? 'run' : 'wait';
    case 'all_skipped':
      if (success > 0 || anyFailed) return 'skip';
      return total - skipped > 0 ? 'wait' : 'run';
    case 'one_success':
      if (upstreamDone && done === skipped) return 'skip';
      if (upstreamDone && success === 0) return 'upstream_failed';
      return success > 0 ? 'run' : 'wait';
    case 'one_failed':
      if (anyFailed) return 'run';
      return upstreamDone ? 'skip' : 'wait';
    case 'one_done':
      if (success + failed > 0) return 'run';
      return upstreamDone ? 'skip' : 'wait';
    case 'none_failed':
      if (anyFailed) return 'upstream_failed';
      return total - success - skipped - discountedRemoved > 0 ? 'wait' : 'run';
    case 'none_failed_min_one_success':
      if (anyFailed) return 'upstream_failed';
      if (skipped === total) return 'skip';
      return total - success - skipped - discountedRemoved > 0 ? 'wait' : 'run';
    case 'none_skipped':
      if (skipped > 0) return 'skip';
      return upstreamDone ? 'run' : 'wait';
  }
}
