import { setTimeout as sleep } from 'node:timers/promises';
import { dag, type TaskContext } from 'updraft';

/**
 * The Ctrl-C tests' DAG: `nap` sleeps `params.firstTrySleepMs` on its first try and briefly on any
 * later one, so a try handed back at shutdown finishes quickly after the restart. No retries: a
 * try counted as failed would fail the run.
 */
export default dag(
  {
    id: 'sleepy',
    description: 'e2e: a task that is running when standalone is stopped',
    schedule: null,
    startDate: '2026-01-01T00:00:00Z',
    params: { firstTrySleepMs: 1_500 },
  },
  (d) => {
    d.task({ id: 'nap', retries: 0 }, async (ctx: TaskContext) => {
      ctx.log.info('napping', { tryNumber: ctx.tryNumber });
      await sleep(ctx.tryNumber === 1 ? Number(ctx.params.firstTrySleepMs) : 100);
      ctx.log.info('woke up', { tryNumber: ctx.tryNumber });
      return 'rested';
    });
  },
);
