import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DagRunKey, TaskInstanceKey } from '#core/models.ts';
import { handleSchedulingMessages } from '#engine/entrypoints.ts';
import { dag } from '#sdk/index.ts';
import type { SlotPoolChange, SlotPoolRef } from '#store/port.ts';
import { engineDeps, requestFor, wrapStore } from './fault-helpers.ts';
import { type SchedulerHarness, startSchedulerHarness, tiKey } from './scheduler-harness.ts';

const HEARTBEAT_TIMEOUT_MS = 30_000;
let h: SchedulerHarness;

beforeEach(async () => {
  h = await startSchedulerHarness({
    settings: {
      pools: { default_pool: 128, single: 1, a: 5, b: 5 },
      heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS,
    },
  });
});
afterEach(async () => {
  await h.close();
});

const noop = async () => {};
const poolRef: SlotPoolRef = { kind: 'pool', pool: 'single' };

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

describe('a pass whose write to its second pool fails (not a lost race)', () => {
  it('gives back what it took in the first pool, leaving nothing for the grace to find', async () => {
    const [versioned] = await h.register(
      dag({ id: 'two_pools' }, (d) => {
        d.task({ id: 'in_a', pool: 'a' }, noop);
        d.task({ id: 'in_b', pool: 'b' }, noop);
      }),
    );
    const run = await h.createRun(versioned!);
    const failingB = wrapStore(h.store, (real) => ({
      updateSlotPool: async (ref: SlotPoolRef, change: SlotPoolChange) => {
        if (ref.kind === 'pool' && ref.pool === 'b' && change.acquire.length > 0) {
          throw new Error('InternalServerError (injected)');
        }
        return real.updateSlotPool(ref, change);
      },
    }));
    const { retry } = await handleSchedulingMessages(engineDeps(h, failingB), [requestFor(run)]);
    expect(retry).toEqual(['r']);
    expect(Object.keys((await h.store.getSlotPool({ kind: 'pool', pool: 'a' })).holders)).toEqual([]);

    // The redelivery takes both.
    await h.newScheduler().handleRequests([run]);
    expect([(await h.ti(run, 'in_a')).state, (await h.ti(run, 'in_b')).state]).toEqual(['queued', 'queued']);
  });
});

describe('the tick audit of a pool', () => {
  it('reaches a leaked holder behind more live old holders than one tick checks', async () => {
    const tasks = Array.from({ length: 30 }, (_, index) => `long_${index}`);
    const [versioned] = await h.register(
      dag({ id: 'longs', maxActiveTasks: 64 }, (d) => {
        for (const id of tasks) d.task(id, noop);
      }),
    );
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);
    // 30 queued TIs hold their slots (live however old); then a holder no TI stands behind,
    // younger than all of them: what a pass that stopped between two writes leaves.
    h.advance(1_000);
    const ref: SlotPoolRef = { kind: 'pool', pool: 'default_pool' };
    const leaked = 'longs#gone#ghost#-1#1';
    await h.store.updateSlotPool(ref, {
      size: 128,
      acquire: [{ id: leaked, slots: 1, tryNumber: 1, passId: 'stopped', at: h.iso() }],
      release: [],
    });
    h.advance(HEARTBEAT_TIMEOUT_MS + 1);
    for (let tick = 0; tick < 3; tick += 1) {
      await h.newScheduler().tick();
      h.advance(h.settings.schedulerTickMs);
    }
    const holders = Object.keys((await h.store.getSlotPool(ref)).holders);
    expect({ leaked: holders.includes(leaked), live: holders.length }).toEqual({ leaked: false, live: 30 });
  });
});

/** A store whose first write to a run's task-slot item waits until `resume()`: a pass slowed down mid-flight. */
function slowRunSlotWrite() {
  let resume = () => {};
  const resumed = new Promise<void>((resolve) => {
    resume = resolve;
  });
  let reached = false;
  const store = wrapStore(h.store, (real) => ({
    updateSlotPool: async (ref: SlotPoolRef, change: SlotPoolChange) => {
      if (ref.kind === 'run_tasks' && change.acquire.length > 0 && !reached) {
        reached = true;
        await resumed;
      }
      return real.updateSlotPool(ref, change);
    },
  }));
  return { store, resume, reached: () => reached };
}

