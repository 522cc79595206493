import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dag } from '#sdk/index.ts';
import { type SchedulerHarness, startSchedulerHarness } from './scheduler-harness.ts';

let h: SchedulerHarness;

beforeEach(async () => {
  h = await startSchedulerHarness();
});

afterEach(async () => {
  await h.close();
});

/** Every 15 minutes since five years before the harness clock: ~175,000 missed fire times. */
const frequentSinceLongAgo = (endDate?: string) =>
  dag(
    {
      id: 'frequent',
      schedule: { cron: '*/15 * * * *', timezone: 'Europe/Paris' },
      startDate: '2021-01-01T00:00:00.000Z',
      endDate: endDate ?? null,
      catchup: false,
    },
    (d) => {
      d.task('work', async () => {});
    },
  );

async function runsOfFrequent() {
  const page = await h.store.listDagRuns('frequent', { limit: 50 });
  return page.items.map((run) => run.logicalDate);
}

describe('Scheduler tick without catchup after a long gap', () => {
  it('creates one run for the latest missed date and moves nextRunAt past now', async () => {
    await h.register(frequentSinceLongAgo());

    await h.scheduler.tick();

    expect(await runsOfFrequent()).toEqual([h.iso()]);
    expect((await h.store.getDag('frequent'))?.nextRunAt).toBe(h.iso(15 * 60_000));
  });

  it('stops at the end date when it passed before now', async () => {
    await h.register(frequentSinceLongAgo('2025-06-01T10:07:00.000Z'));

    await h.scheduler.tick();

    expect(await runsOfFrequent()).toEqual(['2025-06-01T10:00:00.000Z']);
    expect((await h.store.getDag('frequent'))?.nextRunAt).toBe('2025-06-01T10:15:00.000Z');
  });
});
