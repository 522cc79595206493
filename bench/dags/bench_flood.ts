import { dag } from 'updraft';

/** The callbacks benchmark's pools (bench/callbacks.ts sets them): two, so neither item holds over 2,500 TIs. */
export const FLOOD_POOLS = ['bench_flood_a', 'bench_flood_b'] as const;
export const FLOOD_TASKS_PER_RUN = 100;

/** Each task's sleep: 100 to 200 ms, spread over the run's tasks. */
export function floodSleepMs(index: number): number {
  return 100 + ((index * 37) % 101);
}

/**
 * The callbacks benchmark's load: short tasks that keep the worker's task slots busy while
 * thousands of workloads wait behind them. Limits high enough that every task of 50 runs is
 * queued at once: all of a run's tasks, 64 runs, and the pools above.
 */
export default dag(
  { id: 'bench_flood', schedule: null, maxActiveRuns: 64, maxActiveTasks: FLOOD_TASKS_PER_RUN },
  (d) => {
    for (let index = 0; index < FLOOD_TASKS_PER_RUN; index += 1) {
      const sleepMs = floodSleepMs(index);
      d.task(
        { id: `sleep_${String(index).padStart(3, '0')}`, pool: FLOOD_POOLS[index % FLOOD_POOLS.length] },
        () => new Promise<void>((resolve) => setTimeout(resolve, sleepMs)),
      );
    }
  },
);
