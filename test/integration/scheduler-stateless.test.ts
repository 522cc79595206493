import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DagRunKey } from '#core/models.ts';
import { handleSchedulingMessages, runSchedulerTick } from '#engine/entrypoints.ts';
import { silentLogger } from '#engine/logger.ts';
import { PoolTurns } from '#engine/pool-turns.ts';
import { releaseOwned } from '#engine/slots.ts';
import { dag } from '#sdk/index.ts';
import { ConditionFailedError } from '#store/errors.ts';
import type { SlotPoolChange, SlotPoolRef } from '#store/port.ts';
import { engineDeps, requestFor, wrapStore } from './fault-helpers.ts';
import { type SchedulerHarness, startSchedulerHarness, tiKey } from './scheduler-harness.ts';

/**
 * The scheduler keeps no state between calls: pools, max_active_tasks, max_active_runs, waiting
 * runs and the reconcile cursor live in the store. Every call here runs in a fresh instance, and
 * several run at once, as Lambda invocations do.
 */
let h: SchedulerHarness;
const HEARTBEAT_TIMEOUT_MS = 30_000;

beforeEach(async () => {
  h = await startSchedulerHarness({
    settings: {
      pools: { default_pool: 128, single: 1, pair: 2 },
      heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS,
      maxRunsPerPass: 2,
    },
  });
});

afterEach(async () => {
  await h.close();
});

const noop = async () => {};

function pooled(id: string, pool: string, tasks = 3) {
  return dag({ id }, (d) => {
    for (let index = 0; index < tasks; index += 1) d.task({ id: `t${index}`, pool }, noop);
  });
}

/** The store, counting the reads, writes and refused writes of named pools. */
function countingPoolStore() {
  const counts = { reads: 0, writes: 0, refused: 0 };
  const store = wrapStore(h.store, (real) => ({
    updateSlotPool: async (ref: SlotPoolRef, change: SlotPoolChange) => {
      if (ref.kind === 'pool') counts.writes += 1;
      try {
        return await real.updateSlotPool(ref, change);
      } catch (error) {
        if (ref.kind === 'pool' && error instanceof ConditionFailedError) counts.refused += 1;
        throw error;
      }
    },
    getSlotPool: async (ref: SlotPoolRef) => {
      if (ref.kind === 'pool') counts.reads += 1;
      return real.getSlotPool(ref);
    },
  }));
  return { store, counts };
}

async function queuedCount(runs: DagRunKey[]): Promise<number> {
  let count = 0;
  for (const run of runs) count += (await h.queuedTaskIds(run)).length;
  return count;
}

