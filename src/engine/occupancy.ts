import { runOccupancyKey } from '#core/admission.ts';
import type { TaskInstance } from '#core/models.ts';
import { OCCUPYING_TI_STATES } from '#core/states.ts';

interface Holder {
  /** `runOccupancyKey` of the TI's run. */
  run: string;
  pool: string;
  slots: number;
  queued: boolean;
}

/**
 * The scheduler's ledger of task instances that hold a slot (queued or running), keyed by TI,
 * so pool and max-active-task limits are checked without querying the store. Keyed entries
 * make every update idempotent: seeing the same TI twice changes nothing. The scheduler is a
 * single logical actor; it rebuilds the ledger from the store when it starts and refreshes a
 * run's entries each time it loads that run, which repairs any drift.
 */
export class OccupancyLedger {
  readonly #holders = new Map<string, Holder>();
  /** Deferred TIs hold no slot, but are counted for the `ti.deferred` gauge. */
  readonly #deferred = new Set<string>();

  /** Refreshes the entries of these TIs from their current state. */
  observe(taskInstances: Iterable<TaskInstance>): void {
    for (const ti of taskInstances) {
      const id = holderId(ti);
      if (ti.state === 'deferred') this.#deferred.add(id);
      else this.#deferred.delete(id);
      if (OCCUPYING_TI_STATES.has(ti.state)) {
        this.#holders.set(id, {
          run: runOccupancyKey(ti),
          pool: ti.pool,
          slots: ti.poolSlots,
          queued: ti.state === 'queued',
        });
      } else {
        this.#holders.delete(id);
      }
    }
  }

  /** Forgets every TI of a run (the run finished or vanished). */
  forgetRun(dagId: string, runId: string): void {
    const prefix = `${dagId}\u0000${runId}\u0000`;
    for (const id of this.#holders.keys()) if (id.startsWith(prefix)) this.#holders.delete(id);
    for (const id of this.#deferred) if (id.startsWith(prefix)) this.#deferred.delete(id);
  }

  clear(): void {
    this.#holders.clear();
    this.#deferred.clear();
  }

  /** TIs by state among those the ledger tracks: the `ti.queued`, `ti.running`, `ti.deferred` gauges. */
  stateCounts(): { queued: number; running: number; deferred: number } {
    let queued = 0;
    for (const holder of this.#holders.values()) if (holder.queued) queued += 1;
    return { queued, running: this.#holders.size - queued, deferred: this.#deferred.size };
  }

  poolOccupancy(): Record<string, number> {
    const result: Record<string, number> = {};
    for (const holder of this.#holders.values())
      result[holder.pool] = (result[holder.pool] ?? 0) + holder.slots;
    return result;
  }

  /** Queued + running TIs per run, keyed by `runOccupancyKey` (for `maxActiveTasks`). */
  runOccupancy(): Record<string, number> {
    const result: Record<string, number> = {};
    for (const holder of this.#holders.values()) result[holder.run] = (result[holder.run] ?? 0) + 1;
    return result;
  }

  /** Queued (sent, not yet started) TIs per pool: the executor's backlog. */
  queuedByPool(): Record<string, number> {
    const byPool: Record<string, number> = {};
    for (const holder of this.#holders.values()) {
      if (holder.queued) byPool[holder.pool] = (byPool[holder.pool] ?? 0) + 1;
    }
    return byPool;
  }

  get size(): number {
    return this.#holders.size;
  }
}

function holderId(ti: TaskInstance): string {
  return `${ti.dagId}\u0000${ti.runId}\u0000${ti.taskId}\u0000${ti.mapIndex}`;
}
