import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dag } from '#sdk/index.ts';
import { type SchedulerHarness, startSchedulerHarness, tiKey } from './integration/scheduler-harness.ts';

let h: SchedulerHarness;
beforeEach(async () => {
  h = await startSchedulerHarness({ settings: { pools: { default_pool: 128, p: 4 } } });
});
afterEach(async () => {
  await h.close();
});
const noop = async () => {};

describe('scratch: rounds release stale holders after the candidates that need them', () => {
  it('leaves ready TIs of a pool starving, with the pool free and no waiting entry', async () => {
    const mix = dag({ id: 'mix', maxActiveTasks: 500, defaultArgs: { weightRule: 'absolute' } }, (d) => {
      const ups = [];
      // a00..a15 (default pool, higher priority: admitted and held first), b0..b3 in pool p.
      for (let i = 0; i < 16; i += 1)
        ups.push(d.task({ id: `a${String(i).padStart(2, '0')}`, priorityWeight: 10 }, noop));
      for (let i = 0; i < 4; i += 1) ups.push(d.task({ id: `b${i}`, pool: 'p', priorityWeight: 1 }, noop));
      for (let i = 0; i < 4; i += 1) d.task({ id: `c${i}`, pool: 'p' }, noop).after(...ups);
    });
    const [versioned] = await h.register(mix);
    const run = await h.createRun(versioned!);
    await h.scheduler.handleRequests([run]);
    const first = await h.queuedTaskIds(run);
    expect(first).toHaveLength(20);
    const slotsBefore = await h.store.getSlotPool({ kind: 'run_tasks', dagId: run.dagId, runId: run.runId });
    console.log(
      'holder order',
      Object.keys(slotsBefore.holders)
        .map((id) => id.split('#')[2])
        .join(','),
    );
    for (const taskId of first) await h.succeed(tiKey(run, taskId));
    // drop the requests the completions sent; one explicit pass
    for (;;) {
      // The completions' requests, as if their passes had all run before the last completion.
      const pending = await h.queues.queues.scheduler.receive({ maxMessages: 10, waitTimeMs: 0 });
      if (pending.length === 0) break;
      await h.queues.queues.scheduler.delete(pending.map((m) => m.receiptHandle));
    }
    await h.scheduler.handleRequests([run]);
    const mid = await h.states(run);
    const poolMid = await h.store.getSlotPool({ kind: 'pool', pool: 'p' });
    console.log(
      'after one pass',
      ['c0', 'c1', 'c2', 'c3'].map((id) => mid[id]),
      poolMid.used,
      poolMid.waiting,
    );
    console.log('requests handled afterwards', await h.handleQueuedRequests());

    const states = await h.states(run);
    const c = ['c0', 'c1', 'c2', 'c3'].map((id) => states[id]);
    const pool = await h.store.getSlotPool({ kind: 'pool', pool: 'p' });
    console.log({ c, poolUsed: pool.used, waiting: pool.waiting });
    expect(c).toEqual(['none', 'none', 'none', 'none']); // starving
    expect(pool.used).toBe(0); // while the pool is free
    expect(pool.waiting).toEqual({}); // and the run is not waiting on it: no nudge will come
    await h.scheduler.tick(); // only the tick's reconcile picks the run up again
    expect(await h.queuedTaskIds(run)).toEqual(['c0', 'c1', 'c2', 'c3']);
  });
});
