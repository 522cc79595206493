import { randomBytes } from 'node:crypto';
import type { Settings } from '#config/settings.ts';
import type { StarvingTaskInstance } from '#core/admission.ts';
import type { CallbackErrorType } from '#core/callbacks.ts';
import { mapConcurrently } from '#core/concurrency.ts';
import { deadlinesOnFinish } from '#core/deadlines.ts';
import {
  type DagRun,
  type DagRunKey,
  forgetDeferral,
  formatTaskInstanceKey,
  isResuming,
  newTaskInstance,
  nextTryNumberOf,
  type TaskInstance,
  type TaskInstanceKey,
  taskInstanceKeyOf,
} from '#core/models.ts';
import { evaluateRun } from '#core/run-evaluation.ts';
import type { SerializedDag } from '#core/serialized-dag.ts';
import { isFinishedDagRunState, isFinishedTaskInstanceState } from '#core/states.ts';
import type { Metrics } from '#metrics/port.ts';
import type { Queues } from '#queue/port.ts';
import type { DagRecord, RunHead, RunSnapshot, SlotPoolState, Store } from '#store/port.ts';
import { type CallbackService, owedOnRunFinish, owedOnTask } from './callbacks.ts';
import { ignoreConflict } from './conflicts.ts';
import type { DagVersionCache } from './dag-cache.ts';
import { armDeadlines, missDueDeadlines, owedOnDeadlineMissed } from './deadlines.ts';
import type { Logger } from './logger.ts';
import { type PassRequest, type PassView, readPassView, writeBackSummary } from './pass-view.ts';
import { PoolTurns } from './pool-turns.ts';
import { PoolWarnings } from './pool-warnings.ts';
import type { OrphanPolicy, WakeTimers } from './ports.ts';
import { reconcileActiveTaskInstances } from './reconcile.ts';
import { releaseRunSlot, startRun } from './run-slots.ts';
import { requestScheduling } from './scheduling-requests.ts';
import {
  fence,
  nextHolderId,
  poolRef,
  releaseOwned,
  reserveTaskSlots,
  reviewRunHolders,
  runTasksRef,
  taskHolderId,
  taskIdOfHolder,
} from './slots.ts';
import type { TaskTokenSigner } from './tokens.ts';
import { DEFAULT_TRIGGER_QUEUE, deferralTimeoutAt, triggerIdOf } from './triggers.ts';
import { WorkloadSender } from './workloads.ts';

export type SchedulerSettings = Pick<
  Settings,
  | 'pools'
  | 'heartbeatTimeoutMs'
  | 'queuedTimeoutMs'
  | 'maxRunsPerPass'
  | 'maxTaskInstancesPerPass'
  | 'maxQueuedSends'
  | 'schedulerTickMs'
>;

/** What every engine entry point runs on. Nothing here carries scheduling state between calls. */
export interface EngineDeps {
  store: Store;
  queues: Queues;
  /** Serialized DAG versions are immutable: a cache, never a source of decisions that could go stale. */
  dags: DagVersionCache;
  tokens: TaskTokenSigner;
  timers: WakeTimers;
  metrics: Metrics;
  settings: SchedulerSettings;
  log: Logger;
  now: () => number;
  orphans?: OrphanPolicy;
  /** Per-run readiness for the executable/starving gauges: a metrics cache of this process only. */
  readiness?: Map<string, { ready: number; starving: number }>;
  /** Turns owed callbacks into callback items (and sweeps on each tick); without it nothing owed is run. */
  callbacks?: Pick<CallbackService, 'materialize' | 'sweep'>;
}

/** Caches shared by the passes of one call (one batch of requests, one tick). */
export interface PassContext {
  /** DAG records read or being read: the passes running side by side share one read. */
  dagRecords: Map<string, Promise<DagRecord | undefined>>;
  poolWarnings: PoolWarnings;
  /** The passes of one batch take turns on each pool (see PoolTurns). */
  poolTurns: PoolTurns;
}

export function newPassContext(deps: Pick<EngineDeps, 'settings' | 'log'>): PassContext {
  return {
    dagRecords: new Map(),
    poolWarnings: new PoolWarnings(deps),
    poolTurns: new PoolTurns(),
  };
}

