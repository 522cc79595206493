import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dag } from '#sdk/index.ts';
import { ItemTooLargeError } from '#store/errors.ts';
import { type SchedulerHarness, startSchedulerHarness, tiKey } from './scheduler-harness.ts';

let h: SchedulerHarness;

beforeEach(async () => {
  h = await startSchedulerHarness({ settings: { pools: { default_pool: 128, small: 2, single: 1 } } });
});

afterEach(async () => {
  await h.close();
});

const noop = async () => {};
const FIVE = ['p0', 'p1', 'p2', 'p3', 'p4'];

function pooledDag(pool: string) {
  return dag({ id: 'pooled' }, (d) => {
    for (const id of FIVE) d.task({ id, pool }, noop);
  });
}

describe('Scheduler pools', () => {
  it('queues only as many task instances as the pool has slots', async () => {
    const [versioned] = await h.register(pooledDag('small'));
    const run = await h.createRun(versioned!);

    await h.scheduler.handleRequests([run]);

    expect(await h.queuedTaskIds(run)).toEqual(['p0', 'p1']);
    expect((await h.drainWorkloads()).map((w) => w.ti.task_id)).toEqual(['p0', 'p1']);
  });

  it('queues exactly one more when one of them succeeds', async () => {
    const [versioned] = await h.register(pooledDag('small'));
    const run = await h.createRun(versioned!);
    await h.scheduler.handleRequests([run]);
    await h.startTi(tiKey(run, 'p1'));
    await h.succeed(tiKey(run, 'p0'));

    await h.scheduler.handleRequests([run]);

    expect(await h.states(run)).toEqual({
      p0: 'success',
      p1: 'running',
      p2: 'queued',
      p3: 'none',
      p4: 'none',
    });
    expect((await h.drainWorkloads()).map((w) => w.ti.task_id)).toEqual(['p2']);
  });

  it('counts a pool across runs', async () => {
    const [versioned] = await h.register(pooledDag('small'));
    const first = await h.createRun(versioned!, { runId: 'first' });
    const second = await h.createRun(versioned!, { runId: 'second' });

    await h.scheduler.handleRequests([first, second]);

    expect(await h.queuedTaskIds(first)).toEqual(['p0', 'p1']);
    expect(await h.queuedTaskIds(second)).toEqual([]);
  });

  it('asks at once for a run waiting on a pool when another run frees a slot of it', async () => {
    const [versioned] = await h.register(pooledDag('small'));
    const first = await h.createRun(versioned!, { runId: 'first' });
    const second = await h.createRun(versioned!, { runId: 'second' });
    await h.scheduler.handleRequests([first, second]);
    await h.drainWorkloads();
    // The first run has queued nothing more of its own, so its freed slot can only go to the second.
    const allOfFirst = FIVE.map((id) => tiKey(first, id));
    for (const key of allOfFirst.slice(0, 2)) await h.succeed(key);

    await h.scheduler.handleRequests([first]);

    expect(await h.queuedTaskIds(first)).toEqual(['p2', 'p3']);
    expect(await h.queuedTaskIds(second)).toEqual([]);
    for (const key of allOfFirst.slice(2, 4)) await h.succeed(key);
    await h.scheduler.handleRequests([first]);
    await h.handleQueuedRequests();
    expect(await h.queuedTaskIds(first)).toEqual(['p4']);
    expect(await h.queuedTaskIds(second)).toEqual(['p0']);
  });

  it('leaves unqueued a task instance that asks for an unknown pool', async () => {
    const [versioned] = await h.register(pooledDag('nowhere'));
    const run = await h.createRun(versioned!);

    await h.scheduler.handleRequests([run]);

    expect(await h.queuedTaskIds(run)).toEqual([]);
    expect(await h.drainWorkloads()).toEqual([]);
    expect((await h.run(run)).state).toBe('running');
  });
});

describe('Scheduler priority', () => {
  it('gives the only slot of a pool to the task with the higher priority weight', async () => {
    const weighted = dag({ id: 'weighted' }, (d) => {
      d.task({ id: 'a_light', pool: 'single', priorityWeight: 1 }, noop);
      d.task({ id: 'z_heavy', pool: 'single', priorityWeight: 10 }, noop);
    });
    const [versioned] = await h.register(weighted);
    const run = await h.createRun(versioned!);

    await h.scheduler.handleRequests([run]);
    expect(await h.queuedTaskIds(run)).toEqual(['z_heavy']);
    await h.succeed(tiKey(run, 'z_heavy'));
    await h.scheduler.handleRequests([run]);

    expect(await h.states(run)).toEqual({ a_light: 'queued', z_heavy: 'success' });
  });
});

