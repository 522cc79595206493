import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { settingsSchema } from '#config/settings.ts';
import type { DagRunKey } from '#core/models.ts';
import { clearTaskInstances } from '#engine/clear.ts';
import { silentLogger } from '#engine/logger.ts';
import { dagRunsRef, releaseRunSlot, startRun } from '#engine/run-slots.ts';
import { dag } from '#sdk/index.ts';
import type { Store } from '#store/port.ts';
import { type SchedulerHarness, startSchedulerHarness, tiKey } from './scheduler-harness.ts';

let h: SchedulerHarness;
beforeEach(async () => {
  h = await startSchedulerHarness({
    settings: { pools: { default_pool: 128, three: 3 }, maxRunsPerPass: 3 },
  });
});
afterEach(async () => {
  await h.close();
});
const noop = async () => {};

async function queuedSlots(runs: DagRunKey[]): Promise<number> {
  let total = 0;
  for (const run of runs) {
    const snapshot = await h.store.getRunSnapshot(run);
    for (const ti of snapshot?.taskInstances ?? [])
      if (ti.state === 'queued' || ti.state === 'running') total += ti.poolSlots;
  }
  return total;
}

/**
 * DAG `one` (max_active_runs 1, one task `work`) and its run `a`, started and its task succeeded;
 * with `finished`, a second pass has also finished the run.
 */
async function runOfOneAtATime(options: { finished: boolean }) {
  const [versioned] = await h.register(dag({ id: 'one', maxActiveRuns: 1 }, (d) => d.task('work', noop)));
  const run = await h.createRun(versioned!, { runId: 'a' });
  await h.newScheduler().handleRequests([run]);
  await h.succeed(tiKey(run, 'work'));
  if (options.finished) {
    await h.newScheduler().handleRequests([run]);
    expect((await h.run(run)).state).toBe('success');
  }
  return { versioned: versioned!, run };
}

/** Clears every TI of run `a` of DAG `one`, as the API's clear does. */
function clearRunA() {
  return clearTaskInstances(
    { store: h.store, dags: h.dags, notifier: h.notifier, now: h.now },
    { dagId: 'one', runId: 'a', taskIds: [], includeDownstream: false, onlyFailed: false, dryRun: false },
  );
}

describe('limits under concurrent fresh instances', () => {
  it('a pool of 3 with 2-slot and 1-slot TIs never admits more than 3 slots', async () => {
    const mixed = dag({ id: 'mixed', maxActiveRuns: 10 }, (d) => {
      d.task({ id: 'big', pool: 'three', poolSlots: 2 }, noop);
      d.task({ id: 'small1', pool: 'three' }, noop);
      d.task({ id: 'small2', pool: 'three' }, noop);
    });
    const [versioned] = await h.register(mixed);
    const runs = await Promise.all(['a', 'b', 'c', 'd'].map((runId) => h.createRun(versioned!, { runId })));
    for (let round = 0; round < 4; round += 1) {
      await Promise.all([...runs, ...runs].map((run) => h.newScheduler().handleRequests([run])));
      expect(await queuedSlots(runs)).toBeLessThanOrEqual(3);
      const pool = await h.store.getSlotPool({ kind: 'pool', pool: 'three' });
      expect(pool.used).toBeLessThanOrEqual(3);
      // finish whatever is queued, then go again
      for (const run of runs)
        for (const taskId of await h.queuedTaskIds(run)) await h.succeed(tiKey(run, taskId));
    }
  });

  it('a cleared finished run does not start beside the running one under max_active_runs 1', async () => {
    const { versioned, run: first } = await runOfOneAtATime({ finished: true });
    const second = await h.createRun(versioned, { runId: 'b' });
    await h.newScheduler().handleRequests([second]);
    expect((await h.run(second)).state).toBe('running');
    await clearRunA();
    await Promise.all([1, 2, 3].map(() => h.newScheduler().handleRequests([first, second])));
    await h.newScheduler().tick();
    const states = [(await h.run(first)).state, (await h.run(second)).state].sort();
    expect(states).toEqual(['queued', 'running']);
  });

  it("a finish's late slot release does not take the place of the run's start after a clear", async () => {
    const { versioned, run: first } = await runOfOneAtATime({ finished: false });
    // A pass finishes the run and stops before giving its place back (simulation seed 13).
    const running = await h.run(first);
    const endDate = new Date(h.now()).toISOString();
    await h.store.transitionDagRun(
      running,
      { state: 'running', clearCount: running.clearCount },
      { state: 'success', endDate },
      { owed: [] },
    );
    await clearRunA();
    h.clock.now += 1_000;
    await h.newScheduler().handleRequests([first]);
    expect((await h.run(first)).state).toBe('running');
    // The stopped pass's release, retried late, concerns the finished start only.
    await releaseRunSlot({ store: h.store, log: silentLogger, now: h.now }, running, endDate);
    const second = await h.createRun(versioned, { runId: 'b' });
    await Promise.all([1, 2].map(() => h.newScheduler().handleRequests([second])));
    expect([(await h.run(first)).state, (await h.run(second)).state]).toEqual(['running', 'queued']);
    const slots = await h.store.getSlotPool(dagRunsRef('one'));
    expect([slots.used, Object.keys(slots.holders)]).toEqual([1, ['a']]);
  });
});