/** Store writes one pass keeps in flight: one queue batch (SQS sends at most 10 per call). */
const WRITE_CONCURRENCY = 10;

/**
 * One scheduling pass over one run, correct in a fresh instance beside any number of others: it
 * reads the run's head (one query: the run, its task-slot item and its per-task state summary)
 * and the TIs it may act on (see `readPassView`), reconciles timed-out TIs, evaluates trigger
 * rules, gives back stale slots and reserves slots for ready TIs in conditional items, queues what
 * it reserved with writes conditional on each TI's revision, finishes the run when every TI is
 * done, and writes what it learned back to the summary. See ADR.md.
 */
export async function scheduleRun(
  deps: EngineDeps,
  key: DagRunKey,
  context: PassContext,
  request: PassRequest = { reconcile: true },
  attempt: { repaired?: boolean; number?: number } = {},
): Promise<void> {
  const repaired = attempt.repaired ?? false;
  /** Another pass wrote the summary since this one read it: pass again, seeing what it learned. */
  const again = async () => {
    const number = attempt.number ?? 1;
    if (number < SUMMARY_RACE_ATTEMPTS) {
      await scheduleRun(deps, key, context, request, { ...attempt, number: number + 1 });
    } else {
      await requestScheduling(deps, [key]);
    }
  };
  // 72 random bits: unique among the passes that could ever race on one holder, and short,
  // since every slot holder stores it.
  const passId = randomBytes(9).toString('base64url');
  deps.metrics.increment('scheduler.passes');
  const head = await deps.store.getRunHead(key);
  const headReadAt = performance.now();
  if (!head) return;
  let { run } = head;
  if (isFinishedDagRunState(run.state)) {
    // A pass that finished the run and stopped before giving back its slots: give them back now.
    if (Object.keys(head.taskSlots.holders).length > 0) {
      const holders = await deps.store.getTaskInstances(
        Object.values(head.taskSlots.holders).flatMap((holder) => keyOfHolder(holder.id) ?? []),
      );
      await releaseStaleSlots(deps, head, holders, passId, context.poolTurns);
    }
    deps.readiness?.delete(readinessKey(run));
    return;
  }
  const record = await dagRecordOf(deps, context, run.dagId);
  const dag = await deps.dags.get(run.dagId, run.dagVersion);
  // Callbacks the run owed when it finished and a clear made it active again before they were
  // materialized: an active run is not in the owed index, its passes do it (before it finishes again).
  if (run.owedCallbacks && run.owedCallbacks.length > 0 && deps.callbacks) {
    await deps.callbacks.materialize({ run }, run.owedCallbacks, dag).catch((error: unknown) => {
      deps.log.warn('Callbacks a run owes were not materialized; its next pass tries again', {
        ...key,
        error,
      });
    });
  }
  // Deadlines that have come while the run is unfinished, queued or running, paused or not: each
  // is missed once, by a write conditional on it still being pending (see deadlines.ts).
  if (run.deadlines) run = await missDueDeadlines(deps, run, dag);
  const paused = record?.isPaused ?? false;
  if (run.state === 'queued') {
    // Starting is decided on the DAG record as it is now, not as the tick listed it before a pause.
    if (paused || (await deps.store.getDag(run.dagId))?.isPaused) return;
    const started = await startRun(deps, run, dag.maxActiveRuns, passId);
    if (!started) return;
    run = started;
    // The run's timeout wakes a pass; the tick's reconciliation is the backstop if the timer is lost.
    if (dag.dagRunTimeoutMs !== undefined && run.startDate !== null)
      await deps.timers.wakeAt(run, Date.parse(run.startDate) + dag.dagRunTimeoutMs);
    // Its deadlines to come too: the API that creates manual runs has no timers to arm them with
    // (the tick arms the scheduled runs it creates; a second wake-up at the same time is harmless).
    if (run.deadlines) await armDeadlines(deps, run, deps.now());
  }
  const nowMs = deps.now();
  if (
    dag.dagRunTimeoutMs !== undefined &&
    run.state === 'running' &&
    run.startDate !== null &&
    nowMs >= Date.parse(run.startDate) + dag.dagRunTimeoutMs
  ) {
    await timeOutRun(deps, run, dag, dag.dagRunTimeoutMs, nowMs, passId, context.poolTurns);
    return;
  }
  const poolStates = new Map<string, SlotPoolState>();
  const poolAsOf = new Map<string, number>();
  const view = await readPassView(deps.store, head, run, dag, request, {
    nowMs,
    maxReady: paused ? 0 : deps.settings.maxTaskInstancesPerPass,
    poolSizes: deps.settings.pools,
    poolFree: async (pools, ending) => {
      const free = new Map<string, number>();
      for (const pool of pools) {
        const size = deps.settings.pools[pool];
        if (size === undefined) continue;
        let state = poolStates.get(pool);
        if (state === undefined) {
          // As of the last turn before the read, unless one is under way (it may be writing).
          if (context.poolTurns.idle(pool)) poolAsOf.set(pool, context.poolTurns.turn(pool));
          state = await deps.store.getSlotPool(poolRef(pool));
        }
        poolStates.set(pool, state);
        let endingSlots = 0;
        for (const holder of Object.values(state.holders)) {
          if (ending.has(taskIdOfHolder(holder.id))) endingSlots += holder.slots;
        }
        free.set(pool, Math.max(0, size - state.used + endingSlots));
      }
      return free;
    },
  });
  // Zombies and lost workloads first, also for paused DAGs: their slots must not stay taken.
  const reconciled = await reconcileActiveTaskInstances(deps, [...view.fresh.values()], dag, nowMs);
  for (const ti of reconciled.taskInstances) view.fresh.set(taskHolderId(ti), ti);
  // What these TIs owe (reconciliation just ended a try, or an earlier writer died before it
  // materialized) is materialized now rather than after the tick's grace.
  await materializeOwed(deps, run, dag, [...view.fresh.values()]);
  if (reconciled.resend.length > 0) await sendWorkloads(deps, run, reconciled.resend, dag);
  const taskInstances = view.taskInstances.map((ti) => view.fresh.get(taskHolderId(ti)) ?? ti);
  if (paused) {
    await releaseStaleSlots(deps, head, taskInstances, passId, context.poolTurns);
    if ((await writeBackSummary(deps.store, run, view.summary, view.fresh.values())) === 'lost')
      await again();
    return;
  }
  const missing = await evaluate(deps, context, { ...head, run, taskInstances }, view, dag, passId, {
    states: poolStates,
    asOf: poolAsOf,
    headReadAt,
  });
  if ((await writeBackSummary(deps.store, run, view.summary, view.fresh.values())) === 'lost') {
    await again();
    return;
  }
  if (missing.length === 0) return;
  // Its creation may still be writing TIs (a large run takes a while): leave it to its creator,
  // which asks for a pass once done. Only a run older than that is a creation that stopped.
  if (deps.now() - Date.parse(run.queuedAt) < deps.settings.heartbeatTimeoutMs) return;
  if (repaired) {
    deps.log.error('Run still misses task instances after its repair', { ...key, tasks: missing });
    return;
  }
  // A run whose creation stopped half way: its TIs are created with conditional puts, so a
  // creation still in flight keeps its own writes and a TI already queued is never reset.
  deps.log.warn('Run is missing task instances; creating them', { ...key, tasks: missing });
  await createMissing(deps, run, dag, missing);
  await scheduleRun(deps, key, context, { ...request, changed: [] }, { repaired: true });
}