describe('Scheduler max_active_tasks', () => {
  it('queues at most maxActiveTasks task instances of each run, as Airflow 3 counts it', async () => {
    const capped = dag({ id: 'capped', maxActiveTasks: 3 }, (d) => {
      for (const id of FIVE) d.task(id, noop);
    });
    const [versioned] = await h.register(capped);
    const first = await h.createRun(versioned!, { runId: 'first' });
    const second = await h.createRun(versioned!, { runId: 'second' });

    await h.scheduler.handleRequests([first, second]);
    expect(await h.queuedTaskIds(first)).toEqual(['p0', 'p1', 'p2']);
    expect(await h.queuedTaskIds(second)).toEqual(['p0', 'p1', 'p2']);
    await h.succeed(tiKey(first, 'p0'));
    await h.scheduler.handleRequests([first]);

    expect(await h.queuedTaskIds(first)).toEqual(['p1', 'p2', 'p3']);
    expect(await h.queuedTaskIds(second)).toEqual(['p0', 'p1', 'p2']);
  });
});

describe('Scheduler max_active_runs', () => {
  function oneAtATime() {
    return dag({ id: 'serial', maxActiveRuns: 1 }, (d) => {
      d.task('only', noop);
    });
  }

  it('keeps a second run queued while the first one runs', async () => {
    const [versioned] = await h.register(oneAtATime());
    const first = await h.createRun(versioned!, { runId: 'first' });
    const second = await h.createRun(versioned!, { runId: 'second' });

    await h.scheduler.handleRequests([first, second]);

    expect([(await h.run(first)).state, (await h.run(second)).state]).toEqual(['running', 'queued']);
    expect(await h.states(second)).toEqual({ only: 'none' });
  });

  it('asks for the queued run to be started when the first one finishes', async () => {
    const [versioned] = await h.register(oneAtATime());
    const first = await h.createRun(versioned!, { runId: 'first' });
    const second = await h.createRun(versioned!, { runId: 'second' });
    await h.scheduler.handleRequests([first, second]);
    await h.succeed(tiKey(first, 'only'));
    await h.drainWorkloads();

    await h.scheduler.handleRequests([first]);
    await h.handleQueuedRequests();

    expect([(await h.run(first)).state, (await h.run(second)).state]).toEqual(['success', 'running']);
    expect(await h.states(second)).toEqual({ only: 'queued' });
    expect((await h.drainWorkloads()).map((w) => w.ti.run_id)).toEqual(['second']);
  });

  it('starts only one of several queued runs when the running one finishes', async () => {
    const [versioned] = await h.register(oneAtATime());
    const [first, second, third] = await Promise.all(
      ['first', 'second', 'third'].map((runId) => h.createRun(versioned!, { runId })),
    );
    await h.scheduler.handleRequests([first!, second!, third!]);
    await h.succeed(tiKey(first!, 'only'));

    await h.scheduler.handleRequests([first!]);
    await h.handleQueuedRequests();

    const states = await Promise.all([first!, second!, third!].map(async (run) => (await h.run(run)).state));
    expect(states).toEqual(['success', 'running', 'queued']);
  });

  it('starts no queued run while a running run sorts after them', async () => {
    const [versioned] = await h.register(oneAtATime());
    const running = await h.createRun(versioned!, { runId: 'z_running' });
    await h.scheduler.handleRequests([running]);
    const queued = await Promise.all(['a', 'b', 'c'].map((runId) => h.createRun(versioned!, { runId })));

    await h.scheduler.handleRequests(queued);

    const states = await Promise.all(queued.map(async (run) => (await h.run(run)).state));
    expect(states).toEqual(['queued', 'queued', 'queued']);
  });
});

describe('Scheduler metrics', () => {
  it('sums executable and starving task instances over every active run', async () => {
    const [versioned] = await h.register(pooledDag('small'));
    const first = await h.createRun(versioned!, { runId: 'first' });
    const second = await h.createRun(versioned!, { runId: 'second' });

    await h.scheduler.handleRequests([first, second]);

    const gauges = await h.gauges();
    expect(gauges['scheduler.tasks.executable']).toBe(10);
    expect(gauges['scheduler.tasks.starving']).toBe(8);
  });

  it('counts scheduled task instances and gauges executable and starving ones', async () => {
    const [versioned] = await h.register(pooledDag('small'));
    const run = await h.createRun(versioned!);

    await h.scheduler.handleRequests([run]);

    expect((await h.counters())['ti.scheduled']).toBe(2);
    const gauges = await h.gauges();
    expect(gauges['scheduler.tasks.executable']).toBe(5);
    expect(gauges['scheduler.tasks.starving']).toBe(3);
  });

  it('adds the next admissions to the counter and gauges the remaining ones', async () => {
    const [versioned] = await h.register(pooledDag('small'));
    const run = await h.createRun(versioned!);
    await h.scheduler.handleRequests([run]);
    await h.succeed(tiKey(run, 'p0'));

    await h.scheduler.handleRequests([run]);

    expect((await h.counters())['ti.scheduled']).toBe(3);
    const gauges = await h.gauges();
    expect(gauges['scheduler.tasks.executable']).toBe(3);
    expect(gauges['scheduler.tasks.starving']).toBe(2);
  });
});