/**
 * Queues and starts the run's `work`, has its try defer (try 1, deferral 1), runs the pass the
 * deferred report asks for (a deferred TI holds no slot), then its trigger fires: `scheduled` to
 * resume at the same try.
 */
async function deferAndFire(run: DagRunKey): Promise<TaskInstanceKey> {
  const key = tiKey(run, 'work');
  await h.newScheduler().handleRequests([run]);
  const started = await h.startTi(key);
  const deferred = await h.store.transitionTaskInstance(
    started,
    { state: 'running', tryNumber: 1 },
    { state: 'deferred', deferralSeq: 1, nextMethod: 'executeComplete', nextKwargs: '{}' },
  );
  await handleSchedulingMessages(engineDeps(h, h.store), [requestFor(run, [key])]);
  expect(Object.keys((await h.store.getSlotPool(poolRef)).holders)).toEqual([]);
  await h.store.transitionTaskInstance(deferred, { state: 'deferred', tryNumber: 1 }, { state: 'scheduled' });
  return key;
}

describe('a task resuming from a deferral whose pass is slow between its pool and run-slot reservations', () => {
  it("keeps that pass's pool reservation: another pass neither gives it back nor admits past it", async () => {
    const [resuming, other] = await h.register([
      dag({ id: 'resuming' }, (d) => d.task({ id: 'work', pool: 'single' }, noop)),
      dag({ id: 'other' }, (d) => d.task({ id: 'work', pool: 'single' }, noop)),
    ]);
    const run = await h.createRun(resuming!);
    const key = await deferAndFire(run);

    // The resuming pass reserves the pool slot (`…#1.1`), then stalls before its run-slot write.
    const slow = slowRunSlotWrite();
    const pass = handleSchedulingMessages(engineDeps(h, slow.store), [requestFor(run, [key])]);
    while (!slow.reached()) await new Promise((resolve) => setImmediate(resolve));
    const reserved = await h.store.getSlotPool(poolRef);
    expect(Object.keys(reserved.holders)).toEqual([`resuming#${run.runId}#work#-1#1.1`]);

    // Meanwhile a tick (over the same run) and a pass over another run of the pool.
    await h.newScheduler().tick();
    const second = await h.createRun(other!);
    await h.newScheduler().handleRequests([second]);
    expect((await h.store.getSlotPool(poolRef)).holders).toEqual(reserved.holders);

    slow.resume();
    await pass;
    expect({ resuming: (await h.ti(run, 'work')).state, other: (await h.ti(second, 'work')).state }).toEqual({
      resuming: 'queued',
      other: 'none', // waits for the pool
    });
  });
});

describe('a resumed try handed back by its worker (a worker stopping)', () => {
  it('is queued again by the next pass: the holder it ran with is given back at once, not after the grace', async () => {
    const [resuming] = await h.register(
      dag({ id: 'handback' }, (d) => d.task({ id: 'work', pool: 'single' }, noop)),
    );
    const run = await h.createRun(resuming!);
    const key = await deferAndFire(run);
    await handleSchedulingMessages(engineDeps(h, h.store), [requestFor(run, [key])]);
    expect((await h.ti(run, 'work')).state).toBe('queued');
    await h.startTi(key);
    await h.lifecycle.finish(key, 1, { state: 'handed_back' }, { reportId: 'hand-back-1' });
    expect((await h.ti(run, 'work')).state).toBe('scheduled');

    // No time passes: the pass the hand-back asks for queues it again (the grace is not waited out).
    await handleSchedulingMessages(engineDeps(h, h.store), [requestFor(run, [key])]);
    await h.newScheduler().tick();
    await handleSchedulingMessages(engineDeps(h, h.store), [requestFor(run, [key])]);
    const pool = await h.store.getSlotPool(poolRef);
    expect({ state: (await h.ti(run, 'work')).state, holders: Object.keys(pool.holders) }).toEqual({
      state: 'queued',
      holders: [`handback#${run.runId}#work#-1#1.1`],
    });
  });
});