/**
 * A run past its `dagRunTimeout` (Airflow's dagrun_timeout): every unfinished TI is skipped (a
 * running try's worker is refused at its next heartbeat and stops it; a deferred one's trigger is
 * deleted), then the run fails and owes its DAG failure callbacks with the error type
 * `dagrun_timeout`. Each write is conditional, so racing passes and late reports change nothing
 * twice; the TIs' slots are given back at once. The skips owe no task callback, as in Airflow.
 */
async function timeOutRun(
  deps: EngineDeps,
  run: DagRun,
  dag: SerializedDag,
  timeoutMs: number,
  nowMs: number,
  passId: string,
  turns: PoolTurns,
): Promise<void> {
  const snapshot = await deps.store.getRunSnapshot(run);
  if (!snapshot) return;
  const message = `The DAG run did not finish within its dagRunTimeout of ${timeoutMs} ms`;
  const endDate = new Date(nowMs).toISOString();
  const unfinished = snapshot.taskInstances.filter((ti) => !isFinishedTaskInstanceState(ti.state));
  await mapConcurrently(unfinished, WRITE_CONCURRENCY, async (ti) => {
    const skipped = await ignoreConflict(
      deps.store.transitionTaskInstance(
        ti,
        { state: ti.state, tryNumber: ti.tryNumber },
        {
          state: 'skipped',
          endDate,
          heartbeatAt: null,
          errorMessage: message,
          ...(ti.state === 'deferred' ? { triggerId: null, triggerTimeoutAt: null } : {}),
        },
        { owed: [] },
      ),
    );
    if (skipped && ti.state === 'deferred' && typeof ti.triggerId === 'string')
      await deps.store.deleteTrigger(ti.triggerId).catch(() => undefined);
  });
  const after = await deps.store.getRunSnapshot(run);
  if (!after) return;
  // A TI that moved on since the read (a report, an event, another pass) was not skipped: the run
  // fails only once none is left unfinished, so no TI stays queued or up for retry in a failed run.
  const left = after.taskInstances.filter((ti) => !isFinishedTaskInstanceState(ti.state));
  if (left.length > 0) {
    await requestScheduling(deps, [run]);
    return;
  }
  deps.metrics.increment('dag_runs.timed_out');
  deps.log.warn('DAG run timed out', {
    dagId: run.dagId,
    runId: run.runId,
    timeoutMs,
    skipped: unfinished.length,
  });
  await finishRun(deps, after.run, dag, 'failed', nowMs, {
    errorMessage: message,
    errorType: 'dagrun_timeout',
  });
  await releaseStaleSlots(deps, after, after.taskInstances, passId, turns);
}

