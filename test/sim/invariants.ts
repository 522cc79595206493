import type { SerializedDag } from '#core/serialized-dag.ts';
import { isFinishedTaskInstanceState, type TaskInstanceState } from '#core/states.ts';
import { evaluateTriggerRule, summarizeUpstream, type TriggerRuleDecision } from '#core/trigger-rules.ts';
import { triggerIdOf } from '#engine/triggers.ts';
import { runPartition } from '#store/keys.ts';
import { SimFailure } from './kernel.ts';
import {
  type ExecutionOutcome,
  type Ledger,
  parsePhaseKey,
  phaseKey,
  type SimDeferral,
  type TriggerAnswer,
} from './ledger.ts';
import type { QueueAccount } from './sim-queue.ts';
import type { MirroredTaskInstance, StoreMirror, TaskInstanceChange } from './store-gate.ts';

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

/**
 * 3. A try whose success report was answered 200 by the router, or ended by a success event the
 * API answered `applied`, stays success (runs touched by a clear are skipped).
 */
export function checkSuccessesKept(mirror: StoreMirror, ledger: Ledger, cleared: ReadonlySet<string>) {
  const successes: { ti: string; tryNumber: number; how: string }[] = [];
  for (const [key, state] of ledger.accepted) {
    if (state !== 'success') continue;
    const { ti, tryNumber } = parsePhaseKey(key);
    successes.push({ ti, tryNumber, how: 'reported success (200)' });
  }
  for (const { answer, deferral } of ledger.appliedAnswers()) {
    if (deferral && answer.type === 'success')
      successes.push({
        ti: deferral.ti,
        tryNumber: deferral.tryNumber,
        how: 'ended by a success event (applied)',
      });
  }
  for (const { ti, tryNumber, how } of successes) {
    const stored = mirror.taskInstances.get(ti);
    if (!stored || cleared.has(`${stored.dagId}/${stored.runId}`)) continue;
    if (stored.state !== 'success' || stored.tryNumber !== tryNumber) {
      return new SimFailure(
        '3-success-kept',
        `${ti} try ${tryNumber} ${how} but the store has ${stored.state} at try ${stored.tryNumber}`,
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
  defer: ['deferred'],
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
  for (const [key, state] of ledger.accepted) {
    const { ti, tryNumber, phase } = parsePhaseKey(key);
    const what = `${ti} try ${tryNumber}${phase > 0 ? ` (resumed after deferral ${phase})` : ''}`;
    const execution = ledger.find(ti, tryNumber, phase);
    if (!execution?.outcome) {
      return new SimFailure('3-outcome-kept', `${what} was reported ${state} but never executed to an end`);
    }
    if (!REPORTS_OF[execution.outcome].includes(state)) {
      return new SimFailure(
        '3-outcome-kept',
        `${what} did ${execution.outcome} but was recorded as ${state}`,
      );
    }
  }
  for (const execution of ledger.executions) {
    if (execution.outcome !== 'success' || execution.diedBeforeReport) continue;
    const key = phaseKey(execution.ti, execution.tryNumber, execution.phase);
    if (ledger.reported.get(key) === true && ledger.accepted.get(key) !== 'success') {
      return new SimFailure(
        '3-success-kept',
        `${execution.ti} try ${execution.tryNumber} phase ${execution.phase} succeeded and its worker says it reported it, but the API never accepted a success`,
      );
    }
  }
  return undefined;
}

/** Successes whose worker lived but gave up reporting (the API unreachable for the whole window). */
export function successesLostToFaults(ledger: Ledger): number {
  return ledger.executions.filter((e) => {
    const key = phaseKey(e.ti, e.tryNumber, e.phase);
    return (
      e.outcome === 'success' &&
      !e.diedBeforeReport &&
      ledger.reported.get(key) === false &&
      ledger.accepted.get(key) !== 'success'
    );
  }).length;
}

/**
 * 4. The run's final TI states equal a sequential reference evaluation: tasks in topological
 * order; a TI that was never queued is skipped or upstream_failed by its trigger rule; one that ran
 * had to be allowed to run, and ends as its last try ended: by an end event the API applied
 * (success, or failed at once for a failure event, tries left or not), else in the state of the
 * try's accepted report of any phase (success, skipped, failed once out of tries), else failed
 * once out of tries (a zombie, a deferral that timed out, a trigger that failed, with no tries
 * left). A deferral's own reports (`deferred`) end nothing. The run's state follows its leaves.
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
      const tiKey = `${runKey}/${task.taskId}/-1`;
      const ended = endEventOf(ledger, tiKey, ti.tryNumber);
      const accepted = ledger.acceptedEnd(tiKey, ti.tryNumber);
      if (ended) state = ended;
      else if (accepted === 'success' || accepted === 'skipped') state = accepted;
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

/** How an end event the API applied ended this try: `success`, `failed`, or undefined when none did. */
function endEventOf(ledger: Ledger, ti: string, tryNumber: number): 'success' | 'failed' | undefined {
  for (const { answer, deferral } of ledger.appliedAnswers()) {
    if (deferral?.ti !== ti || deferral.tryNumber !== tryNumber || answer.route !== 'event') continue;
    if (answer.type === 'success') return 'success';
    if (answer.type === 'failure') return 'failed';
  }
  return undefined;
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
  const describeTi = (ti: MirroredTaskInstance) =>
    `${ti.taskId}:${ti.state}@${ti.tryNumber}${ti.deferralSeq > 0 ? `.${ti.deferralSeq}` : ''}`;
  return `${runKey} ${mirror.runs.get(runKey)?.state ?? 'missing'} [${tis.map(describeTi).join(' ')}]`;
}

/**
 * 9d. A TI waiting in `deferred` has its trigger row, from the moment it defers until it leaves
 * `deferred` (the row is written before the TI defers and deleted only after it moved on): a
 * deferred TI without its trigger can only end by its timeout, or waits for ever. Violated by
 * deleting a trigger as stale while its TI is about to wait on it (the deferral's TI write still
 * in flight), or deleting it before the TI's own transition. Checked every step.
 */
export function checkTriggersKept(mirror: StoreMirror): SimFailure | undefined {
  for (const [key, ti] of mirror.taskInstances) {
    if (ti.state !== 'deferred') continue;
    const triggerId = triggerIdOf(ti, ti.tryNumber, ti.deferralSeq);
    if (!mirror.triggers.has(triggerId))
      return new SimFailure(
        '9d-trigger-kept',
        `${key} waits in deferred at try ${ti.tryNumber}, deferral ${ti.deferralSeq}, but its trigger ${triggerId} is gone; history ${(mirror.history.get(key) ?? []).map(describeChange).join(' → ')}`,
      );
  }
  return undefined;
}

/** What the API must have done to a TI for an `applied` answer of this route and type. */
function appliedStates(answer: TriggerAnswer): string[] {
  if (answer.route === 'failure') return ['failed', 'up_for_retry'];
  switch (answer.type) {
    case 'resume':
      return ['scheduled'];
    case 'success':
      return ['success'];
    case 'failure':
      return ['failed'];
    default:
      return [];
  }
}

/**
 * 9b / 9c, checked as each answer of the trigger event and failure routes leaves the router (the
 * invocation's store writes are all done). 9b: `applied` moved exactly its own TI, from waiting on
 * that try's deferral to what the event says (scheduled to resume; success; failed; failed or
 * up_for_retry for a failed trigger), with the end the trigger was built for, and at most once per
 * trigger (first event wins). Violated by an event applied to another try or deferral, or applied
 * twice (a duplicate or a takeover's second run resuming the TI again). 9c: `stale` and `duplicate`
 * changed no TI at all (state, try, deferral). Violated by an unconditional write, or a condition
 * that does not name the try and the deferral.
 */
export function checkTriggerAnswer(
  answer: TriggerAnswer,
  ledger: Ledger,
  mirror: StoreMirror,
): SimFailure | undefined {
  let changes = mirror.changesBy.get(answer.apiActor) ?? [];
  const deferral = ledger.deferrals.get(answer.triggerId);
  const what = `the ${answer.route}${answer.type ? ` (${answer.type})` : ''} of trigger ${answer.triggerId} (${describeDeferral(deferral)})`;
  if (answer.batch) {
    // One call answered several events: each owns the changes to its own TI, and the call may
    // change no TI that none of its events names.
    const named = new Set(answer.batch.map((triggerId) => ledger.deferrals.get(triggerId)?.ti));
    const foreign = changes.filter((change) => !named.has(change.ti));
    if (foreign.length > 0)
      return new SimFailure(
        '9c-stale-unchanged',
        `the batch of events with ${what} changed ${foreign.map(describeChange).join(', ')}, which none of its events waits on`,
      );
    const sharesTi = answer.batch.some(
      (triggerId) => triggerId !== answer.triggerId && ledger.deferrals.get(triggerId)?.ti === deferral?.ti,
    );
    // Another event of the call for the same TI (an earlier deferral's) may own its change.
    changes =
      sharesTi && answer.outcome !== 'applied' ? [] : changes.filter((change) => change.ti === deferral?.ti);
  }
  if (answer.outcome !== 'applied') {
    if (changes.length === 0) return undefined;
    return new SimFailure(
      '9c-stale-unchanged',
      `${what} was answered ${answer.outcome} but changed ${changes.map(describeChange).join(', ')}`,
    );
  }
  if (!deferral) return new SimFailure('harness', `${what} was applied, but no sim task deferred on it`);
  const expected = appliedStates(answer);
  const [change, ...others] = changes;
  if (
    !change ||
    others.length > 0 ||
    change.ti !== deferral.ti ||
    change.tryNumber !== deferral.tryNumber ||
    change.deferralSeq !== deferral.seq ||
    !expected.includes(change.state)
  ) {
    return new SimFailure(
      '9b-event-applied',
      `${what} was answered applied but changed ${changes.map(describeChange).join(', ') || 'nothing'}; expected ${deferral.ti} at try ${deferral.tryNumber}, deferral ${deferral.seq} to become ${expected.join(' or ')}`,
    );
  }
  const overdue = tickThatSawTimeout(deferral, change, mirror);
  if (overdue)
    return new SimFailure(
      '9e-deferral-timeout',
      `${what} was applied at ${change.atMs}, but ${overdue.actor} read the run after the deferral's timeout (${overdue.timeoutAtMs}) at ${overdue.atMs} and returned at ${overdue.doneMs} without ending it`,
    );
  const sent = answer.route === 'failure' ? 'raise' : answer.type;
  if (sent !== deferral.end)
    return new SimFailure(
      '9b-event-applied',
      `${what} was applied as ${sent}; its trigger was built to ${deferral.end}`,
    );
  const applied = ledger.triggerAnswers.filter(
    (a) => a.triggerId === answer.triggerId && a.outcome === 'applied',
  );
  if (applied.length > 1)
    return new SimFailure('9b-event-applied', `${what} was answered applied ${applied.length} times`);
  return undefined;
}

/**
 * 9e: a deferral past its timeout is ended by the tick. Violated when a tick read the deferral's run
 * after the timeout and returned before an event changed the TI (a timeout not checked, or checked
 * against the wrong time).
 */
function tickThatSawTimeout(
  deferral: SimDeferral,
  eventChange: TaskInstanceChange,
  mirror: StoreMirror,
): { actor: string; atMs: number; doneMs: number; timeoutAtMs: number } | undefined {
  const timeoutAtMs = deferredChangeOf(mirror, deferral)?.triggerTimeoutAtMs;
  if (timeoutAtMs === null || timeoutAtMs === undefined) return undefined;
  const [dagId, runId] = deferral.ti.split('/') as [string, string];
  const partition = runPartition({ dagId, runId });
  for (const read of mirror.tickReads) {
    const doneMs = mirror.ticksDone.get(read.actor);
    if (read.partition !== partition || read.atMs <= timeoutAtMs || doneMs === undefined) continue;
    if (doneMs < eventChange.atMs) return { actor: read.actor, atMs: read.atMs, doneMs, timeoutAtMs };
  }
  return undefined;
}

/** The change that made the TI wait on this deferral. */
function deferredChangeOf(mirror: StoreMirror, deferral: SimDeferral): TaskInstanceChange | undefined {
  return (mirror.history.get(deferral.ti) ?? []).find(
    (change) =>
      change.state === 'deferred' &&
      change.tryNumber === deferral.tryNumber &&
      change.deferralSeq === deferral.seq,
  );
}

/**
 * 9e at the end: a tick ends a deferral (deferred → failed or up_for_retry at the same try and
 * deferral) only once its timeout has passed. Violated by a timeout checked against the wrong
 * time, or a tick failing a deferral that has no timeout.
 */
export function checkDeferralTimeouts(mirror: StoreMirror): SimFailure | undefined {
  for (const [ti, history] of mirror.history) {
    for (const [index, change] of history.entries()) {
      const before = history[index - 1];
      if (before?.state !== 'deferred' || !change.writer?.startsWith('tick')) continue;
      if (change.tryNumber !== before.tryNumber || change.deferralSeq !== before.deferralSeq) continue;
      const timeoutAtMs = before.triggerTimeoutAtMs;
      if (timeoutAtMs !== null && change.atMs >= timeoutAtMs) continue;
      return new SimFailure(
        '9e-deferral-timeout',
        `${change.writer} ended ${ti}'s deferral ${before.deferralSeq} (try ${before.tryNumber}) as ${change.state} at ${change.atMs}, ${timeoutAtMs === null ? 'though it has no timeout' : `before its timeout at ${timeoutAtMs}`}`,
      );
    }
  }
  return undefined;
}

/**
 * 9a / 9b at the end. Every resume event answered `applied` resumed its TI: the API answered a
 * start of that try carrying that deferral (unless the run was cleared, or the try then failed
 * from `queued` because no worker ever started it). Violated by a resume lost between the event
 * and the scheduler (the TI left `scheduled` with no start, or queued at a new try). And every
 * resumed phase a worker ran was resumed in the store: the TI went from waiting on that deferral to
 * `scheduled`. Violated by a start that resumes without an event (a stale workload resuming a
 * deferral that timed out).
 */
export function checkTriggerEvents(
  ledger: Ledger,
  mirror: StoreMirror,
  cleared: ReadonlySet<string>,
): SimFailure | undefined {
  for (const { answer, deferral } of ledger.appliedAnswers()) {
    if (!deferral || answer.route !== 'event' || answer.type !== 'resume') continue;
    const key = phaseKey(deferral.ti, deferral.tryNumber, deferral.seq);
    if (cleared.has(deferral.ti.split('/').slice(0, 2).join('/'))) continue;
    if (ledger.started.has(key) || neverStarted(mirror, deferral)) continue;
    const history = (mirror.history.get(deferral.ti) ?? []).map(describeChange).join(' → ');
    return new SimFailure(
      '9b-event-applied',
      `the resume of ${describeDeferral(deferral)} was applied but that phase was never started; history ${history}`,
    );
  }
  for (const execution of ledger.executions) {
    if (execution.phase === 0 || resumedInStore(mirror, execution)) continue;
    return new SimFailure(
      '9a-resume-once',
      `${execution.ti} try ${execution.tryNumber} resumed after deferral ${execution.phase} (by ${execution.actor}) though no event moved it from that deferral to scheduled`,
    );
  }
  return undefined;
}

/** Whether the store saw the TI go from waiting on this deferral to `scheduled` (an event resumed it). */
function resumedInStore(mirror: StoreMirror, at: { ti: string; tryNumber: number; phase: number }): boolean {
  const history = mirror.history.get(at.ti) ?? [];
  return history.some((change, index) => {
    const before = history[index - 1];
    return (
      change.state === 'scheduled' &&
      before?.state === 'deferred' &&
      [before, change].every((c) => c.tryNumber === at.tryNumber && c.deferralSeq === at.phase)
    );
  });
}

/** The resumed try was queued and then failed from `queued`: every workload sent for it went unstarted. */
function neverStarted(mirror: StoreMirror, deferral: SimDeferral): boolean {
  const history = mirror.history.get(deferral.ti) ?? [];
  return history.some(
    (change, index) =>
      index > 0 &&
      history[index - 1]?.state === 'queued' &&
      change.tryNumber === deferral.tryNumber &&
      change.deferralSeq === deferral.seq &&
      (change.state === 'failed' || change.state === 'up_for_retry'),
  );
}

function describeDeferral(deferral: SimDeferral | undefined): string {
  return deferral
    ? `${deferral.ti} try ${deferral.tryNumber} deferral ${deferral.seq}, built to ${deferral.end}`
    : 'no sim deferral';
}

function describeChange(change: TaskInstanceChange): string {
  return `${change.ti}:${change.state}@${change.tryNumber}.${change.deferralSeq}`;
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
