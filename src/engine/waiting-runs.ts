import type { AdmissionResult } from '#core/admission.ts';
import { type DagRunKey, formatTaskInstanceKey } from '#core/models.ts';
import type { Logger } from './logger.ts';
import type { OccupancyLedger } from './occupancy.ts';

interface Waiting {
  run: DagRunKey;
  pools: Set<string>;
}

/**
 * Runs with task instances held back by a full pool. A pool slot freed by a task of one run is
 * only seen when that run is scheduled; this list lets the scheduler offer freed slots to the
 * other runs at once instead of at the next tick. Slots are offered in batches (a few at a time
 * for a large pool) while the executor still has a backlog, so a busy pool costs one extra pass
 * per batch of finished tasks rather than one per task. (`maxActiveTasks` counts per run, so a
 * place under it is freed only by a TI of the same run, whose report schedules that run anyway.)
 */
export class WaitingRuns {
  readonly #runs = new Map<string, Waiting>();

  /** Records whether this run has TIs waiting for pool slots after its pass. */
  update(run: DagRunKey, starving: AdmissionResult['starving']): void {
    const id = runId(run);
    const pools = new Set(starving.filter((s) => s.reason === 'pool_full').map((s) => s.ti.pool));
    if (pools.size === 0) this.#runs.delete(id);
    else this.#runs.set(id, { run, pools });
  }

  forget(run: DagRunKey): void {
    this.#runs.delete(runId(run));
  }

  /** Waiting runs, oldest first, whose pool now has a batch of free slots (or an idle executor). */
  due(ledger: OccupancyLedger, pools: Record<string, number>, skip: ReadonlySet<string>): DagRunKey[] {
    if (this.#runs.size === 0) return [];
    const occupancy = ledger.poolOccupancy();
    const backlog = ledger.queuedByPool();
    const due: DagRunKey[] = [];
    for (const [id, waiting] of this.#runs) {
      if (skip.has(id)) continue;
      const ready = [...waiting.pools].some((pool) => {
        const slots = pools[pool] ?? 0;
        const free = slots - (occupancy[pool] ?? 0);
        return free >= refillBatch(slots) || (free > 0 && !backlog[pool]);
      });
      if (ready) due.push(waiting.run);
    }
    return due;
  }
}

/** Free places worth a pass while the executor is still busy: 1 for small limits, up to 8 for large. */
function refillBatch(limit: number): number {
  return Math.max(1, Math.min(8, Math.floor(limit / 16)));
}

export function runId(run: DagRunKey): string {
  return `${run.dagId}\u0000${run.runId}`;
}

/**
 * Logs, once per TI and try, a task instance that cannot run at all for want of a pool: the pool
 * is not configured, or has fewer slots than the task asks for. Waiting does not fix either.
 */
export class PoolWarnings {
  readonly #deps: { settings: { pools: Record<string, number> }; log: Logger };
  readonly #reported = new Set<string>();

  constructor(deps: { settings: { pools: Record<string, number> }; log: Logger }) {
    this.#deps = deps;
  }

  report(starving: AdmissionResult['starving']): void {
    for (const { ti, reason } of starving) {
      if (reason !== 'unknown_pool' && reason !== 'pool_too_small') continue;
      const id = `${formatTaskInstanceKey(ti)}@${ti.tryNumber}`;
      if (this.#reported.has(id)) continue;
      if (this.#reported.size > 10_000) this.#reported.clear();
      this.#reported.add(id);
      this.#deps.log.warn(
        reason === 'unknown_pool'
          ? `Task instance cannot run: pool ${ti.pool} is not configured (UPDRAFT_POOLS)`
          : `Task instance cannot run: it needs ${ti.poolSlots} slots of pool ${ti.pool}, which has ${this.#deps.settings.pools[ti.pool]}`,
        { ti: formatTaskInstanceKey(ti) },
      );
    }
  }
}