/** Materializes the callbacks these TIs owe; a failure leaves them to the tick's sweep. */
async function materializeOwed(
  deps: EngineDeps,
  run: DagRun,
  dag: SerializedDag,
  taskInstances: readonly TaskInstance[],
): Promise<void> {
  if (!deps.callbacks) return;
  for (const ti of taskInstances) {
    if (!ti.owedCallbacks || ti.owedCallbacks.length === 0) continue;
    try {
      await deps.callbacks.materialize({ run, ti }, ti.owedCallbacks, dag);
    } catch (error) {
      deps.log.warn('Callbacks owed by a task instance were not materialized; the tick does it', {
        ti: formatTaskInstanceKey(ti),
        error,
      });
    }
  }
}

/** Passes of one run in a row when its summary keeps being written by others meanwhile; then a request. */
const SUMMARY_RACE_ATTEMPTS = 3;

/** The TI of a holder id made by `tryHolderId` (`dag#run#task#mapIndex#try`). */
export function keyOfHolder(id: string): TaskInstanceKey | undefined {
  const [dagId, runId, taskId, mapIndex, tryNumber, ...rest] = id.split('#');
  if (!dagId || !runId || !taskId || mapIndex === undefined || tryNumber === undefined || rest.length > 0)
    return undefined;
  const index = Number(mapIndex);
  return Number.isInteger(index) ? { dagId, runId, taskId, mapIndex: index } : undefined;
}

/**
 * Decides and applies what the run needs now; returns the tasks that have no TI (nothing done
 * then). Only TIs the pass read are queued; every TI it writes joins `view.fresh`.
 */
