import type { TaskInstance } from './models.ts';

export interface AdmissionCandidate {
  ti: TaskInstance;
  priorityWeight: number;
  /** Logical date of the TI's run: older runs go first at equal weight. */
  logicalDate: string;
  /** The DAG's `maxActiveTasks`: queued + running TIs allowed for one of its runs at once (Airflow 3). */
  maxActiveTasks: number;
}

/** Key of a run in `AdmissionInput.runOccupancy`. */
export function runOccupancyKey(run: { dagId: string; runId: string }): string {
  return `${run.dagId}\u0000${run.runId}`;
}

export interface AdmissionInput {
  /** Ready TIs, from one or several runs. */
  candidates: AdmissionCandidate[];
  /** Slots per pool (from settings). */
  pools: Record<string, number>;
  /** Slots in use per pool (queued + running TIs × poolSlots). */
  poolOccupancy: Record<string, number>;
  /** Queued + running TIs per run, keyed by `runOccupancyKey`. */
  runOccupancy: Record<string, number>;
  /** Bound of this pass. */
  maxToAdmit: number;
}

/**
 * Why a ready TI was not admitted. `pool_too_small` and `unknown_pool` never clear up by waiting:
 * the TI asks more slots than its pool has in total, or names a pool that does not exist.
 */
export type StarvationReason =
  | 'pool_full'
  | 'pool_too_small'
  | 'max_active_tasks'
  | 'pass_limit'
  | 'unknown_pool';

export interface StarvingTaskInstance {
  ti: TaskInstance;
  reason: StarvationReason;
}

export interface AdmissionResult {
  /** In admission order: highest priority first. */
  admitted: TaskInstance[];
  starving: StarvingTaskInstance[];
}

/**
 * Chooses which ready TIs to queue now. Candidates are taken by priority weight (highest first), then
 * logical date (oldest first), then (dag id, run id, task id, map index) so equal candidates always come
 * out in the same order, as Airflow orders by (-priority_weight, logical_date). Each admission takes its
 * pool slots and DAG slot before the next candidate is considered. A candidate that does not fit is
 * passed over, not waited for, so a full pool never blocks a lower-priority TI of another pool.
 * `maxActiveTasks` is counted per run, as Airflow 3 does.
 */
export function admitTaskInstances(input: AdmissionInput): AdmissionResult {
  const poolOccupancy = new Map(Object.entries(input.poolOccupancy));
  const runOccupancy = new Map(Object.entries(input.runOccupancy));
  const pools = new Map(Object.entries(input.pools));
  const admitted: TaskInstance[] = [];
  const starving: StarvingTaskInstance[] = [];

  for (const candidate of [...input.candidates].sort(compareCandidates)) {
    const { ti } = candidate;
    const poolSize = pools.get(ti.pool);
    const reason = starvationReason(candidate, {
      poolSize,
      poolUsed: poolOccupancy.get(ti.pool) ?? 0,
      runUsed: runOccupancy.get(runOccupancyKey(ti)) ?? 0,
      passFull: admitted.length >= input.maxToAdmit,
    });
    if (reason) {
      starving.push({ ti, reason });
      continue;
    }
    admitted.push(ti);
    poolOccupancy.set(ti.pool, (poolOccupancy.get(ti.pool) ?? 0) + ti.poolSlots);
    runOccupancy.set(runOccupancyKey(ti), (runOccupancy.get(runOccupancyKey(ti)) ?? 0) + 1);
  }
  return { admitted, starving };
}

/** Permanent problems are reported first, so the engine logs them even in a pass that is already full. */
function starvationReason(
  { ti, maxActiveTasks }: AdmissionCandidate,
  usage: { poolSize: number | undefined; poolUsed: number; runUsed: number; passFull: boolean },
): StarvationReason | null {
  if (usage.poolSize === undefined) return 'unknown_pool';
  if (ti.poolSlots > usage.poolSize) return 'pool_too_small';
  if (usage.passFull) return 'pass_limit';
  if (usage.runUsed >= maxActiveTasks) return 'max_active_tasks';
  if (usage.poolUsed + ti.poolSlots > usage.poolSize) return 'pool_full';
  return null;
}

function compareCandidates(a: AdmissionCandidate, b: AdmissionCandidate): number {
  return (
    b.priorityWeight - a.priorityWeight ||
    compareStrings(a.logicalDate, b.logicalDate) ||
    compareStrings(a.ti.dagId, b.ti.dagId) ||
    compareStrings(a.ti.runId, b.ti.runId) ||
    compareStrings(a.ti.taskId, b.ti.taskId) ||
    a.ti.mapIndex - b.ti.mapIndex
  );
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
