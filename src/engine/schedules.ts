import { latestFireAtOrBefore, nextFireAfter } from '#core/schedule.ts';
import type { SerializedDag } from '#core/serialized-dag.ts';
import { ConditionFailedError } from '#store/errors.ts';
import type { DagRecord, Store } from '#store/port.ts';
import type { DagVersionCache } from './dag-cache.ts';
import { StateConflictError } from './errors.ts';
import type { Logger } from './logger.ts';
import type { WakeTimers } from './ports.ts';
import { createDagRun } from './runs.ts';

interface DueRunDeps {
  store: Store;
  dags: DagVersionCache;
  log: Logger;
  now: () => number;
  /** Wake-ups at the new runs' deadlines; without, they are armed when the runs start. */
  timers?: WakeTimers;
}

/** At most this many catch-up runs are created for one DAG in one tick. */
const MAX_CATCHUP_RUNS_PER_TICK = 10;

/**
 * The first logical date a DAG's schedule fires at: at or after its start date, or after now
 * when it has none. Stored as the DAG's `nextRunAt` when it is first seen or its schedule changes.
 */
export function firstRunAt(dag: SerializedDag, nowMs: number): string | null {
  if (!dag.schedule) return null;
  const from = dag.startDate ?? new Date(nowMs).toISOString();
  const justBefore = new Date(Date.parse(from) - 1).toISOString();
  return nextFireAfter(dag.schedule, justBefore, dag.startDate);
}

/**
 * Creates the scheduled runs that are due, Airflow-style: with `catchup` every missed logical
 * date since `nextRunAt` (bounded per tick and by max active runs), without it only the latest
 * one. The DAG's `nextRunAt` advances with a write conditional on its revision, and run ids are
 * derived from the logical date, so two ticks never create the same run twice.
 */
export async function createDueRuns(
  deps: DueRunDeps,
  records: DagRecord[],
): Promise<{ updatedDags: DagRecord[] }> {
  const nowMs = deps.now();
  const updatedDags: DagRecord[] = [];
  for (const record of records) {
    if (record.isPaused || !record.isActive || !record.nextRunAt || Date.parse(record.nextRunAt) > nowMs)
      continue;
    try {
      const updated = await createDueRunsOfDag(deps, record, nowMs);
      if (updated) updatedDags.push(updated);
    } catch (error) {
      deps.log.error('Creating scheduled runs failed', { dagId: record.dagId, error });
    }
  }
  return { updatedDags };
}

async function createDueRunsOfDag(
  deps: DueRunDeps,
  record: DagRecord,
  nowMs: number,
): Promise<DagRecord | undefined> {
  const dag = await deps.dags.get(record.dagId, record.versionHash);
  const schedule = dag.schedule;
  if (!schedule || !record.nextRunAt) return undefined;
  const active = await deps.store.listActiveDagRuns({ limit: dag.maxActiveRuns + 1, dagId: dag.dagId });
  let room = dag.maxActiveRuns - active.items.length;
  if (room <= 0) return undefined;

  const isDue = (at: string) => Date.parse(at) <= nowMs && (!dag.endDate || at <= dag.endDate);
  const due: string[] = [];
  let next: string | null = record.nextRunAt;
  if (dag.catchup) {
    const take = Math.min(room, MAX_CATCHUP_RUNS_PER_TICK);
    while (next && due.length < take && isDue(next)) {
      due.push(next);
      next = nextFireAfter(schedule, next, dag.startDate);
    }
  } else if (isDue(next)) {
    // Only the latest missed date runs: jump to it rather than walking every date since
    // nextRunAt, which for a frequent cron and an old start date blocks the scheduler for seconds.
    const until =
      dag.endDate && Date.parse(dag.endDate) < nowMs ? dag.endDate : new Date(nowMs).toISOString();
    const latest = latestFireAtOrBefore(schedule, until, dag.startDate);
    const logicalDate = latest !== null && latest > next ? latest : next;
    due.push(logicalDate);
    next = nextFireAfter(schedule, logicalDate, dag.startDate);
  }
  for (const logicalDate of due) {
    if (room <= 0) break;
    try {
      await createDagRun(
        deps.store,
        {
          dag,
          versionHash: record.versionHash,
          runType: 'scheduled',
          logicalDate,
          // The interval a run covers ends at its logical date and starts at the fire time before it.
          dataIntervalStart:
            latestFireAtOrBefore(
              schedule,
              new Date(Date.parse(logicalDate) - 1).toISOString(),
              dag.startDate,
            ) ?? logicalDate,
          dataIntervalEnd: logicalDate,
          now: new Date(nowMs).toISOString(),
          confMaxBytes: Number.POSITIVE_INFINITY,
        },
        deps.timers ? { timers: deps.timers, log: deps.log } : undefined,
      );
      deps.log.info('Created scheduled run', { dagId: dag.dagId, logicalDate });
      room -= 1;
    } catch (error) {
      if (!(error instanceof StateConflictError)) throw error;
    }
  }
  try {
    return await deps.store.updateDag(dag.dagId, { nextRunAt: next }, record.revision);
  } catch (error) {
    if (error instanceof ConditionFailedError) return undefined;
    throw error;
  }
}
