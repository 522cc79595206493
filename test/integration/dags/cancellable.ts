import { setTimeout as sleep } from 'node:timers/promises';
import { dag, type TaskContext } from 'updraft';

/** Test fixture: `wait` runs until its signal aborts and logs what it saw; `stubborn` ignores it; `quick` returns at once. */
export default dag({ id: 'cancellable', schedule: null }, (d) => {
  d.task('wait', async (ctx: TaskContext) => {
    ctx.log.info('waiting');
    ctx.signal.addEventListener('abort', () => ctx.log.info(`cancelled: ${String(ctx.signal.reason)}`));
    await sleep(60_000, undefined, { signal: ctx.signal }).catch(() => undefined);
    return 'stopped';
  });
  d.task('stubborn', async () => {
    await sleep(60_000);
  });
  d.task('quick', async () => 'done');
});
