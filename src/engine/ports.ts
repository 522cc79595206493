import type { DagRunKey, TaskInstance } from '#core/models.ts';

/** Wakes a run's scheduling at a future moment (a retry coming due); durable timers on AWS. */
export interface WakeTimers {
  /** Resolves once the timer is durably set: the caller's call is then free to end. */
  wakeAt(run: DagRunKey, atMs: number): Promise<void>;
}

/**
 * Task instances whose worker or workload is known to be gone without waiting for a timeout:
 * a standalone restart loses its in-process queues and the task runners of the previous process.
 * On AWS nothing is known this way and the heartbeat and queued timeouts decide.
 */
export interface OrphanPolicy {
  /** A running TI whose worker is gone. */
  isOrphanedRunning(ti: TaskInstance): boolean;
  /** A queued TI whose workload message is gone. */
  isOrphanedQueued(ti: TaskInstance): boolean;
}
