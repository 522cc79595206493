import * as z from 'zod';
import { type Callback, callbackRefSchema, OWED_ERROR_MAX_CHARS, type OwedCallback } from './callbacks.ts';
import { formatDuration } from './duration.ts';
import type { DagRun, DeadlineReference, RunDeadline } from './models.ts';

/**
 * Deadline alerts: a DAG declares that each of its runs must finish by a time computed when the
 * run is created (within a duration of its logical date or of when it was queued, by a fixed time,
 * or within a multiple of the DAG's average run duration), with callbacks for when it does not.
 *
 * A run keeps its deadlines on its own item (`DagRun.deadlines`), each `pending` until decided
 * once: `missed` by the first scheduling pass that sees it due while the run is unfinished, or, when
 * the run finishes first, `met` (or `missed`, for one that came due and was not seen yet) by the
 * run's finishing write. Each decision is a write conditional on the deadline still being pending,
 * and a missed deadline owes its callbacks in that same write, so they are owed exactly once.
 */

/** Most deadlines one DAG may declare (each is kept on every run item). */
export const DEADLINES_PER_DAG_MAX = 10;
/** Longest `within` duration of a deadline: 366 days. */
export const DEADLINE_WITHIN_MAX_MS = 366 * 86_400_000;
/** Largest multiple of the average run duration a deadline may allow. */
export const DEADLINE_TIMES_MAX = 100;
/** Succeeded runs an average-duration deadline averages over unless it says (`over`), and the most it may say. */
export const DEADLINE_OVER_DEFAULT = 10;
export const DEADLINE_OVER_MAX = 100;
/**
 * Newest runs of the DAG read at most to find the succeeded runs an average needs: a DAG whose
 * recent runs mostly failed averages over the succeeded ones among these.
 */
export const DEADLINE_HISTORY_RUNS_MAX = 500;

const deadlineCallbacksSchema = z.array(callbackRefSchema).min(1);
const withinMsSchema = z.number().int().positive().max(DEADLINE_WITHIN_MAX_MS);

/** A deadline as the serialized DAG keeps it: its reference, its bound, and references to its callbacks. */
export const serializedDeadlineSchema = z.discriminatedUnion('reference', [
  z.strictObject({
    reference: z.literal('logical_date'),
    withinMs: withinMsSchema,
    callbacks: deadlineCallbacksSchema,
  }),
  z.strictObject({
    reference: z.literal('queued_at'),
    withinMs: withinMsSchema,
    callbacks: deadlineCallbacksSchema,
  }),
  z.strictObject({
    reference: z.literal('fixed_time'),
    /** ISO-8601 (UTC). */
    by: z.iso.datetime(),
    callbacks: deadlineCallbacksSchema,
  }),
  z.strictObject({
    reference: z.literal('average_duration'),
    times: z.number().positive().max(DEADLINE_TIMES_MAX),
    over: z.number().int().positive().max(DEADLINE_OVER_MAX),
    callbacks: deadlineCallbacksSchema,
  }),
]);
export type SerializedDeadline = z.infer<typeof serializedDeadlineSchema>;

/** How a deadline reads in messages and logs: "30m after its logical date". */
export function describeDeadline(deadline: SerializedDeadline): string {
  switch (deadline.reference) {
    case 'logical_date':
      return `${formatDuration(deadline.withinMs)} after its logical date`;
    case 'queued_at':
      return `${formatDuration(deadline.withinMs)} after it was queued`;
    case 'fixed_time':
      return `by ${deadline.by}`;
    case 'average_duration':
      return `${deadline.times}x the average duration of the DAG's last ${deadline.over} successful runs, after it was queued`;
  }
}

/** The most succeeded runs the DAG's average-duration deadlines look back on; 0 when none needs any. */
export function historyNeeded(deadlines: readonly SerializedDeadline[] | undefined): number {
  let most = 0;
  for (const deadline of deadlines ?? []) {
    if (deadline.reference === 'average_duration') most = Math.max(most, deadline.over);
  }
  return most;
}

/**
 * The mean duration (start to end) of the first `over` succeeded runs of `runs` (newest first);
 * undefined while there are fewer than `over` (as Airflow's average-runtime deadline waits for its
 * minimum of runs): one quick run is no measure of the next.
 */
export function averageDurationMs(
  runs: readonly Pick<DagRun, 'state' | 'startDate' | 'endDate'>[],
  over: number,
): number | undefined {
  let total = 0;
  let count = 0;
  for (const run of runs) {
    if (count >= over) break;
    if (run.state !== 'success' || run.startDate === null || run.endDate === null) continue;
    const ms = Date.parse(run.endDate) - Date.parse(run.startDate);
    if (!Number.isFinite(ms) || ms < 0) continue;
    total += ms;
    count += 1;
  }
  return count < over ? undefined : total / count;
}

