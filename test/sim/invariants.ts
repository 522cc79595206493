import type { SerializedDag } from '#core/serialized-dag.ts';
import { isFinishedTaskInstanceState, type TaskInstanceState } from '#core/states.ts';
import { evaluateTriggerRule, summarizeUpstream, type TriggerRuleDecision } from '#core/trigger-rules.ts';
import { runPartition } from '#store/keys.ts';
import { SimFailure } from './kernel.ts';
import type { ExecutionOutcome, Ledger } from './ledger.ts';
import type { QueueAccount } from './sim-queue.ts';
import type { MirroredTaskInstance, StoreMirror } from './store-gate.ts';

/**
 * The invariants, checked on the mirror of the store (after every step) and at the end. Each
 * returns the first violation found, or undefined.
 */

const OCCUPYING = new Set(['queued', 'running']);
const FINAL_RUN_STATES = new Set(['success', 'failed']);

export interface Limits {
  pools: Record<string, number>;
  dags: ReadonlyMap<string, SerializedDag>;
}

/** 2. Pools, max_active_tasks (per run) and max_active_runs (per DAG) never exceeded. */
export function checkLimits(mirror: StoreMirror, limits: Limits): SimFailure | undefined {
  const poolUse = new Map<string, { slots: number; holders: string[] }>();
  const runUse = new Map<string, string[]>();
  for (const ti of mirror.taskInstances.values()) {
    if (!OCCUPYING.has(ti.state)) continue;
    const pool = poolUse.get(ti.pool) ?? { slots: 0, holders: [] };
    pool.slots += ti.poolSlots;
    pool.holders.push(`${describe(ti)}(${ti.poolSlots})`);
    poolUse.set(ti.pool, pool);
    const runKey = `${ti.dagId}/${ti.runId}`;
    runUse.set(runKey, [...(runUse.get(runKey) ?? []), `${ti.taskId}:${ti.state}`]);
  }
  for (const [pool, use] of poolUse) {
    const size = limits.pools[pool] ?? 0;
    if (use.slots > size)
      return new SimFailure(
        '2-pool',
        `pool ${pool} (${size} slots) holds ${use.slots}: ${use.holders.join(', ')}`,
      );
  }
  for (const [runKey, holders] of runUse) {
    const max = limits.dags.get(runKey.split('/')[0] as string)?.maxActiveTasks ?? Infinity;
    if (holders.length > max)
      return new SimFailure(
        '2-max-active-tasks',
        `run ${runKey} (max ${max}) has ${holders.length}: ${holders.join(', ')}`,
      );
  }
  const running = new Map<string, string[]>();
  for (const run of mirror.runs.values()) {
    if (run.state === 'running') running.set(run.dagId, [...(running.get(run.dagId) ?? []), run.runId]);
  }
  for (const [dagId, runIds] of running) {
    const max = limits.dags.get(dagId)?.maxActiveRuns ?? Infinity;
    if (runIds.length > max)
      return new SimFailure('2-max-active-runs', `DAG ${dagId} (max ${max}) runs ${runIds.join(', ')}`);
  }
  return undefined;
}

/**
 * 8. A run's per-task state summary, while valid (made for the run's current clear count, and no
 * clear resetting TIs), never shows a finished state its task instance is not in: the scheduler
 * finishes runs and skips tasks on what the summary says of TIs it does not read.
 */
export function checkSummaries(mirror: StoreMirror): SimFailure | undefined {
  for (const run of mirror.runs.values()) {
    const summary = mirror.summaries.get(runPartition(run));
    if (!summary || summary.clearCount !== run.clearCount || run.clearsInProgress > 0) continue;
    for (const [taskId, state] of Object.entries(summary.states)) {
      if (!isFinishedTaskInstanceState(state as TaskInstanceState)) continue;
      const ti = mirror.taskInstances.get(`${run.dagId}/${run.runId}/${taskId}/-1`);
      if (ti && ti.state !== state)
        return new SimFailure(
          '8-summary',
          `run ${run.dagId}/${run.runId} (clear ${run.clearCount}): the summary shows ${taskId} ${state}, the TI is ${ti.state} at try ${ti.tryNumber}`,
        );
    }
  }
  return undefined;
}