async function evaluate(
  deps: EngineDeps,
  context: PassContext,
  snapshot: RunSnapshot,
  view: PassView,
  dag: SerializedDag,
  passId: string,
  pools: {
    states: ReadonlyMap<string, SlotPoolState>;
    asOf: ReadonlyMap<string, number>;
    headReadAt: number;
  },
): Promise<string[]> {
  const nowMs = deps.now();
  const { run } = snapshot;
  const evaluation = evaluateRun(dag, run, snapshot.taskInstances, nowMs);
  if (evaluation.missing.length > 0) return evaluation.missing;
  const updated = new Map<string, TaskInstance>();
  const stale: TaskInstanceKey[] = [];
  await mapConcurrently(evaluation.finalize, WRITE_CONCURRENCY, async (change) => {
    const written = await ignoreConflict(
      // The scheduler's own decisions (a trigger rule's skip, upstream_failed) owe nothing, as in
      // Airflow: only a task's own outcome fires its callbacks.
      deps.store.transitionTaskInstance(
        change.key,
        { state: change.from, tryNumber: change.tryNumber },
        { state: change.to, endDate: new Date(nowMs).toISOString() },
        { owed: [] },
      ),
    );
    if (written) updated.set(taskHolderId(written), written);
    else if (!view.fresh.has(taskHolderId(change.key))) stale.push(change.key);
  });
  // A decision taken on a summary entry that had gone stale: read the TI so the summary learns
  // it, and decide nothing more on this evaluation (it assumed the write landed). A TI that does
  // not exist is missing (its creation is in flight, or stopped); one that moved on is looked at
  // again by another pass at once.
  if (stale.length > 0) {
    const found = await deps.store.getTaskInstances(stale);
    for (const ti of found) view.fresh.set(taskHolderId(ti), ti);
    const absent = stale.filter((key) => !view.fresh.has(taskHolderId(key)));
    if (absent.length > 0) return absent.map((key) => key.taskId);
    await requestScheduling(deps, [run]);
    return [];
  }
  for (const ti of updated.values()) view.fresh.set(taskHolderId(ti), ti);
  const taskInstances = snapshot.taskInstances.map((ti) => updated.get(taskHolderId(ti)) ?? ti);

  const review = reviewRunHolders(snapshot.taskSlots, taskInstances, nowMs, deps.settings.heartbeatTimeoutMs);
  const release = await fenceAbandonedReservations(deps, review);
  // Held by a reservation still live, or fenced just now (its revision moved): not this pass's.
  const pending = new Set([
    ...Object.values(snapshot.taskSlots.holders)
      .filter((holder) => !release.includes(holder))
      .map((holder) => taskIdOfHolder(holder.id)),
    ...review.fence.map(taskHolderId),
  ]);
  const starving: StarvingTaskInstance[] = [];
  const candidates: TaskInstance[] = [];
  let unread = 0;
  for (const { ti } of evaluation.ready) {
    if (pending.has(taskHolderId(ti))) continue;
    if (!view.fresh.has(taskHolderId(ti))) {
      unread += 1;
      continue;
    }
    const size = deps.settings.pools[ti.pool];
    if (size === undefined) starving.push({ ti, reason: 'unknown_pool' });
    else if (ti.poolSlots > size) starving.push({ ti, reason: 'pool_too_small' });
    else candidates.push(ti);
  }
  const reservation = await reserveTaskSlots(deps, {
    run,
    maxActiveTasks: dag.maxActiveTasks,
    passId,
    nowMs,
    candidates,
    taskSlots: snapshot.taskSlots,
    release,
    maxToAdmit: deps.settings.maxTaskInstancesPerPass,
    graceMs: deps.settings.heartbeatTimeoutMs,
    poolStates: pools.states,
    poolAsOf: pools.asOf,
    headReadAt: pools.headReadAt,
    turns: context.poolTurns,
  });
  starving.push(...reservation.starving);
  // A TI that no pool can ever admit says why on itself, not only in the log.
  await context.poolWarnings.report(starving, deps.store);
  // Ready TIs left unread (no room for them in this pass) starve like those read and not admitted.
  deps.readiness?.set(readinessKey(run), {
    ready: evaluation.ready.length,
    starving: starving.length + unread,
  });
  const queued = await queueTaskInstances(
    deps,
    run,
    dag,
    reservation.admitted,
    nowMs,
    passId,
    context.poolTurns,
  );
  for (const ti of queued) view.fresh.set(taskHolderId(ti), ti);
  const admittedAll = reservation.admitted.length === candidates.length;
  // Ready TIs this pass did not read although slots were free (over its read limit): another pass.
  const again =
    reservation.incomplete === true ||
    (unread > 0 && admittedAll && candidates.length >= deps.settings.maxTaskInstancesPerPass);
  if (reservation.nudge.length > 0 || again) {
    await requestScheduling(deps, again ? [...reservation.nudge, run] : reservation.nudge);
  }

  if (evaluation.runState) await finishRun(deps, run, dag, evaluation.runState, nowMs);
  else if (evaluation.nextWakeAt) await deps.timers.wakeAt(run, Date.parse(evaluation.nextWakeAt));
  return [];
}