describe('Stateless scheduler: pools', () => {
  it('admits one TI into a 1-slot pool when each run is scheduled by its own instance at once', async () => {
    const [versioned] = await h.register(pooled('solo', 'single'));
    const runs = await Promise.all(['a', 'b', 'c'].map((runId) => h.createRun(versioned!, { runId })));

    await Promise.all(runs.map((run) => h.newScheduler().handleRequests([run])));

    expect(await queuedCount(runs)).toBe(1);
  });

  it('lets an instance that did not queue a TI free its slot', async () => {
    const [versioned] = await h.register(pooled('solo', 'single', 2));
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);
    await h.succeed(tiKey(run, 't0'));

    await h.newScheduler().handleRequests([run]);

    expect(await h.states(run)).toEqual({ t0: 'success', t1: 'queued' });
  });

  it('keeps a 2-slot pool at 2 with duplicated requests handled by concurrent instances', async () => {
    const [versioned] = await h.register(pooled('duo', 'pair', 6));
    const run = await h.createRun(versioned!);

    await Promise.all([1, 2, 3, 4].map(() => h.newScheduler().handleRequests([run, run])));

    expect(await queuedCount([run])).toBe(2);
  });

  it('takes turns on a pool between the passes of one batch: no write of one loses to another', async () => {
    const [versioned] = await h.register(pooled('shared', 'default_pool', 3));
    const runs = await Promise.all(
      ['a', 'b', 'c', 'd', 'e', 'f'].map((runId) => h.createRun(versioned!, { runId })),
    );
    const { store, counts } = countingPoolStore();

    // One batch naming six runs: its passes run four at a time in one instance.
    const { retry } = await handleSchedulingMessages(
      engineDeps(h, store),
      runs.map((run) => requestFor(run)),
    );

    expect(retry).toEqual([]);
    expect(await queuedCount(runs)).toBe(18);
    expect(counts.refused).toBe(0);
    // A turn starts from the state the turn before it left: only the passes that began while
    // others' turns were under way read the pool, once each.
    expect(counts.reads).toBeGreaterThanOrEqual(1);
    expect(counts.reads).toBeLessThanOrEqual(runs.length);
  });

  it('reads the DAG record once for the passes of one batch, also those running side by side', async () => {
    const [versioned] = await h.register(pooled('shared_record', 'default_pool', 2));
    const runs = await Promise.all(
      ['a', 'b', 'c', 'd', 'e', 'f'].map((runId) => h.createRun(versioned!, { runId })),
    );
    // Started (a queued run's start reads the record again, to see a pause made since), t0 ended.
    await handleSchedulingMessages(
      engineDeps(h, h.store),
      runs.map((run) => requestFor(run)),
    );
    for (const run of runs) await h.succeed(tiKey(run, 't0'));
    let reads = 0;
    const store = wrapStore(h.store, (real) => ({
      getDag: async (dagId: string) => {
        reads += 1;
        return real.getDag(dagId);
      },
    }));

    const { retry } = await handleSchedulingMessages(
      engineDeps(h, store),
      runs.map((run) => requestFor(run)),
    );

    expect(retry).toEqual([]);
    expect(await queuedCount(runs)).toBe(6);
    expect(reads).toBe(1);
  });

  it('forgets the state a turn left once a pass gives slots back outside the turns', async () => {
    const ref: SlotPoolRef = { kind: 'pool', pool: 'pair' };
    const holder = { id: 'x#r#t0#-1#1', slots: 1, tryNumber: 1, passId: 'p1', at: new Date().toISOString() };
    const state = await h.store.updateSlotPool(ref, { size: 2, acquire: [holder], release: [] });
    const turns = new PoolTurns();
    await turns.take('pair', async (turn) => turns.leave('pair', turn, { state, sentAt: 0 }));

    await releaseOwned(
      { store: h.store, settings: { pools: { pair: 2 } }, log: silentLogger },
      [{ ref, id: holder.id, passId: 'p1' }],
      turns,
    );

    expect((await h.store.getSlotPool(ref)).used).toBe(0);
    await turns.take('pair', async (turn) => {
      expect(turns.leftBefore('pair', turn, 0)).toBeUndefined();
    });
  });

  it('reads the pool once in a pass that reserves in rounds', async () => {
    const wide = dag({ id: 'wide_rounds', maxActiveTasks: 1_000 }, (d) => {
      for (let index = 0; index < 40; index += 1) d.task(`t${index}`, noop);
    });
    const [versioned] = await h.register(wide);
    const run = await h.createRun(versioned!);
    const { store, counts } = countingPoolStore();

    await handleSchedulingMessages(engineDeps(h, store), [requestFor(run)]);

    expect((await h.queuedTaskIds(run)).length).toBe(40);
    expect(counts.writes).toBeGreaterThan(1);
    expect(counts.reads).toBe(1);
  });

  it("gives back a pool slot of a TI another instance queued and ended during a batch's tick", async () => {
    const one = (id: string) => dag({ id }, (d) => d.task({ id: 't0', pool: 'pair' }, noop));
    const [other, mine] = await h.register([one('a_other'), one('b_mine')]);
    await h.createRun(other!, { runId: 'x' });
    const run = await h.createRun(mine!, { runId: 'r' });
    let meddled = false;
    const store = wrapStore(h.store, (real) => ({
      getRunHead: async (key: DagRunKey) => {
        if (key.dagId === 'b_mine' && !meddled) {
          meddled = true;
          // Another instance queues the run's TI meanwhile, and it runs and succeeds.
          await h.newScheduler().handleRequests([run]);
          await h.startTi(tiKey(run, 't0'));
          await h.succeed(tiKey(run, 't0'));
        }
        return real.getRunHead(key);
      },
    }));

    await runSchedulerTick(engineDeps(h, store));

    // The tick's pass of the run gave the ended TI's slot back in the pool as in the run's item.
    const pool = await h.store.getSlotPool({ kind: 'pool', pool: 'pair' });
    expect(Object.keys(pool.holders).filter((id) => id.startsWith('b_mine'))).toEqual([]);
    expect((await h.run(run)).state).toBe('success');
  });

  it('honours max_active_tasks across concurrent instances', async () => {
    const wide = dag({ id: 'wide', maxActiveTasks: 3 }, (d) => {
      for (let index = 0; index < 8; index += 1) d.task(`t${index}`, noop);
    });
    const [versioned] = await h.register(wide);
    const run = await h.createRun(versioned!);

    await Promise.all([1, 2, 3].map(() => h.newScheduler().handleRequests([run])));

    expect(await queuedCount([run])).toBe(3);
  });
});

describe('Stateless scheduler: max_active_runs', () => {
  it('starts one run under max_active_runs 1 when two instances start runs at once', async () => {
    const single = dag({ id: 'one_at_a_time', maxActiveRuns: 1 }, (d) => {
      d.task('work', noop);
    });
    const [versioned] = await h.register(single);
    const runs = await Promise.all(['a', 'b'].map((runId) => h.createRun(versioned!, { runId })));

    await Promise.all(runs.map((run) => h.newScheduler().handleRequests([run])));

    const states = await Promise.all(runs.map(async (run) => (await h.run(run)).state));
    expect(states.sort()).toEqual(['queued', 'running']);
  });

  it('starts the next queued run once the running one finishes', async () => {
    const single = dag({ id: 'one_at_a_time', maxActiveRuns: 1 }, (d) => {
      d.task('work', noop);
    });
    const [versioned] = await h.register(single);
    const first = await h.createRun(versioned!, { runId: 'a' });
    const second = await h.createRun(versioned!, { runId: 'b' });
    await h.newScheduler().handleRequests([first, second]);
    await h.succeed(tiKey(first, 'work'));

    await h.newScheduler().handleRequests([first]);
    await h.handleQueuedRequests();

    expect((await h.run(first)).state).toBe('success');
    expect((await h.run(second)).state).toBe('running');
  });
});

