import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dag } from '#sdk/index.ts';
import { type SchedulerHarness, startSchedulerHarness } from './scheduler-harness.ts';

let h: SchedulerHarness;
const HOUR_MS = 3_600_000;

beforeEach(async () => {
  h = await startSchedulerHarness();
});

afterEach(async () => {
  await h.close();
});

function hourly(options: { catchup: boolean; maxActiveRuns?: number }) {
  return dag(
    {
      id: 'hourly',
      schedule: 'rate(1 hour)',
      startDate: h.iso(-5 * HOUR_MS),
      catchup: options.catchup,
      maxActiveRuns: options.maxActiveRuns ?? 16,
    },
    (d) => {
      d.task('work', async () => {});
    },
  );
}

async function runsOfHourly() {
  const page = await h.store.listDagRuns('hourly', { limit: 50 });
  return page.items.map((run) => [run.runId, run.runType, run.logicalDate]).reverse();
}

describe('Scheduler tick on schedules without catchup', () => {
  it('creates exactly one run, for the latest due logical date', async () => {
    await h.register(hourly({ catchup: false }));

    await h.scheduler.tick();

    expect(await runsOfHourly()).toEqual([[`scheduled__${h.iso()}`, 'scheduled', h.iso()]]);
  });

  it('gives the run the data interval from the previous fire time to its logical date', async () => {
    await h.register(hourly({ catchup: false }));

    await h.scheduler.tick();

    const run = await h.run({ dagId: 'hourly', runId: `scheduled__${h.iso()}` });
    expect([run.dataIntervalStart, run.dataIntervalEnd]).toEqual([h.iso(-HOUR_MS), h.iso()]);
  });

  it("advances the DAG's nextRunAt to the next hour", async () => {
    await h.register(hourly({ catchup: false }));
    expect((await h.store.getDag('hourly'))?.nextRunAt).toBe(h.iso(-5 * HOUR_MS));

    await h.scheduler.tick();

    expect((await h.store.getDag('hourly'))?.nextRunAt).toBe(h.iso(HOUR_MS));
  });

  it('starts the new run and queues its first task in the same tick', async () => {
    await h.register(hourly({ catchup: false }));

    await h.scheduler.tick();

    const run = { dagId: 'hourly', runId: `scheduled__${h.iso()}` };
    expect((await h.run(run)).state).toBe('running');
    expect(await h.states(run)).toEqual({ work: 'queued' });
  });

  it('creates nothing on a second tick at the same time', async () => {
    await h.register(hourly({ catchup: false }));
    await h.scheduler.tick();

    await h.scheduler.tick();

    expect(await runsOfHourly()).toHaveLength(1);
    expect((await h.store.getDag('hourly'))?.nextRunAt).toBe(h.iso(HOUR_MS));
  });

  it('creates the next run once the clock reaches nextRunAt', async () => {
    await h.register(hourly({ catchup: false }));
    await h.scheduler.tick();
    h.advance(HOUR_MS);

    await h.scheduler.tick();

    expect((await runsOfHourly()).map(([runId]) => runId)).toEqual([
      `scheduled__${h.iso(-HOUR_MS)}`,
      `scheduled__${h.iso()}`,
    ]);
  });

  it('creates no run for a paused DAG', async () => {
    await h.register(hourly({ catchup: false }), { paused: true });

    await h.scheduler.tick();

    expect(await runsOfHourly()).toEqual([]);
    expect((await h.store.getDag('hourly'))?.nextRunAt).toBe(h.iso(-5 * HOUR_MS));
  });
});

describe('Scheduler tick on schedules with catchup', () => {
  it('creates every missed run when max_active_runs allows them all', async () => {
    await h.register(hourly({ catchup: true }));

    await h.scheduler.tick();

    const hours = [5, 4, 3, 2, 1, 0].map((ago) => h.iso(-ago * HOUR_MS));
    expect(await runsOfHourly()).toEqual(hours.map((date) => [`scheduled__${date}`, 'scheduled', date]));
    expect((await h.store.getDag('hourly'))?.nextRunAt).toBe(h.iso(HOUR_MS));
  });

  it('creates the oldest missed runs up to max_active_runs and resumes from the next one', async () => {
    await h.register(hourly({ catchup: true, maxActiveRuns: 3 }));

    await h.scheduler.tick();

    const hours = [5, 4, 3].map((ago) => h.iso(-ago * HOUR_MS));
    expect(await runsOfHourly()).toEqual(hours.map((date) => [`scheduled__${date}`, 'scheduled', date]));
    expect((await h.store.getDag('hourly'))?.nextRunAt).toBe(h.iso(-2 * HOUR_MS));
  });

  it('creates no more runs while max_active_runs are active', async () => {
    await h.register(hourly({ catchup: true, maxActiveRuns: 3 }));
    await h.scheduler.tick();

    await h.scheduler.tick();

    expect(await runsOfHourly()).toHaveLength(3);
    expect((await h.store.getDag('hourly'))?.nextRunAt).toBe(h.iso(-2 * HOUR_MS));
  });
});
