import { dagGraphOf } from './dag-graph.ts';
import { type DagRun, newTaskInstance, type TaskInstance, type TaskInstanceKey } from './models.ts';
import type { SerializedDag } from './serialized-dag.ts';
import { isFinishedTaskInstanceState, type TaskInstanceState } from './states.ts';

/**
 * What a scheduling pass needs to know of a task instance it does not read: its state, its try,
 * when a retry comes due, and which tasks a branch followed. Kept per task in the run's summary
 * item, so a pass reads one item plus the few TIs it acts on, whatever the run's size.
 */
export interface SummaryEntry {
  state: TaskInstanceState;
  tryNumber: number;
  nextRetryAt?: string;
  followTaskIds?: string[];
}

/**
 * The per-task state summary of one run. It is a cache of the TI items, never the truth: a pass
 * acts only on TIs it has just read, and every write stays conditional on the TI itself. It can
 * lag (a writer stopped between the TI write and the summary write, or the change was made by the
 * API); entries in active states are read again by the tick, and entries a pass wants to act on
 * are read before it acts. It can never show a finished state a TI has left without a clear, and
 * a clear bumps the run's `clearCount`, which makes a summary of an older count void (rebuilt from
 * the TIs). See `src/engine/ADR.md`.
 */
export interface RunSummary {
  /** The run's `clearCount` this summary is valid for. */
  clearCount: number;
  /**
   * Bumped by every write: a pass writes back only onto the version it read, so of two passes
   * that each learned one change, the second sees the first's (it evaluates again) and no
   * decision that needs both (finishing the run, a join) is left to the tick.
   */
  version: number;
  tasks: Record<string, SummaryEntry>;
}

const ACTIVE_STATES: ReadonlySet<TaskInstanceState> = new Set(['queued', 'running', 'deferred']);

/** The summary's entry of a task; only its own keys (a task id like `constructor` is not inherited). */
export function entryOf(summary: RunSummary, taskId: string): SummaryEntry | undefined {
  return Object.hasOwn(summary.tasks, taskId) ? summary.tasks[taskId] : undefined;
}

export function isActiveEntry(entry: SummaryEntry): boolean {
  return ACTIVE_STATES.has(entry.state);
}

/** Unmapped TIs only: mapped TIs are not part of a run's snapshot yet. */
export function summaryEntryOf(ti: TaskInstance): SummaryEntry {
  return {
    state: ti.state,
    tryNumber: ti.tryNumber,
    ...(ti.state === 'up_for_retry' && ti.nextRetryAt !== null ? { nextRetryAt: ti.nextRetryAt } : {}),
    ...(ti.followTaskIds !== null && isFinishedTaskInstanceState(ti.state)
      ? { followTaskIds: [...ti.followTaskIds] }
      : {}),
  };
}

export function summaryOf(clearCount: number, taskInstances: readonly TaskInstance[]): RunSummary {
  const tasks: Record<string, SummaryEntry> = {};
  for (const ti of taskInstances) if (ti.mapIndex === -1) tasks[ti.taskId] = summaryEntryOf(ti);
  return { clearCount, version: 0, tasks };
}

export function sameEntry(a: SummaryEntry | undefined, b: SummaryEntry): boolean {
  return (
    a !== undefined &&
    a.state === b.state &&
    a.tryNumber === b.tryNumber &&
    a.nextRetryAt === b.nextRetryAt &&
    JSON.stringify(a.followTaskIds ?? null) === JSON.stringify(b.followTaskIds ?? null)
  );
}

/** The entries of `taskInstances` that differ from `summary`: what a pass writes back. */
export function changedEntries(
  summary: RunSummary,
  taskInstances: Iterable<TaskInstance>,
): Record<string, SummaryEntry> {
  const changes: Record<string, SummaryEntry> = {};
  for (const ti of taskInstances) {
    if (ti.mapIndex !== -1) continue;
    const entry = summaryEntryOf(ti);
    if (!sameEntry(entryOf(summary, ti.taskId), entry)) changes[ti.taskId] = entry;
  }
  return changes;
}

/** The revision of a stand-in TI known only from the summary (a stored TI's is never negative). */
export const SUMMARY_ONLY_REVISION = -1;

/**
 * A stand-in TI for a task the pass did not read, carrying only what the summary knows. Good for
 * evaluating trigger rules and the run's state; never written (its revision is unknown).
 */
export function taskInstanceFromSummary(
  dag: SerializedDag,
  run: Pick<DagRun, 'dagId' | 'runId'>,
  taskId: string,
  entry: SummaryEntry,
): TaskInstance | undefined {
  const task = dagGraphOf(dag).tasks.get(taskId);
  if (!task) return undefined;
  const key: TaskInstanceKey = { dagId: run.dagId, runId: run.runId, taskId, mapIndex: -1 };
  return {
    ...newTaskInstance(key, task),
    state: entry.state,
    tryNumber: entry.tryNumber,
    nextRetryAt: entry.nextRetryAt ?? null,
    followTaskIds: entry.followTaskIds ?? null,
    revision: SUMMARY_ONLY_REVISION,
  };
}
