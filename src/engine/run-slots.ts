import type { DagRun, DagRunKey } from '#core/models.ts';
import { isFinishedDagRunState } from '#core/states.ts';
import { ConditionFailedError } from '#store/errors.ts';
import type { RunStore, SchedulingStateStore, SlotHolder, SlotPoolRef, SlotPoolState } from '#store/port.ts';
import { SLOT_POOL_ENTRIES_PER_UPDATE } from '#store/slot-pool-update.ts';
import type { Logger } from './logger.ts';

const UPDATE_ATTEMPTS = 5;

export interface RunSlotDeps {
  store: SchedulingStateStore & RunStore;
  log: Logger;
  now: () => number;
}

export function dagRunsRef(dagId: string): SlotPoolRef {
  return { kind: 'dag_runs', dagId };
}

/**
 * queued → running under the DAG's `max_active_runs`, counted in the DAG's run-slot item: the run
 * first takes a holder there (a conditional write, exact under any concurrency), then moves to
 * running. A holder whose run never started (the pass stopped in between) is found by the run's
 * next pass, which starts it; one taken at an older clear count (before a clear queued the run
 * again) is released and taken anew, and the start is conditional on the clear count read;
 * holders of runs that finished without giving theirs back are released here when the item is
 * full. Returns the started run, or undefined when it stays queued.
 */
export async function startRun(
  deps: RunSlotDeps,
  run: DagRun,
  maxActiveRuns: number,
  passId: string,
): Promise<DagRun | undefined> {
  const ref = dagRunsRef(run.dagId);
  for (let attempt = 1; attempt <= UPDATE_ATTEMPTS; attempt += 1) {
    const state = await deps.store.getSlotPool(ref);
    const held = state.holders[run.runId];
    if (held && held.tryNumber < run.clearCount) {
      // Taken for an earlier start, before a clear queued the finished run again: the late
      // release of that finish would take it from this start. It goes, and this start takes its own.
      // A holder of a later clear count belongs to a pass that read the run after this one: it
      // stays, and this pass's start (conditional on the clear count it read) is refused.
      try {
        await giveBack(deps, ref, [held]);
      } catch (error) {
        if (!(error instanceof ConditionFailedError)) throw error;
      }
      continue;
    }
    if (!held) {
      if (state.used >= maxActiveRuns) {
        if ((await releaseFinishedRunHolders(deps, run.dagId, state)) === 0) return undefined;
        continue;
      }
      try {
        await deps.store.updateSlotPool(ref, {
          size: maxActiveRuns,
          acquire: [
            // The run's clear count: which start of the run the holder was taken for.
            {
              id: run.runId,
              slots: 1,
              tryNumber: run.clearCount,
              passId,
              at: new Date(deps.now()).toISOString(),
            },
          ],
          release: [],
        });
      } catch (error) {
        if (!(error instanceof ConditionFailedError)) throw error;
        continue;
      }
    }
    try {
      // At the clear count the holder names: a pass that read the run before a clear cannot
      // start it on a holder that the clear's next start gives back.
      return await deps.store.transitionDagRun(
        run,
        { state: 'queued', clearCount: run.clearCount },
        { state: 'running', startDate: new Date(deps.now()).toISOString() },
      );
    } catch (error) {
      // Started by another pass meanwhile (its holder is this one), no longer queued, or cleared since.
      if (error instanceof ConditionFailedError) return undefined;
      throw error;
    }
  }
  return undefined;
}

/**
 * Gives back a finished run's place under `max_active_runs`. Only a holder taken before the run
 * finished (at the clear count it finished at, or an earlier one) is released: one taken since
 * belongs to the run's next start after a clear.
 */
export async function releaseRunSlot(
  deps: RunSlotDeps,
  run: DagRunKey & { clearCount: number },
  finishedAt: string,
): Promise<void> {
  const ref = dagRunsRef(run.dagId);
  for (let attempt = 1; attempt <= UPDATE_ATTEMPTS; attempt += 1) {
    const holder = (await deps.store.getSlotPool(ref)).holders[run.runId];
    if (!holder || holder.at > finishedAt || holder.tryNumber > run.clearCount) return;
    try {
      await giveBack(deps, ref, [holder]);
      return;
    } catch (error) {
      if (!(error instanceof ConditionFailedError)) throw error;
    }
  }
}

/** Releases holders whose run finished or no longer exists; returns how many were released. */
async function releaseFinishedRunHolders(
  deps: RunSlotDeps,
  dagId: string,
  state: SlotPoolState,
): Promise<number> {
  const ref = dagRunsRef(dagId);
  const stale: SlotHolder[] = [];
  // A bounded number per call (one update's worth): the rest are found by the next pass.
  for (const holder of Object.values(state.holders)) {
    if (stale.length >= SLOT_POOL_ENTRIES_PER_UPDATE) break;
    const held = await deps.store.getDagRun({ dagId, runId: holder.id });
    if (!held || isFinishedDagRunState(held.state)) stale.push(holder);
  }
  if (stale.length === 0) return 0;
  try {
    await giveBack(deps, ref, stale);
    deps.log.info('Released places under max_active_runs held by finished runs', {
      dagId,
      runs: stale.map((holder) => holder.id),
    });
    return stale.length;
  } catch (error) {
    if (error instanceof ConditionFailedError) return 1; // Changed meanwhile: read it again.
    throw error;
  }
}

/** Gives the holders' places back in one conditional update (each release names its pass and slots). */
function giveBack(deps: RunSlotDeps, ref: SlotPoolRef, holders: readonly SlotHolder[]): Promise<unknown> {
  return deps.store.updateSlotPool(ref, {
    size: 0,
    acquire: [],
    release: holders.map(({ id, passId, slots }) => ({ id, passId, slots })),
  });
}