/** 3. A try whose success report was answered 200 stays success (runs touched by a clear are skipped). */
export function checkSuccessesKept(mirror: StoreMirror, ledger: Ledger, cleared: ReadonlySet<string>) {
  for (const [tryKey, state] of ledger.accepted) {
    if (state !== 'success') continue;
    const [ti, tryText] = tryKey.split('#') as [string, string];
    const stored = mirror.taskInstances.get(ti);
    if (!stored || cleared.has(`${stored.dagId}/${stored.runId}`)) continue;
    if (stored.state !== 'success' || stored.tryNumber !== Number(tryText)) {
      return new SimFailure(
        '3-success-kept',
        `${ti} try ${tryText} reported success (200) but the store has ${stored.state} at try ${stored.tryNumber}`,
      );
    }
  }
  return undefined;
}

/** The report states a worker may send for what its task did. */
const REPORTS_OF: Readonly<Record<ExecutionOutcome, readonly string[]>> = {
  success: ['success'],
  skip: ['skipped'],
  fail: ['failed'],
  // Stopped by the worker (a refused or failing heartbeat, a timeout, a graceful stop).
  aborted: ['failed', 'handed_back'],
  killed: [],
};

/**
 * 3. Outcomes are kept as the tasks produced them: every report the API accepted states what its
 * execution really did (a success is never recorded as a failure, nor the other way round), and
 * every success whose worker lived to report it and says it delivered it was accepted. A success
 * whose worker gave up (the API stayed unreachable for the whole report window) is lost by
 * design and counted, not failed.
 */
export function checkOutcomesKept(ledger: Ledger): SimFailure | undefined {
  for (const [tryKey, state] of ledger.accepted) {
    const [ti, tryText] = tryKey.split('#') as [string, string];
    const execution = ledger.find(ti, Number(tryText));
    if (!execution?.outcome) {
      return new SimFailure(
        '3-outcome-kept',
        `${ti} try ${tryText} was reported ${state} but never executed to an end`,
      );
    }
    if (!REPORTS_OF[execution.outcome].includes(state)) {
      return new SimFailure(
        '3-outcome-kept',
        `${ti} try ${tryText} did ${execution.outcome} but was recorded as ${state}`,
      );
    }
  }
  for (const execution of ledger.executions) {
    if (execution.outcome !== 'success' || execution.diedBeforeReport) continue;
    const tryKey = `${execution.ti}#${execution.tryNumber}`;
    if (ledger.reported.get(tryKey) === true && ledger.accepted.get(tryKey) !== 'success') {
      return new SimFailure(
        '3-success-kept',
        `${execution.ti} try ${execution.tryNumber} succeeded and its worker says it reported it, but the API never accepted a success`,
      );
    }
  }
  return undefined;
}

/** Successes whose worker lived but gave up reporting (the API unreachable for the whole window). */
export function successesLostToFaults(ledger: Ledger): number {
  return ledger.executions.filter(
    (e) =>
      e.outcome === 'success' &&
      !e.diedBeforeReport &&
      ledger.reported.get(`${e.ti}#${e.tryNumber}`) === false &&
      ledger.accepted.get(`${e.ti}#${e.tryNumber}`) !== 'success',
  ).length;
}

/**
 * 4. The run's final TI states equal a sequential reference evaluation: tasks in topological
 * order; a TI that was never queued is skipped or upstream_failed by its trigger rule; one that ran
 * had to be allowed to run, and ends in the state of its last try's accepted report (success,
 * skipped, failed once out of tries), or failed when no report of that try was accepted (a zombie
 * with no tries left). The run's state follows its leaves.
 *
 * Trigger rules decide "at once" (all_success skips as soon as one upstream is skipped, even if
 * another fails later, as Airflow's TriggerRuleDep does), so the decision depends on the order the
 * upstream TIs finished in. The reference accepts any decision the rule gives for some subset of
 * the upstream TIs finished (in their final states) and the rest still running.
 */
