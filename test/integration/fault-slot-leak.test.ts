import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { handleSchedulingMessages } from '#engine/entrypoints.ts';
import { dag } from '#sdk/index.ts';
import type { SlotPoolChange, SlotPoolRef } from '#store/port.ts';
import { engineDeps, requestFor, wrapStore } from './fault-helpers.ts';
import { type SchedulerHarness, startSchedulerHarness, tiKey } from './scheduler-harness.ts';

const HEARTBEAT_TIMEOUT_MS = 30_000;
let h: SchedulerHarness;

beforeEach(async () => {
  h = await startSchedulerHarness({
    settings: { pools: { default_pool: 128, single: 1 }, heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS },
  });
});
afterEach(async () => {
  await h.close();
});

const noop = async () => {};

/** A store whose first write to a run's task-slot item fails (a throttle, a 500, a crashed instance). */
function failingRunSlotWrite() {
  let failed = false;
  return wrapStore(h.store, (real) => ({
    updateSlotPool: async (ref: SlotPoolRef, change: SlotPoolChange) => {
      if (ref.kind === 'run_tasks' && change.acquire.length > 0 && !failed) {
        failed = true;
        throw new Error('ProvisionedThroughputExceededException (injected)');
      }
      return real.updateSlotPool(ref, change);
    },
  }));
}

describe('a pass stopped between the pool reservation and the run-slot reservation', () => {
  it('queues the TI eventually (default_pool, not contended)', async () => {
    const [versioned] = await h.register(dag({ id: 'leak' }, (d) => d.task('work', noop)));
    const run = await h.createRun(versioned!);

    const { retry } = await handleSchedulingMessages(engineDeps(h, failingRunSlotWrite()), [requestFor(run)]);
    expect(retry).toEqual(['r']); // the request is delivered again

    // Redelivery, ticks, plenty of time: fresh instances every time.
    for (let round = 0; round < 5; round += 1) {
      await h.newScheduler().handleRequests([run]);
      await h.newScheduler().tick();
      h.advance(HEARTBEAT_TIMEOUT_MS + 1);
    }
    await h.newScheduler().handleRequests([run]);

    const pool = await h.store.getSlotPool({ kind: 'pool', pool: 'default_pool' });
    expect({ state: (await h.ti(run, 'work')).state, poolHolders: Object.keys(pool.holders).length }).toEqual(
      {
        state: 'queued',
        poolHolders: 1,
      },
    );
  });

  it('queues the TI eventually (contended 1-slot pool: the audit fences and releases)', async () => {
    const [versioned] = await h.register(
      dag({ id: 'leak1' }, (d) => d.task({ id: 'work', pool: 'single' }, noop)),
    );
    const run = await h.createRun(versioned!);
    await handleSchedulingMessages(engineDeps(h, failingRunSlotWrite()), [requestFor(run)]);
    for (let round = 0; round < 3; round += 1) {
      await h.newScheduler().handleRequests([run]);
      await h.newScheduler().tick();
      h.advance(HEARTBEAT_TIMEOUT_MS + 1);
    }
    await h.newScheduler().handleRequests([run]);
    expect((await h.ti(run, 'work')).state).toBe('queued');
  });

  it('finishes a run whose max_active_runs holder was left by a pass that stopped after finishing it', async () => {
    const single = dag({ id: 'one', maxActiveRuns: 1 }, (d) => d.task('work', noop));
    const [versioned] = await h.register(single);
    const first = await h.createRun(versioned!, { runId: 'a' });
    const second = await h.createRun(versioned!, { runId: 'b' });
    await h.newScheduler().handleRequests([first, second]);
    await h.succeed(tiKey(first, 'work'));
    // The pass that finishes `first` dies right after the run's finish write.
    const dying = wrapStore(h.store, (real) => ({
      transitionDagRun: async (...args: Parameters<typeof real.transitionDagRun>) => {
        const result = await real.transitionDagRun(...args);
        if (args[2].state === 'success') throw new Error('instance killed (injected)');
        return result;
      },
    }));
    await handleSchedulingMessages(engineDeps(h, dying), [requestFor(first, [tiKey(first, 'work')])]);
    expect((await h.run(first)).state).toBe('success');
    await h.newScheduler().tick();
    expect((await h.run(second)).state).toBe('running');
  });
});
