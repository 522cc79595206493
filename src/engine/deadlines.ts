import { encodeOwed } from '#core/callbacks.ts';
import {
  callbacksOwedOnDeadlineMissed,
  DEADLINE_HISTORY_RUNS_MAX,
  dueDeadlines,
  historyNeeded,
  nextDeadlineAtMs,
  pendingDeadlines,
  runDeadlinesOf,
} from '#core/deadlines.ts';
import type { DagRun, DagRunKey, RunDeadline } from '#core/models.ts';
import type { SerializedDag } from '#core/serialized-dag.ts';
import type { Metrics } from '#metrics/port.ts';
import { ConditionFailedError } from '#store/errors.ts';
import type { RunStore } from '#store/port.ts';
import type { CallbackService } from './callbacks.ts';
import type { Logger } from './logger.ts';
import type { WakeTimers } from './ports.ts';

/**
 * Deadlines of runs (see `core/deadlines.ts`) as the engine keeps them: fixed on the run item when
 * the run is created, armed as wake-ups of the run, and decided once each by a conditional write
 * on the run, which owes a missed deadline's callbacks in the same request.
 */

/** Runs of the DAG one history read asks for at a time. */
const HISTORY_PAGE = 100;

/**
 * The deadlines of a run about to be created, each at its time (undefined when the DAG has none,
 * or none can be armed). An average-duration deadline reads the DAG's latest runs, newest first.
 */
export async function deadlinesOfNewRun(
  store: Pick<RunStore, 'listDagRuns'>,
  dag: Pick<SerializedDag, 'dagId' | 'deadlines'>,
  run: Pick<DagRun, 'logicalDate' | 'queuedAt'>,
): Promise<RunDeadline[] | undefined> {
  if (!dag.deadlines || dag.deadlines.length === 0) return undefined;
  const needed = historyNeeded(dag.deadlines);
  const history: DagRun[] = [];
  if (needed > 0) {
    let succeeded = 0;
    let cursor: string | undefined;
    do {
      const page = await store.listDagRuns(dag.dagId, {
        // Pages sized for what is needed: run items are whole (with their conf) in this index.
        limit: Math.min(HISTORY_PAGE, Math.max(2 * needed, 10), DEADLINE_HISTORY_RUNS_MAX - history.length),
        ...(cursor === undefined ? {} : { cursor }),
      });
      history.push(...page.items);
      succeeded += page.items.filter((item) => item.state === 'success').length;
      cursor = page.nextCursor;
    } while (cursor !== undefined && succeeded < needed && history.length < DEADLINE_HISTORY_RUNS_MAX);
  }
  const deadlines = runDeadlinesOf(dag.deadlines, run, history);
  return deadlines.length === 0 ? undefined : deadlines;
}

export interface DeadlineDeps {
  store: Pick<RunStore, 'transitionDagRun' | 'getDagRun'>;
  timers: WakeTimers;
  metrics: Metrics;
  log: Logger;
  now: () => number;
  callbacks?: Pick<CallbackService, 'materialize'>;
}

/**
 * Wake-ups at the run's pending deadlines (those after `afterMs`). A wake-up is a hint (the tick's
 * passes check every active run's deadlines too): one that cannot be set is logged, not thrown.
 */
export async function armDeadlines(
  deps: Pick<DeadlineDeps, 'timers' | 'log'>,
  run: DagRunKey & Pick<DagRun, 'deadlines'>,
  afterMs = Number.NEGATIVE_INFINITY,
): Promise<void> {
  const times = new Set(
    pendingDeadlines(run)
      .map(({ deadline }) => Date.parse(deadline.at))
      .filter((atMs) => atMs > afterMs),
  );
  for (const atMs of [...times].sort((a, b) => a - b)) await wakeAt(deps, run, atMs);
}

async function wakeAt(deps: Pick<DeadlineDeps, 'timers' | 'log'>, run: DagRunKey, atMs: number) {
  try {
    await deps.timers.wakeAt(run, atMs);
  } catch (error) {
    deps.log.warn('A wake-up at a deadline of the run could not be set; the tick checks it', {
      dagId: run.dagId,
      runId: run.runId,
      at: new Date(atMs).toISOString(),
      error,
    });
  }
}

/** What a missed deadline owes, encoded for the store. */
export function owedOnDeadlineMissed(
  dag: Pick<SerializedDag, 'deadlines'>,
  deadline: RunDeadline,
  change: { clearCount: number; atMs: number },
): string[] {
  return callbacksOwedOnDeadlineMissed(dag.deadlines?.[deadline.index], deadline, {
    clearCount: change.clearCount,
    at: new Date(change.atMs).toISOString(),
  }).map(encodeOwed);
}