describe('max_active_runs while a clear is under way', () => {
  it('a pass that read the run mid-clear cannot start it on a holder the next start gives back', async () => {
    const { versioned, run: a } = await runOfOneAtATime({ finished: true });
    const b = await h.createRun(versioned, { runId: 'b' });

    // A clear, step by step as clearTaskInstances takes them: begin, queued again, end.
    const begun = await h.store.markRunCleared(a, 'begin');
    await h.store.transitionDagRun(begun, begun.state, { state: 'queued', endDate: null });
    const readMidClear = await h.run(a);
    await h.store.markRunCleared(a, 'end');
    const readAfter = await h.run(a);
    expect([readMidClear.clearCount, readAfter.clearCount, readAfter.state]).toEqual([1, 2, 'queued']);

    const deps = (store: Store) => ({ store, log: silentLogger, now: h.now });
    // The pass that read the run mid-clear takes a holder, and its start is refused.
    expect(await startRun(deps(h.store), readMidClear, 1, 'mid')).toBeUndefined();
    // The pass that read it after gives that holder back; run b's pass takes the place meanwhile.
    let tookPlace = false;
    const racing = new Proxy(h.store, {
      get(target, property, receiver) {
        if (property === 'updateSlotPool')
          return async (...args: Parameters<Store['updateSlotPool']>) => {
            const result = await target.updateSlotPool(...args);
            if (!tookPlace && args[1].release.length > 0) {
              tookPlace = true;
              await startRun(deps(h.store), await h.run(b), 1, 'b');
            }
            return result;
          };
        const value: unknown = Reflect.get(target, property, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    expect(await startRun(deps(racing), readAfter, 1, 'after')).toBeUndefined();
    expect([(await h.run(a)).state, (await h.run(b)).state]).toEqual(['queued', 'running']);
    const slots = await h.store.getSlotPool(dagRunsRef('one'));
    expect([slots.used, Object.keys(slots.holders)]).toEqual([1, ['b']]);
  });
});

describe('settings that make healthy tries zombies', () => {
  it('refuses a heartbeat interval that is not well below the heartbeat timeout', () => {
    // Accepted today: every healthy try's heartbeat is older than the timeout between two beats,
    // and a worker cut off from the API stops only at the zombie threshold or after it.
    expect(() => settingsSchema.parse({ heartbeatIntervalMs: 60_000, heartbeatTimeoutMs: 60_000 })).toThrow();
  });
});