describe('Stateless scheduler: reconciliation', () => {
  it('reaches every active run within ceil(active / maxRunsPerPass) ticks of fresh instances', async () => {
    const single = dag({ id: 'zombies', maxActiveRuns: 10 }, (d) => {
      d.task({ id: 'work', retries: 1, retryDelay: '10s' }, noop);
    });
    const [versioned] = await h.register(single);
    const runs: DagRunKey[] = [];
    for (const runId of ['r1', 'r2', 'r3', 'r4', 'r5']) runs.push(await h.createRun(versioned!, { runId }));
    await h.newScheduler().handleRequests(runs);
    for (const run of runs) await h.startTi(tiKey(run, 'work'));
    h.advance(HEARTBEAT_TIMEOUT_MS + 1);

    for (let tick = 0; tick < 3; tick += 1) await h.newScheduler().tick();

    for (const run of runs) expect((await h.ti(run, 'work')).state).toBe('up_for_retry');
  });

  it('reconciles the zombies of a paused DAG and frees their pool slots', async () => {
    const [versioned] = await h.register(pooled('solo', 'single', 2));
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);
    await h.startTi(tiKey(run, 't0'));
    await h.store.updateDag('solo', { isPaused: true });
    h.advance(HEARTBEAT_TIMEOUT_MS + 1);

    await h.newScheduler().tick();

    expect((await h.ti(run, 't0')).state).toBe('failed');
    expect((await h.store.getSlotPool({ kind: 'pool', pool: 'single' })).used).toBe(0);
    expect(await h.queuedTaskIds(run)).toEqual([]);
  });

  it('fails a try whose workload no worker starts after maxQueuedSends sends', async () => {
    const [versioned] = await h.register(pooled('stuck', 'default_pool', 1));
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);

    for (let round = 0; round < h.settings.maxQueuedSends; round += 1) {
      h.advance(h.settings.queuedTimeoutMs + 1);
      await h.newScheduler().tick();
    }

    const stuck = await h.ti(run, 't0');
    expect(stuck.state).toBe('failed');
    expect(stuck.errorMessage).toContain('UPDRAFT_MAX_QUEUED_SENDS');
  });
});

describe('Stateless scheduler: reservations left by a pass that stopped half way', () => {
  it('fences and releases a reservation older than the grace, then queues the TI', async () => {
    const [versioned] = await h.register(pooled('solo', 'single', 1));
    const run = await h.createRun(versioned!);
    const ti = await h.ti(run, 't0');
    const holder = {
      id: `solo#${run.runId}#t0#-1#1`,
      slots: 1,
      tryNumber: 1,
      passId: 'dead-pass',
      at: h.iso(),
      pool: 'single',
    };
    await h.store.updateSlotPool(
      { kind: 'pool', pool: 'single' },
      { size: 1, acquire: [holder], release: [] },
    );
    await h.store.updateSlotPool(
      { kind: 'run_tasks', dagId: 'solo', runId: run.runId },
      { size: 16, acquire: [holder], release: [] },
    );
    await h.newScheduler().handleRequests([run]);
    expect(await h.queuedTaskIds(run)).toEqual([]);

    h.advance(HEARTBEAT_TIMEOUT_MS + 1);
    await h.newScheduler().handleRequests([run]);
    await h.newScheduler().handleRequests([run]);

    expect(await h.queuedTaskIds(run)).toEqual(['t0']);
    // The dead pass's queue write, arriving late, is refused: the TI's revision moved on.
    await expect(
      h.store.transitionTaskInstance(
        ti,
        { state: 'none', tryNumber: 0, revision: ti.revision },
        { state: 'queued', tryNumber: 1 },
      ),
    ).rejects.toThrow();
  });
});

describe('Stateless scheduler: requests', () => {
  it('handles the other requests of a batch that holds a malformed one', async () => {
    const [versioned] = await h.register(pooled('plain', 'default_pool', 1));
    const run = await h.createRun(versioned!);
    await h.queues.queues.scheduler.send([
      { body: 'not json' },
      { body: JSON.stringify({ type: 'schedule_run', dag_id: 'plain', run_id: run.runId }) },
    ]);

    await h.handleQueuedRequests(1);

    expect(await h.queuedTaskIds(run)).toEqual(['t0']);
  });

  it('does not finish a run that a clear reset after the pass read it', async () => {
    const [versioned] = await h.register(pooled('plain', 'default_pool', 1));
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);
    await h.succeed(tiKey(run, 't0'));
    const seen = await h.run(run);
    await h.store.markRunCleared(run, 'begin');

    await expect(
      h.store.transitionDagRun(
        run,
        { state: 'running', clearCount: seen.clearCount },
        { state: 'success' },
        { owed: [] },
      ),
    ).rejects.toThrow();
    expect((await h.run(run)).state).toBe('running');
  });
});