/** How often a deadline's miss is tried again after a racing write (a clear) changed the run. */
const MISS_ATTEMPTS = 3;
/** When a pass gave up on a miss (clears kept racing it), the run's next pass comes this much later. */
const DEADLINE_RETRY_DELAY_MS = 1_000;

/**
 * Misses one due deadline: an UpdateItem conditional on the run being unfinished at the clear count
 * it was read at, so that what it owes carries the run's clear count when it is missed. A clear
 * between the read and the write fails the condition: the run is read again and the miss tried
 * again while the deadline is still pending. Returns the run as it now is and whether this pass
 * missed the deadline, or undefined when the run is gone.
 */
async function missOne(
  deps: DeadlineDeps,
  run: DagRun,
  dag: SerializedDag,
  position: number,
  deadline: RunDeadline,
  nowMs: number,
): Promise<{ run: DagRun; missed: boolean; gaveUp?: boolean } | undefined> {
  const stillDue = (current: DagRun) =>
    current.deadlines?.[position]?.state === 'pending' &&
    (current.state === 'queued' || current.state === 'running');
  let current = run;
  for (let attempt = 0; attempt < MISS_ATTEMPTS; attempt++) {
    if (!stillDue(current)) break;
    const owed = owedOnDeadlineMissed(dag, deadline, { clearCount: current.clearCount, atMs: nowMs });
    try {
      const missed = await deps.store.transitionDagRun(
        current,
        { state: ['queued', 'running'], clearCount: current.clearCount },
        {},
        { owed, deadlines: [{ position, state: 'missed' }] },
      );
      return { run: missed, missed: true };
    } catch (error) {
      if (!(error instanceof ConditionFailedError)) throw error;
      // Decided by another pass, finished, or cleared meanwhile: read what it is now.
      const fresh = await deps.store.getDagRun(run);
      if (!fresh) return undefined;
      current = fresh;
    }
  }
  return { run: current, missed: false, gaveUp: stillDue(current) };
}

/**
 * A pass over an unfinished run: each pending deadline that has come is missed by one UpdateItem
 * conditional on the run being unfinished at the clear count read and the deadline still pending,
 * which adds what it owes to the run's owed set; a racing pass's write, or the run's finish, makes
 * it change nothing, and a racing clear makes it read the run and try again (see `missOne`). The
 * callbacks are then materialized (an error leaves them to the run's next pass), and a wake-up is
 * set at the next deadline to come. Returns the run as it now is.
 */
export async function missDueDeadlines(deps: DeadlineDeps, run: DagRun, dag: SerializedDag): Promise<DagRun> {
  const nowMs = deps.now();
  const due = dueDeadlines(run, nowMs);
  if (due.length === 0) return run;
  let current = run;
  let missed = 0;
  let gaveUp = false;
  for (const { position, deadline } of due) {
    const decided = await missOne(deps, current, dag, position, deadline, nowMs);
    if (decided === undefined) return current;
    current = decided.run;
    if (decided.gaveUp) {
      gaveUp = true;
      deps.metrics.increment('deadlines.miss_deferred');
      deps.log.warn(
        "A DAG run's deadline came while clears kept changing the run; the run's next pass misses it",
        {
          dagId: run.dagId,
          runId: run.runId,
          deadline: deadline.index,
          at: deadline.at,
        },
      );
    }
    if (!decided.missed) continue;
    missed += 1;
    deps.metrics.increment('deadlines.missed');
    deps.log.warn('DAG run missed a deadline', {
      dagId: run.dagId,
      runId: run.runId,
      deadline: deadline.index,
      reference: deadline.reference,
      at: deadline.at,
    });
  }
  const retryAtMs = gaveUp ? nowMs + DEADLINE_RETRY_DELAY_MS : undefined;
  if (missed === 0) {
    if (retryAtMs !== undefined) await wakeAt(deps, current, retryAtMs);
    return current;
  }
  if (deps.callbacks && current.owedCallbacks && current.owedCallbacks.length > 0) {
    try {
      await deps.callbacks.materialize({ run: current }, current.owedCallbacks, dag);
      // Settled by the materializing: the rest of the pass need not owe them again.
      const { owedCallbacks: _settled, ...settled } = current;
      current = settled;
    } catch (error) {
      deps.log.warn("Callbacks of a missed deadline were not materialized; the run's next pass does it", {
        dagId: run.dagId,
        runId: run.runId,
        error,
      });
    }
  }
  // The wake-up that brought this pass may have been the only one set (standalone keeps one per run).
  const next = Math.min(
    nextDeadlineAtMs(current, nowMs) ?? Number.POSITIVE_INFINITY,
    retryAtMs ?? Number.POSITIVE_INFINITY,
  );
  if (Number.isFinite(next)) await wakeAt(deps, current, next);
  return current;
}