export function checkAgainstReference(
  dag: SerializedDag,
  runKey: string,
  mirror: StoreMirror,
  ledger: Ledger,
): SimFailure | undefined {
  const expected = new Map<string, { state: TaskInstanceState }[]>();
  const problems: string[] = [];
  for (const task of dag.tasks) {
    const ti = mirror.taskInstances.get(`${runKey}/${task.taskId}/-1`);
    if (!ti) {
      problems.push(`${task.taskId}: no task instance`);
      continue;
    }
    const decisions = reachableDecisions(task, expected);
    let state: string;
    if (ti.tryNumber === 0) {
      const allowed = [
        ...(decisions.has('skip') ? ['skipped'] : []),
        ...(decisions.has('upstream_failed') ? ['upstream_failed'] : []),
      ];
      state = allowed.includes(ti.state)
        ? ti.state
        : `<never ran; the rule allows ${[...decisions].join(' or ')}>`;
    } else {
      if (!decisions.has('run'))
        problems.push(
          `${task.taskId} ran (try ${ti.tryNumber}) but its rule says ${[...decisions].join(' or ')}`,
        );
      const accepted = ledger.accepted.get(`${runKey}/${task.taskId}/-1#${ti.tryNumber}`);
      if (accepted === 'success' || accepted === 'skipped') state = accepted;
      else
        state =
          ti.tryNumber >= task.retries + 1
            ? 'failed'
            : `<retry: try ${ti.tryNumber} of ${task.retries + 1} failed>`;
    }
    if (state !== ti.state)
      problems.push(`${task.taskId}: store ${ti.state} at try ${ti.tryNumber}, reference ${state}`);
    expected.set(task.taskId, [{ state: state as TaskInstanceState }]);
  }
  const downstream = new Set(dag.tasks.flatMap((task) => task.upstream));
  const leaves = dag.tasks.filter((task) => !downstream.has(task.taskId));
  const failed = leaves.some((leaf) => {
    const state = expected.get(leaf.taskId)?.[0]?.state;
    return state === 'failed' || state === 'upstream_failed';
  });
  const runState = mirror.runs.get(runKey)?.state;
  if (runState !== (failed ? 'failed' : 'success'))
    problems.push(`run is ${runState}, reference ${failed ? 'failed' : 'success'}`);
  if (problems.length === 0) return undefined;
  return new SimFailure('4-reference', `run ${runKey}: ${problems.join('; ')}`);
}

/**
 * The decisions a task's trigger rule gives over every subset of its upstream tasks finished in
 * their reference states, the others still running: what some order of finishing could produce.
 */
function reachableDecisions(
  task: SerializedDag['tasks'][number],
  finalStates: ReadonlyMap<string, { state: TaskInstanceState }[]>,
): Set<TriggerRuleDecision> {
  const upstream = [...new Set(task.upstream)];
  const decisions = new Set<TriggerRuleDecision>();
  for (let mask = 0; mask < 2 ** upstream.length; mask += 1) {
    const view = new Map<string, { state: TaskInstanceState }[]>();
    upstream.forEach((taskId, index) => {
      const finished = (mask >> index) & 1;
      view.set(taskId, finished ? (finalStates.get(taskId) ?? []) : [{ state: 'running' }]);
    });
    const decision = evaluateTriggerRule(task.triggerRule, summarizeUpstream(task, view));
    if (decision !== 'wait') decisions.add(decision);
  }
  return decisions;
}

/** 4 (liveness). Every run is final once the heal phase ends. */
export function unfinishedRuns(mirror: StoreMirror, expectedRuns: readonly string[]): string[] {
  return expectedRuns.filter((runKey) => !FINAL_RUN_STATES.has(mirror.runs.get(runKey)?.state ?? 'missing'));
}

export function describeRun(mirror: StoreMirror, runKey: string): string {
  const tis = [...mirror.taskInstances.values()].filter((ti) => `${ti.dagId}/${ti.runId}` === runKey);
  return `${runKey} ${mirror.runs.get(runKey)?.state ?? 'missing'} [${tis.map((ti) => `${ti.taskId}:${ti.state}@${ti.tryNumber}`).join(' ')}]`;
}

/** 5. Every message deleted, dead-lettered or lost by a fault: none left in flight. */
export function checkMessages(accounts: Record<string, QueueAccount>): SimFailure | undefined {
  const open = Object.entries(accounts).filter(([, account]) => account.open > 0);
  if (open.length === 0) return undefined;
  return new SimFailure(
    '5-messages',
    `messages left in queues after the heal phase: ${open.map(([name, a]) => `${name}: ${a.open}`).join(', ')}`,
  );
}

function describe(ti: MirroredTaskInstance): string {
  return `${ti.dagId}/${ti.runId}/${ti.taskId}:${ti.state}`;
}
