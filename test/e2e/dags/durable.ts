import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { dag, type TaskContext } from 'updraft';

/**
 * The kill -9 test's DAG. Each try appends `try <n>` to a file under `params.markerDir`, so the
 * test can count how often each task really ran: `first` is quick, `slow` is still running when
 * the test kills the process, `last` only shows the run carried on after the restart.
 */
export default dag(
  {
    id: 'durable',
    description: 'e2e: survives a kill -9 of standalone',
    schedule: null,
    startDate: '2026-01-01T00:00:00Z',
    params: { markerDir: '' },
  },
  (d) => {
    const first = d.task('first', async (ctx: TaskContext) => {
      appendFileSync(join(String(ctx.params.markerDir), 'first.txt'), `try ${ctx.tryNumber}\n`);
      return 'first done';
    });

    const slow = d
      .task({ id: 'slow', retries: 1, retryDelay: '1s' }, async (ctx: TaskContext) => {
        appendFileSync(join(String(ctx.params.markerDir), 'slow.txt'), `try ${ctx.tryNumber}\n`);
        await sleep(4_000);
        return 'slow done';
      })
      .after(first);

    d.task('last', async () => 'last done').after(slow);
  },
);
