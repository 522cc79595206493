import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dag } from '#sdk/index.ts';
import { type SchedulerHarness, startSchedulerHarness } from './scheduler-harness.ts';

/** A task instance no pool can admit says why on itself, not only in the scheduler's log. */

let h: SchedulerHarness;

beforeEach(async () => {
  h = await startSchedulerHarness({ settings: { pools: { default_pool: 128, single: 1 } } });
});

afterEach(async () => {
  await h.close();
});

const noop = async () => {};

describe('a task instance that cannot run for want of a pool', () => {
  it('stays none with the reason on the TI when its pool is not configured', async () => {
    const [versioned] = await h.register(
      dag({ id: 'unpooled' }, (d) => {
        d.task({ id: 'orphan', pool: 'nope' }, noop);
      }),
    );
    const run = await h.createRun(versioned!);

    await h.scheduler.handleRequests([run]);
    await h.scheduler.handleRequests([run]);

    const ti = await h.ti(run, 'orphan');
    expect(ti.state).toBe('none');
    expect(ti.errorMessage).toBe(
      "Task instance cannot run: pool 'nope' is not configured (UPDRAFT_POOLS; configured: default_pool, single)",
    );
    expect(await h.drainWorkloads()).toEqual([]);
  });

  it('says so when the task needs more slots than its pool has', async () => {
    const [versioned] = await h.register(
      dag({ id: 'greedy' }, (d) => {
        d.task({ id: 'big', pool: 'single', poolSlots: 2 }, noop);
      }),
    );
    const run = await h.createRun(versioned!);

    await h.scheduler.handleRequests([run]);

    expect((await h.ti(run, 'big')).errorMessage).toBe(
      "Task instance cannot run: it needs 2 slots of pool 'single', which has 1 (UPDRAFT_POOLS)",
    );
  });
});
