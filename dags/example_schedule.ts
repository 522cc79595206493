import { dag, type TaskContext } from 'updraft';

/** Every 15 minutes, Paris time; catchup off, so only the latest missed interval runs. */
export default dag(
  {
    id: 'example_schedule',
    description: 'A cron schedule in a time zone',
    schedule: { cron: '*/15 * * * *', timezone: 'Europe/Paris' },
    startDate: '2026-01-01T00:00:00Z',
    catchup: false,
    maxActiveRuns: 1,
    tags: ['example'],
    defaultArgs: { retries: 1, retryDelay: '10s', executionTimeout: '5m' },
  },
  (d) => {
    const hello = d.task('say_hello', async (ctx) => {
      ctx.log.info('hello', { logicalDate: ctx.logicalDate });
      return `hello from ${ctx.runId}`;
    });
    d.task('report_interval', async (greeting: string, ctx: TaskContext) => ({
      greeting,
      from: ctx.dataIntervalStart,
      to: ctx.dataIntervalEnd,
    })).args(hello);
  },
);