describe('Scheduler reservations wider than one store update', () => {
  const WIDE = 120;
  const wide = () =>
    dag({ id: 'wide', maxActiveTasks: 500 }, (d) => {
      for (let i = 0; i < WIDE; i += 1) d.task(`t${String(i).padStart(3, '0')}`, noop);
    });

  it('admits every ready task instance in one pass, in rounds that each fit DynamoDB expression limits', async () => {
    // The embedded store refuses any expression over 4 KB, as DynamoDB does: one update for 120
    // holders would be refused, so the pass must split it.
    const [versioned] = await h.register(wide());
    const run = await h.createRun(versioned!);

    await h.scheduler.handleRequests([run]);

    expect(await h.queuedTaskIds(run)).toHaveLength(WIDE);
    const pool = await h.store.getSlotPool({ kind: 'pool', pool: 'default_pool' });
    expect(pool.used).toBe(WIDE);
    const slots = await h.store.getSlotPool({ kind: 'run_tasks', dagId: run.dagId, runId: run.runId });
    expect(slots.used).toBe(WIDE);
  });

  it('gives back as many ended tries at once, and admits no more than the pool holds', async () => {
    await h.close();
    h = await startSchedulerHarness({ settings: { pools: { default_pool: 100 } } });
    const [versioned] = await h.register(wide());
    const run = await h.createRun(versioned!);
    await h.scheduler.handleRequests([run]);
    expect(await h.queuedTaskIds(run)).toHaveLength(100);

    const queued = await h.queuedTaskIds(run);
    for (const taskId of queued) {
      await h.startTi(tiKey(run, taskId));
      await h.succeed(tiKey(run, taskId));
    }
    await h.scheduler.handleRequests([run]);

    expect(Object.values(await h.states(run)).filter((state) => state === 'queued')).toHaveLength(WIDE - 100);
    const pool = await h.store.getSlotPool({ kind: 'pool', pool: 'default_pool' });
    expect(pool.used).toBe(WIDE - 100);
  });
});

describe('Scheduler reservations with many stale holders', () => {
  it('gives back every ended try before admitting, so a pool freed in the same pass is used at once', async () => {
    await h.close();
    h = await startSchedulerHarness({ settings: { pools: { default_pool: 128, p: 4 } } });
    const mix = dag({ id: 'mix', maxActiveTasks: 100 }, (d) => {
      const first = [];
      for (let i = 0; i < 16; i += 1) {
        first.push(
          d.task({ id: `a${String(i).padStart(2, '0')}`, priorityWeight: 10, weightRule: 'absolute' }, noop),
        );
      }
      for (let i = 0; i < 4; i += 1)
        first.push(d.task({ id: `b${i}`, pool: 'p', weightRule: 'absolute' }, noop));
      for (let i = 0; i < 4; i += 1)
        d.task({ id: `c${i}`, pool: 'p', weightRule: 'absolute' }, noop).after(...first);
    });
    const [versioned] = await h.register(mix);
    const run = await h.createRun(versioned!);
    await h.scheduler.handleRequests([run]);
    const queued = await h.queuedTaskIds(run);
    expect(queued).toHaveLength(20);
    for (const taskId of queued) {
      await h.startTi(tiKey(run, taskId));
      await h.succeed(tiKey(run, taskId));
    }

    // 20 ended tries to give back (more than one round), c0-c3 waiting on pool p they free.
    await h.scheduler.handleRequests([run]);

    expect((await h.queuedTaskIds(run)).sort()).toEqual(['c0', 'c1', 'c2', 'c3']);
    const p = await h.store.getSlotPool({ kind: 'pool', pool: 'p' });
    expect(p.used).toBe(4);
  });
});