/** Fences TIs whose reservation outlived its grace; returns the holders that may now be released. */
async function fenceAbandonedReservations(
  deps: EngineDeps,
  review: ReturnType<typeof reviewRunHolders>,
): Promise<ReturnType<typeof reviewRunHolders>['release']> {
  const kept = new Set<string>();
  for (const ti of review.fence) if (!(await fence(deps, ti))) kept.add(taskHolderId(ti));
  return review.release.filter((holder) => !kept.has(taskIdOfHolder(holder.id)));
}

async function releaseStaleSlots(
  deps: EngineDeps,
  snapshot: RunHead,
  taskInstances: readonly TaskInstance[],
  passId: string,
  turns: PoolTurns,
): Promise<void> {
  if (Object.keys(snapshot.taskSlots.holders).length === 0) return;
  const review = reviewRunHolders(
    snapshot.taskSlots,
    taskInstances,
    deps.now(),
    deps.settings.heartbeatTimeoutMs,
  );
  const release = await fenceAbandonedReservations(deps, review);
  if (release.length === 0) return;
  await reserveTaskSlots(deps, {
    run: snapshot.run,
    maxActiveTasks: Number.MAX_SAFE_INTEGER,
    passId,
    nowMs: deps.now(),
    candidates: [],
    taskSlots: snapshot.taskSlots,
    release,
    maxToAdmit: 0,
    graceMs: deps.settings.heartbeatTimeoutMs,
    // In the batch's turns, as every pass's pool writes are.
    turns,
  });
}

function dagRecordOf(deps: EngineDeps, context: PassContext, dagId: string) {
  let record = context.dagRecords.get(dagId);
  if (!record) {
    record = deps.store.getDag(dagId);
    context.dagRecords.set(dagId, record);
    // A failed read is not shared: the next pass reads again.
    record.catch(() => context.dagRecords.delete(dagId));
  }
  return record;
}

async function createMissing(deps: EngineDeps, run: DagRun, dag: SerializedDag, taskIds: string[]) {
  const tasks = dag.tasks.filter((task) => taskIds.includes(task.taskId));
  await deps.store.createMissingTaskInstances(
    tasks.map((task) =>
      newTaskInstance({ dagId: run.dagId, runId: run.runId, taskId: task.taskId, mapIndex: -1 }, task),
    ),
  );
}

/**
 * Tasks that start in a trigger (Airflow's start_from_trigger): the new try goes straight to
 * `deferred` on its start trigger, with no workload and no worker; it resumes on a worker (or
 * ends from the trigger) when the trigger fires. The slots the pass reserved are given back at once.
 */