/**
 * The deadlines of a new run, each at its time: `within` after the logical date or the queued
 * time, the fixed time, or `times` the average duration of past runs (`history`, the DAG's runs
 * newest first) after the queued time. An average-duration deadline of a DAG with fewer than
 * `over` succeeded runs in its history is left out: there is not enough to measure it by.
 */
export function runDeadlinesOf(
  deadlines: readonly SerializedDeadline[] | undefined,
  run: Pick<DagRun, 'logicalDate' | 'queuedAt'>,
  history: readonly Pick<DagRun, 'state' | 'startDate' | 'endDate'>[],
): RunDeadline[] {
  const result: RunDeadline[] = [];
  (deadlines ?? []).forEach((deadline, index) => {
    let atMs: number | undefined;
    switch (deadline.reference) {
      case 'logical_date':
        atMs = Date.parse(run.logicalDate) + deadline.withinMs;
        break;
      case 'queued_at':
        atMs = Date.parse(run.queuedAt) + deadline.withinMs;
        break;
      case 'fixed_time':
        atMs = Date.parse(deadline.by);
        break;
      case 'average_duration': {
        const averageMs = averageDurationMs(history, deadline.over);
        atMs =
          averageMs === undefined
            ? undefined
            : Date.parse(run.queuedAt) + Math.ceil(averageMs * deadline.times);
        break;
      }
    }
    if (atMs === undefined || !Number.isFinite(atMs)) return;
    result.push({ index, reference: deadline.reference, at: new Date(atMs).toISOString(), state: 'pending' });
  });
  return result;
}

/** A pending deadline of a run, with its position in `run.deadlines` (what a write addresses). */
export interface PendingDeadline {
  position: number;
  deadline: RunDeadline;
}

/** The run's pending deadlines. */
export function pendingDeadlines(run: Pick<DagRun, 'deadlines'>): PendingDeadline[] {
  return (run.deadlines ?? []).flatMap((deadline, position) =>
    deadline.state === 'pending' ? [{ position, deadline }] : [],
  );
}

/** Pending deadlines that have come by `nowMs`: a run not finished by a deadline's time misses it. */
export function dueDeadlines(run: Pick<DagRun, 'deadlines'>, nowMs: number): PendingDeadline[] {
  return pendingDeadlines(run).filter(({ deadline }) => Date.parse(deadline.at) <= nowMs);
}

/** The earliest time of a pending deadline still to come after `nowMs` (what a wake-up waits for). */
export function nextDeadlineAtMs(run: Pick<DagRun, 'deadlines'>, nowMs: number): number | undefined {
  let next: number | undefined;
  for (const { deadline } of pendingDeadlines(run)) {
    const atMs = Date.parse(deadline.at);
    if (atMs > nowMs && (next === undefined || atMs < next)) next = atMs;
  }
  return next;
}

/** How a finishing run decides its pending deadlines: met when it ends before their time, else missed. */
export function deadlinesOnFinish(
  run: Pick<DagRun, 'deadlines'>,
  endMs: number,
): (PendingDeadline & { state: 'met' | 'missed' })[] {
  return pendingDeadlines(run).map((pending) => ({
    ...pending,
    state: endMs < Date.parse(pending.deadline.at) ? 'met' : 'missed',
  }));
}

/**
 * What a missed deadline owes: one element per callback of the deadline, with a message saying
 * which deadline the run missed. `clearCount` is the run's when it is missed (it names the item
 * with the deadline and the position, see `callbackIdOf`); a deadline is missed once per run.
 */
export function callbacksOwedOnDeadlineMissed(
  serialized: SerializedDeadline | undefined,
  deadline: RunDeadline,
  change: { clearCount: number; at: string },
): OwedCallback[] {
  if (!serialized) return [];
  const message = `The DAG run did not finish by its deadline ${deadline.at} (${describeDeadline(serialized)})`;
  return serialized.callbacks.map((_, i) => ({
    k: 'deadline_missed' as const,
    i,
    n: change.clearCount,
    at: change.at,
    e: message.slice(0, OWED_ERROR_MAX_CHARS),
    d: deadline.index,
  }));
}

/** What a deadline-missed callback is told about its deadline: when it was, and how late the run was when it was missed. */
export interface DeadlineContext {
  at: string;
  reference: DeadlineReference;
  lateByMs: number;
}

/** The deadline a callback runs for, from its run; undefined for other callbacks. */
export function deadlineOfCallback(
  callback: Pick<Callback, 'deadlineIndex' | 'owedAt'>,
  run: Pick<DagRun, 'deadlines'>,
): DeadlineContext | undefined {
  if (callback.deadlineIndex === undefined) return undefined;
  const deadline = run.deadlines?.find((candidate) => candidate.index === callback.deadlineIndex);
  if (!deadline) return undefined;
  return {
    at: deadline.at,
    reference: deadline.reference,
    lateByMs: Math.max(0, Date.parse(callback.owedAt) - Date.parse(deadline.at)),
  };
}
