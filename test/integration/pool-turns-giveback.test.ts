import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DagRunKey, TaskInstance } from '#core/models.ts';
import { silentLogger } from '#engine/logger.ts';
import { PoolTurns } from '#engine/pool-turns.ts';
import { type ReservationInput, releaseOwned, reserveTaskSlots, type SlotDeps } from '#engine/slots.ts';
import { dag } from '#sdk/index.ts';
import type { RunSnapshot, SlotPoolChange, SlotPoolRef } from '#store/port.ts';
import { wrapStore } from './fault-helpers.ts';
import { type SchedulerHarness, startSchedulerHarness } from './scheduler-harness.ts';

let h: SchedulerHarness;
beforeEach(async () => {
  h = await startSchedulerHarness({
    settings: { pools: { default_pool: 128, pair: 2 }, heartbeatTimeoutMs: 30_000 },
  });
});
afterEach(async () => {
  await h.close();
});

const ref: SlotPoolRef = { kind: 'pool', pool: 'pair' };
const holder = (id: string, passId: string) => ({
  id,
  slots: 1,
  tryNumber: 1,
  passId,
  at: new Date().toISOString(),
});
const pooled = dag({ id: 'g' }, (d) => d.task({ id: 't0', pool: 'pair' }, async () => {}));

async function tiOf(runId: string) {
  const [versioned] = await h.register(pooled);
  const run = await h.createRun(versioned!, { runId });
  const snapshot = (await h.store.getRunSnapshot(run))!;
  return { run, snapshot, ti: snapshot.taskInstances[0]! };
}

function input(
  run: DagRunKey,
  snapshot: RunSnapshot,
  ti: TaskInstance,
  turns: PoolTurns,
  extra: Partial<ReservationInput> = {},
): ReservationInput {
  return {
    run,
    maxActiveTasks: 16,
    passId: `pass-${run.runId}`,
    nowMs: Date.now(),
    candidates: [ti],
    taskSlots: snapshot.taskSlots,
    release: [],
    maxToAdmit: 16,
    graceMs: 30_000,
    turns,
    ...extra,
  };
}

/** Pool turns and the give-backs a batch's passes make outside them (`releaseOwned`). */
describe('pool turns and give-backs outside the turns', () => {
  it('a pass whose pool read predates a give-back reads the pool again in its turn', async () => {
    await h.store.updateSlotPool(ref, {
      size: 2,
      acquire: [holder('x#a#t#-1#1', 'p1'), holder('x#b#t#-1#1', 'p2')],
      release: [],
    });
    const { run, snapshot, ti } = await tiOf('r1');
    const turns = new PoolTurns();
    const headReadAt = performance.now();
    const asOf = turns.turn('pair');
    // The pass's own read of the pool in its view of the run: full.
    const seen = await h.store.getSlotPool(ref);
    await releaseOwned(
      { store: h.store, settings: { pools: { pair: 2 } }, log: silentLogger },
      [{ ref, id: 'x#a#t#-1#1', passId: 'p1' }],
      turns,
    );
    expect((await h.store.getSlotPool(ref)).used).toBe(1);
    const deps: SlotDeps = { store: h.store, settings: { pools: { pair: 2 } }, log: silentLogger };
    const result = await reserveTaskSlots(
      deps,
      input(run, snapshot, ti, turns, {
        poolStates: new Map([['pair', seen]]),
        poolAsOf: new Map([['pair', asOf]]),
        headReadAt,
      }),
    );
    expect(result.admitted.map((each) => each.taskId)).toEqual(['t0']);
  });

  it('a turn whose write was answered after a give-back hands its state to no later turn', async () => {
    await h.store.updateSlotPool(ref, { size: 2, acquire: [holder('x#a#t#-1#1', 'p1')], release: [] });
    const one = await tiOf('r1');
    const two = await tiOf('r2');
    const turns = new PoolTurns();
    const headReadAt = performance.now();
    let raced = false;
    const store = wrapStore(h.store, (real) => ({
      updateSlotPool: async (r: SlotPoolRef, change: SlotPoolChange) => {
        const after = await real.updateSlotPool(r, change);
        if (r.kind === 'pool' && change.acquire.length > 0 && !raced) {
          raced = true;
          // Another pass of the batch gives back while this write's answer is on its way.
          await releaseOwned(
            { store: real, settings: { pools: { pair: 2 } }, log: silentLogger },
            [{ ref, id: 'x#a#t#-1#1', passId: 'p1' }],
            turns,
          );
        }
        return after;
      },
    }));
    const deps: SlotDeps = { store, settings: { pools: { pair: 2 } }, log: silentLogger };
    const first = await reserveTaskSlots(deps, input(one.run, one.snapshot, one.ti, turns, { headReadAt }));
    expect(first.admitted).toHaveLength(1);
    expect((await h.store.getSlotPool(ref)).used).toBe(1);
    const second = await reserveTaskSlots(deps, input(two.run, two.snapshot, two.ti, turns, { headReadAt }));
    expect(second.admitted.map((each) => each.runId)).toEqual(['r2']);
  });
});