async function deferAtStart(
  deps: EngineDeps,
  run: DagRun,
  dag: SerializedDag,
  tis: TaskInstance[],
  nowMs: number,
  passId: string,
  turns: PoolTurns,
): Promise<void> {
  const nowIso = new Date(nowMs).toISOString();
  await mapConcurrently(tis, WRITE_CONCURRENCY, async (ti) => {
    const task = dag.tasks.find((t) => t.taskId === ti.taskId);
    const start = task?.startTrigger;
    if (!task || !start) return;
    const tryNumber = ti.tryNumber + 1;
    const triggerId = triggerIdOf(ti, tryNumber, 1);
    const timeoutAt = deferralTimeoutAt(nowMs, start.timeoutMs, nowIso, task.executionTimeoutMs);
    await deps.store.putTrigger({
      triggerId,
      name: start.name,
      kwargs: start.kwargs,
      queue: start.queue ?? DEFAULT_TRIGGER_QUEUE,
      ti: taskInstanceKeyOf(ti),
      tryNumber,
      deferralSeq: 1,
      createdAt: nowIso,
      timeoutAt,
      jobId: null,
      claimedAt: null,
      revision: 0,
    });
    const deferred = await ignoreConflict(
      deps.store.transitionTaskInstance(
        ti,
        { state: ti.state, tryNumber: ti.tryNumber, revision: ti.revision },
        {
          state: 'deferred',
          tryNumber,
          queuedAt: nowIso,
          startDate: nowIso,
          endDate: null,
          durationMs: null,
          nextRetryAt: null,
          heartbeatAt: null,
          errorMessage: null,
          deferralSeq: 1,
          nextMethod: start.nextMethod,
          nextKwargs: start.nextKwargs,
          nextEvent: null,
          nextEventAt: null,
          triggerId,
          triggerTimeoutAt: timeoutAt,
          tryStartedAt: nowIso,
        },
        // The new try begins here, in its trigger: it owes what a start on a worker would.
        { owed: owedOnTask(task, { to: 'running', tryNumber, atMs: nowMs, newTry: true }) },
      ),
    );
    // Lost to another pass (which may have deferred the TI on this very trigger id) or to a change
    // of the TI: the trigger is left alone. One nothing waits on is deleted at its triggerer's next call.
    if (deferred) {
      deps.metrics.increment('ti.deferred');
      await materializeOwed(deps, run, dag, [deferred]);
    }
  });
  await releaseOwned(
    deps,
    tis.flatMap((ti) => [
      { ref: runTasksRef(run), id: nextHolderId(ti), passId },
      { ref: poolRef(ti.pool), id: nextHolderId(ti), passId },
    ]),
    turns,
  );
}

/**
 * none/scheduled/up_for_retry → queued with the next try number, each write conditional on the
 * TI's revision as the pass read it, so a TI that changed since (or was fenced after its
 * reservation was given up) is left alone. Written a batch at a time and sent as soon as each
 * batch is written, so workers start on the first TIs while the rest are still being written.
 */
async function queueTaskInstances(
  deps: EngineDeps,
  run: DagRun,
  dag: SerializedDag,
  admitted: TaskInstance[],
  nowMs: number,
  passId: string,
  turns: PoolTurns,
): Promise<TaskInstance[]> {
  const queuedAt = new Date(nowMs).toISOString();
  const written: TaskInstance[] = [];
  const startTriggerOf = (ti: TaskInstance) =>
    isResuming(ti) ? undefined : dag.tasks.find((task) => task.taskId === ti.taskId)?.startTrigger;
  const inTrigger = admitted.filter((ti) => startTriggerOf(ti) !== undefined);
  if (inTrigger.length > 0) {
    await deferAtStart(deps, run, dag, inTrigger, nowMs, passId, turns);
    admitted = admitted.filter((ti) => startTriggerOf(ti) === undefined);
  }
  for (let start = 0; start < admitted.length; start += WRITE_CONCURRENCY) {
    const batch = admitted.slice(start, start + WRITE_CONCURRENCY);
    const results = await Promise.all(
      batch.map((ti) =>
        ignoreConflict(
          deps.store.transitionTaskInstance(
            ti,
            { state: ti.state, tryNumber: ti.tryNumber, revision: ti.revision },
            isResuming(ti)
              ? // The same try comes back from its deferral: it keeps its start and deferral state.
                { state: 'queued', queuedAt, queuedSends: 1, queuedByPass: passId, heartbeatAt: null }
              : {
                  state: 'queued',
                  tryNumber: nextTryNumberOf(ti),
                  queuedAt,
                  queuedSends: 1,
                  queuedByPass: passId,
                  startDate: null,
                  endDate: null,
                  durationMs: null,
                  nextRetryAt: null,
                  heartbeatAt: null,
                  errorMessage: null,
                  ...forgetDeferral(ti),
                },
          ),
        ),
      ),
    );
    const queued = results.filter((ti): ti is TaskInstance => ti !== undefined);
    const lost = batch.filter((_, index) => results[index] === undefined);
    if (lost.length > 0) {
      await releaseOwned(
        deps,
        lost.flatMap((ti) => [
          { ref: runTasksRef(run), id: nextHolderId(ti), passId },
          { ref: poolRef(ti.pool), id: nextHolderId(ti), passId },
        ]),
        turns,
      );
    }
    deps.metrics.increment('ti.scheduled', queued.length);
    written.push(...queued);
    await sendWorkloads(deps, run, queued, dag);
  }
  return written;
}