describe('Scheduler reservation rounds and waiting lists', () => {
  it('keeps a run its place on a waiting list while it gives back many ended tries', async () => {
    await h.close();
    h = await startSchedulerHarness({ settings: { pools: { default_pool: 128, p: 2 } } });
    const mixed = dag({ id: 'mixed', maxActiveTasks: 100 }, (d) => {
      for (let i = 0; i < 17; i += 1) d.task(`a${String(i).padStart(2, '0')}`, noop);
      for (let i = 0; i < 3; i += 1) d.task({ id: `p${i}`, pool: 'p' }, noop);
    });
    const [versioned] = await h.register(mixed);
    const run = await h.createRun(versioned!);
    // A holder of other work keeps one of p's two slots.
    await h.store.updateSlotPool(
      { kind: 'pool', pool: 'p' },
      { size: 2, acquire: [{ id: 'other', slots: 1, tryNumber: 1, passId: 'x', at: h.iso() }], release: [] },
    );
    await h.scheduler.handleRequests([run]);
    const first = await h.queuedTaskIds(run);
    expect(first).toHaveLength(18);
    const waitingSince = (await h.store.getSlotPool({ kind: 'pool', pool: 'p' })).waiting;
    expect(Object.keys(waitingSince)).toHaveLength(1);

    for (const taskId of first) {
      await h.startTi(tiKey(run, taskId));
      await h.succeed(tiKey(run, taskId));
    }
    h.advance(5_000);
    // 18 ended tries to give back (rounds of their own), one p task admitted, one still waiting.
    await h.scheduler.handleRequests([run]);

    expect((await h.queuedTaskIds(run)).filter((id) => id.startsWith('p'))).toHaveLength(1);
    expect((await h.store.getSlotPool({ kind: 'pool', pool: 'p' })).waiting).toEqual(waitingSince);
  });
});

describe('Scheduler reservation rounds under store errors', () => {
  it('queues what earlier rounds reserved when a later round fails, and asks for another pass', async () => {
    const wideRun = dag({ id: 'wide_err', maxActiveTasks: 500 }, (d) => {
      for (let i = 0; i < 100; i += 1) d.task(`t${String(i).padStart(3, '0')}`, noop);
    });
    const [versioned] = await h.register(wideRun);
    const run = await h.createRun(versioned!);
    const update = h.store.updateSlotPool.bind(h.store);
    let runAcquires = 0;
    h.store.updateSlotPool = async (ref, change) => {
      if (ref.kind === 'run_tasks' && change.acquire.length > 0 && ++runAcquires === 2) {
        throw Object.assign(new Error('Throughput exceeds the current capacity'), {
          name: 'ProvisionedThroughputExceededException',
        });
      }
      return update(ref, change);
    };
    try {
      await h.scheduler.handleRequests([run]);
    } finally {
      h.store.updateSlotPool = update;
    }
    const first = await h.queuedTaskIds(run);
    expect(first.length).toBeGreaterThan(0);
    expect(first.length).toBeLessThan(100);
    // Another pass was asked for, and it admits the rest.
    expect(await h.handleQueuedRequests()).toBeGreaterThan(0);
    expect(await h.queuedTaskIds(run)).toHaveLength(100);
  });
});

describe('Scheduler with a pool item at the store item limit', () => {
  it('starves the ready task instances as pool_full instead of failing the pass', async () => {
    const [versioned] = await h.register(pooledDag('default_pool'));
    const run = await h.createRun(versioned!);
    // Holders of other (long gone) work fill the pool's item up to DynamoDB's 400 KB: long ones
    // until the next is refused, then shorter ones, until not even a short one fits.
    const poolRef = { kind: 'pool' as const, pool: 'default_pool' };
    let filled = 0;
    for (const length of [4_000, 400, 40, 4]) {
      for (;;) {
        const id = `${String(filled).padStart(4, '0')}${'x'.repeat(length)}`;
        const filler = { id, slots: 1, tryNumber: 1, passId: 'f', at: new Date().toISOString() };
        try {
          await h.store.updateSlotPool(poolRef, { size: 100_000, acquire: [filler], release: [] });
          filled += 1;
        } catch (error) {
          expect(error).toBeInstanceOf(ItemTooLargeError);
          break;
        }
      }
    }

    await h.scheduler.handleRequests([run]);

    expect(await h.queuedTaskIds(run)).toEqual([]);
    expect(await h.drainWorkloads()).toEqual([]);
    // The pass ran to its end (a failed pass records no readiness): all five ready, all starving.
    expect([...h.readiness.values()]).toEqual([{ ready: 5, starving: 5 }]);
    expect((await h.store.getSlotPool(poolRef)).used).toBe(filled);
    const slots = await h.store.getSlotPool({ kind: 'run_tasks', dagId: run.dagId, runId: run.runId });
    expect(slots.used).toBe(0);
  });
});