async function sendWorkloads(
  deps: EngineDeps,
  run: DagRun,
  tis: readonly TaskInstance[],
  dag: SerializedDag,
) {
  try {
    await new WorkloadSender(deps).send(run, tis, dag);
  } catch (error) {
    // The TIs stay queued; the queued timeout sends their workloads again.
    deps.log.warn('Sending task workloads failed; they are sent again after the queued timeout', {
      runId: run.runId,
      count: tis.length,
      error,
    });
  }
}

async function finishRun(
  deps: EngineDeps,
  run: DagRun,
  dag: SerializedDag,
  state: 'success' | 'failed',
  nowMs: number,
  why?: { errorMessage: string; errorType: CallbackErrorType },
) {
  const endDate = new Date(nowMs).toISOString();
  // DAG callbacks are owed here whatever ran the tasks; a run finishing again after a clear
  // (a new clear count) owes them anew.
  const owed = owedOnRunFinish(dag, {
    to: state,
    clearCount: run.clearCount,
    atMs: nowMs,
    ...(state === 'failed'
      ? (why ?? {
          errorMessage: 'A task of the run failed (its upstream_failed or failed leaves decide the run)',
          errorType: 'upstream' as const,
        })
      : {}),
  });
  // Its pending deadlines are decided by the same write: met, or missed (owing their callbacks)
  // when their time came before this pass saw it.
  const deadlines = deadlinesOnFinish(run, nowMs);
  for (const decided of deadlines) {
    if (decided.state === 'missed')
      owed.push(...owedOnDeadlineMissed(dag, decided.deadline, { clearCount: run.clearCount, atMs: nowMs }));
  }
  // What the run still owes as read (a missed deadline's callbacks whose materializing failed) is
  // owed again, so the finished run goes to the owed index rather than out of every index with
  // them; materializing an element twice makes nothing twice.
  owed.push(...(run.owedCallbacks ?? []));
  // Conditional on the clears seen (a clear since this pass's read keeps the run going), and on
  // the deadlines it decides being still pending.
  const finished = await ignoreConflict(
    deps.store.transitionDagRun(
      run,
      { state: 'running', clearCount: run.clearCount },
      { state, endDate },
      {
        owed,
        ...(deadlines.length === 0
          ? {}
          : { deadlines: deadlines.map(({ position, state: decided }) => ({ position, state: decided })) }),
      },
    ),
  );
  if (!finished) {
    // A racing pass may have missed one of its deadlines: pass again to finish the run.
    if (deadlines.length > 0) await requestScheduling(deps, [run]);
    return;
  }
  for (const decided of deadlines) deps.metrics.increment(`deadlines.${decided.state}`);
  if (finished.owedCallbacks && deps.callbacks) {
    await deps.callbacks
      .materialize({ run: finished }, finished.owedCallbacks, dag)
      .catch((error: unknown) => {
        deps.log.warn('Callbacks of a finished run were not materialized; the tick does it', {
          dagId: run.dagId,
          runId: run.runId,
          error,
        });
      });
  }
  deps.readiness?.delete(readinessKey(run));
  deps.metrics.increment(`dag_runs.${state}`);
  deps.log.info(`DAG run ${state}`, { dagId: run.dagId, runId: run.runId });
  await releaseRunSlot(deps, run, endDate);
  // A place under max_active_runs is free: ask for the DAG's queued runs to be scheduled now.
  const active = await deps.store.listActiveDagRuns({ limit: 25, dagId: run.dagId });
  const queued = active.items.filter((item) => item.state === 'queued').slice(0, 10);
  if (queued.length > 0) await requestScheduling(deps, queued);
}

/** Executable and starving TIs over the runs this process evaluated last (Airflow's gauges). */
export function readinessGauges(readiness: EngineDeps['readiness']): Record<string, number> {
  let executable = 0;
  let starving = 0;
  for (const run of readiness?.values() ?? []) {
    executable += run.ready;
    starving += run.starving;
  }
  return { 'scheduler.tasks.executable': executable, 'scheduler.tasks.starving': starving };
}

function readinessKey(run: DagRunKey): string {
  return `${run.dagId}\u0000${run.runId}`;
}
