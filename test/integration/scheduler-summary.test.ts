import { DeleteCommand } from '@aws-sdk/lib-dynamodb';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DagRunKey } from '#core/models.ts';
import { clearTaskInstances } from '#engine/clear.ts';
import { handleSchedulingMessages, runSchedulerTick } from '#engine/entrypoints.ts';
import { CLEAR_STALE_MS } from '#engine/pass-view.ts';
import { dag } from '#sdk/index.ts';
import { runSummaryKey } from '#store/keys.ts';
import type { Store } from '#store/port.ts';
import { engineDeps, requestFor, wrapStore } from './fault-helpers.ts';
import { type SchedulerHarness, startSchedulerHarness, tiKey } from './scheduler-harness.ts';

/**
 * The per-task state summary under faults (src/engine/ADR.md, Decision 2): a pass reads the run's
 * head and only the TIs it may act on, and still decides as if it had read the whole run.
 */
let h: SchedulerHarness;
const HEARTBEAT_TIMEOUT_MS = 30_000;
const noop = async () => {};

beforeEach(async () => {
  h = await startSchedulerHarness({
    settings: {
      pools: { default_pool: 128, narrow: 1, wide: 4, single: 1 },
      heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS,
    },
  });
});
afterEach(async () => {
  await h.close();
});

/** The store, counting the calls made to some of its methods. */
function countingStore(names: readonly (keyof Store)[]): { store: Store; calls: Record<string, number> } {
  const calls: Record<string, number> = {};
  const store = wrapStore(h.store, (real) =>
    Object.fromEntries(
      names.map((name) => [
        name,
        (...args: unknown[]) => {
          calls[name] = (calls[name] ?? 0) + 1;
          return (real[name] as (...a: unknown[]) => unknown).apply(real, args);
        },
      ]),
    ),
  );
  return { store, calls };
}

async function summaryOf(run: DagRunKey) {
  return (await h.store.getRunHead(run))?.summary;
}

describe('ready TIs read only up to the free room of the pools (head-of-line blocking)', () => {
  it('queues a ready TI of a pool with room while higher-priority TIs of the run starve on a full pool', async () => {
    const [hog, mixed] = await h.register([
      dag({ id: 'hog' }, (d) => {
        d.task({ id: 'hold', pool: 'narrow' }, noop);
      }),
      dag({ id: 'mixed' }, (d) => {
        for (let index = 0; index < 5; index += 1)
          d.task({ id: `n${index}`, pool: 'narrow', priorityWeight: 10 }, noop);
        d.task({ id: 'w', pool: 'wide', priorityWeight: 1 }, noop);
      }),
    ]);
    // Another DAG's long task holds the only slot of `narrow`.
    const hogRun = await h.createRun(hog!);
    await h.newScheduler().handleRequests([hogRun]);
    await h.startTi(tiKey(hogRun, 'hold'));

    const run = await h.createRun(mixed!);
    await h.newScheduler().handleRequests([run]);
    await h.newScheduler().tick();
    await h.newScheduler().tick();

    // `wide` has 4 free slots: `w` is ready and nothing stops it but the pass not reading it.
    // Before the summary every ready TI was a candidate and `w` was admitted at once.
    expect((await h.ti(run, 'w')).state).toBe('queued');
  });
});

/** Waits until the run's TIs are all written (createDagRun writes them in parallel with the summary). */
async function allTisWritten(run: DagRunKey, count: number): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    if (((await h.store.getRunSnapshot(run))?.taskInstances.length ?? 0) >= count) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error("the run's TIs were not all written");
}

/** 1,700 tasks with 240-character ids: the serialized DAG is small once gzip-compressed (it is
 * accepted), but one summary entry is ~266 bytes, so the summary is ~454 KB, over 400 KB. */
function bigDag() {
  const ids = Array.from({ length: 1_700 }, (_, i) => `t${String(i).padStart(4, '0')}_${'x'.repeat(235)}`);
  return dag({ id: 'big', maxActiveTasks: 4 }, (d) => {
    for (const id of ids) d.task(id, noop);
  });
}

describe('a DAG whose summary does not fit one item', () => {
  it('has its runs scheduled, or refused before the run exists', { timeout: 120_000 }, async () => {
    const [versioned] = await h.register(bigDag());
    let refused: unknown;
    try {
      await h.createRun(versioned!, { runId: 'r' });
    } catch (error) {
      refused = error;
    }
    const run = { dagId: 'big', runId: 'r' };
    const stored = await h.store.getDagRun(run);
    if (refused !== undefined) {
      if (stored) await allTisWritten(run, 1_700);
      // Refusing is fine, but then not after the run and its TIs were written (the API says 413).
      expect({ refused: String(refused), stored: stored?.state }).toEqual({
        refused: String(refused),
        stored: undefined,
      });
      return;
    }
    await h.newScheduler().handleRequests([run]);
    await h.newScheduler().tick();
    expect((await h.queuedTaskIds(run)).length).toBe(4);
  });

  it('never schedules a run that exists anyway: every pass throws rebuilding its summary', {
    timeout: 120_000,
  }, async () => {
    const [versioned] = await h.register(bigDag());
    await h.createRun(versioned!, { runId: 'r' }).catch(() => undefined);
    const run = { dagId: 'big', runId: 'r' };
    await allTisWritten(run, 1_700);
    expect((await h.run(run)).state).toBe('queued');
    h.advance(HEARTBEAT_TIMEOUT_MS + 1);

    const { retry } = await h.newScheduler().handleMessages([requestFor(run)]);
    await h.newScheduler().tick();

    // The pass starts the run (it takes its max_active_runs place), then rebuilds the missing
    // summary, whose put throws ItemTooLargeError: the request is retried until dead-lettered and
    // the tick logs and skips the run, on every pass, for ever. No TI is ever queued.
    expect({ retry, run: (await h.run(run)).state, queued: (await h.queuedTaskIds(run)).length }).toEqual({
      retry: [],
      run: 'running',
      queued: 4,
    });
  });
});

const clearAll = (run: DagRunKey, taskIds: string[] = []) => ({
  dagId: run.dagId,
  runId: run.runId,
  taskIds,
  includeDownstream: false,
  onlyFailed: false,
  dryRun: false,
});

describe('a clear that dies between its begin and its end', () => {
  it('leaves passes reading the whole run partition only until the clear counts as dead (CLEAR_STALE_MS)', async () => {
    const [versioned] = await h.register(
      dag({ id: 'halfway' }, (d) => {
        d.task('first', noop);
        d.task('second', noop);
        d.task('third', noop);
      }),
    );
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);
    await h.succeed(tiKey(run, 'first'));
    await h.newScheduler().handleRequests([run]);
    // The API instance clearing `first` is killed after its reset, before `markRunCleared('end')`.
    const dying = wrapStore(h.store, (real) => ({
      markRunCleared: async (...args: Parameters<typeof real.markRunCleared>) => {
        if (args[1] === 'end') throw new Error('API instance killed (injected)');
        return real.markRunCleared(...args);
      },
    }));
    await clearTaskInstances(
      { store: dying, dags: h.dags, notifier: h.notifier, now: h.now },
      clearAll(run, ['first']),
    ).catch(() => undefined);
    await h.notifier.drain();

    // A day later, after many ticks: the clear is long dead.
    for (let tick = 0; tick < 3; tick += 1) {
      h.advance(8 * 3600_000);
      await h.newScheduler().tick();
    }
    const { store, calls } = countingStore(['getRunSnapshot', 'putRunSummary']);
    await handleSchedulingMessages(engineDeps(h, store), [requestFor(run)]);
    await runSchedulerTick(engineDeps(h, store));

    // The dead clear still counts as in progress, but long past CLEAR_STALE_MS: a tick rebuilt the
    // summary once, and passes read only what they need again (invariant 7).
    expect(Date.parse((await h.run(run)).clearBegunAt ?? '') + CLEAR_STALE_MS).toBeLessThan(h.now());
    expect(calls.getRunSnapshot ?? 0).toBe(0);
  });
});

describe('a clear of a finished run that dies after its resets', () => {
  it('does not leave the run finished with a TI in none for ever', async () => {
    const [versioned] = await h.register(
      dag({ id: 'finished' }, (d) => {
        d.task('only', noop);
      }),
    );
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);
    await h.succeed(tiKey(run, 'only'));
    await h.newScheduler().handleRequests([run]);
    expect((await h.run(run)).state).toBe('success');

    const dying = wrapStore(h.store, (real) => ({
      markRunCleared: async (...args: Parameters<typeof real.markRunCleared>) => {
        if (args[1] === 'end') throw new Error('API instance killed (injected)');
        return real.markRunCleared(...args);
      },
    }));
    await clearTaskInstances(
      { store: dying, dags: h.dags, notifier: h.notifier, now: h.now },
      clearAll(run),
    ).catch(() => undefined);
    for (let tick = 0; tick < 3; tick += 1) {
      h.advance(3600_000);
      await h.newScheduler().tick();
      await h.handleQueuedRequests();
    }

    // The run says success while its only TI was reset and will never run: nothing looks at a
    // finished run again (the run is off the active index), although `clearsInProgress` says a clear
    // stopped half way. Either the reset TI runs again or the run must not stay final over it.
    expect({ run: (await h.run(run)).state, only: (await h.ti(run, 'only')).state }).not.toEqual({
      run: 'success',
      only: 'none',
    });
  });
});

describe('a run whose creation is still writing its TIs (simulation seed 1018)', () => {
  it('is not finished over a TI whose conditional put has not landed yet', async () => {
    const [versioned] = await h.register(
      dag({ id: 'slow_create' }, (d) => {
        const t0 = d.task('t0', noop);
        d.task('t1', noop).after(t0);
      }),
    );
    const run = await h.createRun(versioned!);
    // createDagRun writes the run, the summary and the TIs in parallel: `t1`'s put is slow (as in
    // seed 1018, where it landed 2.3 s later). Its summary entry (none) is there already.
    const t1 = (await h.ti(run, 't1'))!;
    await h.deleteTaskInstanceItem(tiKey(run, 't1'));

    await h.newScheduler().handleRequests([run]);
    await h.failTi(tiKey(run, 't0'), false);
    // The request's pass reads `t1` (downstream of the changed `t0`), finds it missing and leaves
    // the young run to its creator. The tick's pass does not read `t1` (not active in the summary).
    await h.newScheduler().handleRequests([run]);
    await h.newScheduler().tick();
    const whileCreating = (await h.run(run)).state;
    // The creator's put of `t1` lands now (a conditional put: it creates the TI in state none).
    await h.store.createMissingTaskInstances([t1]);
    for (let tick = 0; tick < 3; tick += 1) {
      h.advance(HEARTBEAT_TIMEOUT_MS + 1);
      await h.newScheduler().tick();
    }

    // The pass decided `t1` upstream_failed on its summary entry; the write failed on the absent
    // item and the pass finished the run anyway ("Its creation may still be writing TIs: leave it to
    // its creator" no longer applies to a task the summary lists). Then `t1` appears in none,
    // in a run that is final: no pass looks at it again.
    expect({ whileCreating, run: (await h.run(run)).state, t1: (await h.ti(run, 't1')).state }).toEqual({
      whileCreating: 'running',
      run: 'failed',
      t1: 'upstream_failed',
    });
  });
});

describe('a TI whose item was never written but whose summary entry was', () => {
  it('is found missing when a pass decides on it, created once the run is old enough, and the run finishes', async () => {
    const [versioned] = await h.register(
      dag({ id: 'partial' }, (d) => {
        const pick = d.branch('pick', async () => 'left');
        d.task('left', noop).after(pick);
        const mid = d.task('mid', noop).after(pick);
        d.task('right', noop).after(mid);
      }),
    );
    const run = await h.createRun(versioned!);
    // A creation that stopped after its summary: `right` is listed (none) with no TI item.
    await h.deleteTaskInstanceItem(tiKey(run, 'right'));

    await h.newScheduler().handleRequests([run]);
    await h.succeed(tiKey(run, 'pick'), undefined, ['left']);
    await h.newScheduler().handleRequests([run]);
    // The skip of `right` (decided on its entry) finds no item: the pass leaves the run to its creator.
    expect((await h.run(run)).state).toBe('running');
    h.advance(HEARTBEAT_TIMEOUT_MS + 1);
    await h.newScheduler().tick();
    await h.handleQueuedRequests();
    await h.succeed(tiKey(run, 'left'));
    await h.newScheduler().handleRequests([run]);
    await h.handleQueuedRequests();

    const states = await h.states(run);
    expect({ run: (await h.run(run)).state, mid: states.mid, right: states.right }).toEqual({
      run: 'success',
      mid: 'skipped',
      right: 'skipped',
    });
  });
});

describe('a run whose ready reads were cut to the pool room is not on the waiting list', () => {
  it('gets the slots other runs give back without waiting for a tick', async () => {
    const [other, many] = await h.register([
      dag({ id: 'other' }, (d) => {
        d.task({ id: 'o0', pool: 'wide' }, noop);
        d.task({ id: 'o1', pool: 'wide' }, noop);
      }),
      dag({ id: 'many' }, (d) => {
        for (let index = 0; index < 10; index += 1) d.task({ id: `m${index}`, pool: 'wide' }, noop);
      }),
    ]);
    const otherRun = await h.createRun(other!);
    await h.newScheduler().handleRequests([otherRun]);
    const run = await h.createRun(many!);
    await h.newScheduler().handleRequests([run]);
    // 2 of `wide`'s 4 slots were free: the pass read (and queued) 2 of the 10 ready TIs, so no TI
    // of the run starved on the pool and the run did not put itself on the pool's waiting list.
    expect(await h.queuedTaskIds(run)).toHaveLength(2);

    await h.succeed(tiKey(otherRun, 'o0'));
    await h.succeed(tiKey(otherRun, 'o1'));
    await h.newScheduler().handleRequests([otherRun]);
    await h.handleQueuedRequests();

    // `other` gave its 2 slots back and nudged the pool's waiting runs: `many` was not among them,
    // so the slots stay idle until `many`'s own TIs end or a tick reaches it (before the summary the
    // 8 unadmitted TIs starved on the pool and the run waited on it).
    expect(await h.queuedTaskIds(run)).toHaveLength(4);
  });
});

describe('a ready TI that can never run takes the whole pool room of its run', () => {
  it('does not keep the other ready TIs of its pool from running', async () => {
    const [versioned] = await h.register(
      dag({ id: 'too_big' }, (d) => {
        // Needs 2 slots of a 1-slot pool: it waits for ever (and says why on itself).
        d.task({ id: 'huge', pool: 'single', poolSlots: 2, priorityWeight: 10 }, noop);
        d.task({ id: 'small', pool: 'single', priorityWeight: 1 }, noop);
      }),
    );
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);
    for (let tick = 0; tick < 3; tick += 1) {
      h.advance(HEARTBEAT_TIMEOUT_MS + 1);
      await h.newScheduler().tick();
      await h.handleQueuedRequests();
    }

    // `single` is empty (room 1): each pass reads only the first ready TI by priority, `huge`,
    // which can never be admitted, so `small` is never read nor queued, on any pass, for ever.
    // Before the summary `huge` starved with reason pool_too_small and `small` was admitted.
    expect({ huge: (await h.ti(run, 'huge')).state, small: (await h.ti(run, 'small')).state }).toEqual({
      huge: 'none',
      small: 'queued',
    });
  });

  it('does not keep a run under max_active_tasks 1 from running its other ready TIs', async () => {
    const [versioned] = await h.register(
      dag({ id: 'unknown_pool', maxActiveTasks: 1 }, (d) => {
        // A pool that is not configured: it never runs.
        d.task({ id: 'lost', pool: 'nope', priorityWeight: 10 }, noop);
        d.task({ id: 'fine', priorityWeight: 1 }, noop);
      }),
    );
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);
    for (let tick = 0; tick < 3; tick += 1) {
      h.advance(HEARTBEAT_TIMEOUT_MS + 1);
      await h.newScheduler().tick();
    }

    // The pass reads at most max_active_tasks - held = 1 ready TI, the first by priority: `lost`,
    // which starves (unknown_pool) every time. `fine` (default_pool, 128 free) is never read.
    expect({ lost: (await h.ti(run, 'lost')).state, fine: (await h.ti(run, 'fine')).state }).toEqual({
      lost: 'none',
      fine: 'queued',
    });
  });
});

describe('the downstream of a changed TI is read whole, whatever the pass may queue', () => {
  it('a request naming the root of a 300-wide fan-out (max_active_tasks 4) reads a bounded number of TIs', async () => {
    const [versioned] = await h.register(
      dag({ id: 'fan', maxActiveTasks: 4 }, (d) => {
        const root = d.task('root', noop);
        for (let index = 0; index < 300; index += 1)
          d.task(`t${String(index).padStart(3, '0')}`, noop).after(root);
      }),
    );
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);
    await h.succeed(tiKey(run, 'root'));
    let keysRead = 0;
    const counting = wrapStore(h.store, (real) => ({
      getTaskInstances: (keys: Parameters<typeof real.getTaskInstances>[0]) => {
        keysRead += keys.length;
        return real.getTaskInstances(keys);
      },
    }));
    await handleSchedulingMessages(engineDeps(h, counting), [requestFor(run, [tiKey(run, 'root')])]);
    expect(await h.queuedTaskIds(run)).toHaveLength(4);
    // ADR invariant 7: a pass reads "the TIs it may act on (bounded by max_active_tasks, the pools
    // and maxTaskInstancesPerPass)". This one reads root + all 300 downstream TIs to queue 4; with
    // maxTaskInstancesPerPass (1,000 by default) not applied either, a 5,000-wide fan-out reads 5,001.
    expect(keysRead).toBeLessThanOrEqual(1 + 4 + 4);
  });
});

describe('the run is finished on finalize decisions whose conditional write lost', () => {
  it('does not finish a run success over a failed leaf that a stale entry showed as none', async () => {
    const [versioned] = await h.register(
      dag({ id: 'stale_leaf', maxActiveTasks: 1, defaultArgs: { weightRule: 'absolute' } }, (d) => {
        d.task({ id: 'other', priorityWeight: 10 }, noop);
        const pick = d.branch('pick', async () => []);
        d.task('followed', noop).after(pick);
        // Runs at once whatever its upstream does (before the branch here: higher priority); the
        // branch does not follow it, so once the branch succeeds the evaluation says "skip".
        d.task({ id: 'eager', triggerRule: 'always', priorityWeight: 5 }, noop).after(pick);
      }),
    );
    const run = await h.createRun(versioned!);
    // Passes that stop between their TI writes and their summary write (ADR: "a pass can stop
    // between its TI writes and its summary write"): the summary keeps every task at none.
    const stopping = wrapStore(h.store, () => ({
      updateRunSummary: async () => {
        throw new Error('instance stopped (injected)');
      },
    }));
    const stoppingPass = (changed: ReturnType<typeof tiKey>[]) =>
      handleSchedulingMessages(engineDeps(h, stopping), [requestFor(run, changed)]);
    await stoppingPass([]);
    await h.succeed(tiKey(run, 'other'));
    await stoppingPass([tiKey(run, 'other')]);
    await h.failTi(tiKey(run, 'eager'), false);
    await stoppingPass([tiKey(run, 'eager')]);
    // The branch follows nothing; the request its report sends is lost.
    await h.succeed(tiKey(run, 'pick'), undefined, []);
    await h.notifier.drain();
    await h.queues.queues.scheduler.receive({ maxMessages: 10, waitTimeMs: 0 });
    expect(await h.states(run)).toEqual({
      other: 'success',
      eager: 'failed',
      pick: 'success',
      followed: 'none',
    });
    expect((await summaryOf(run))?.tasks.eager).toEqual({ state: 'none', tryNumber: 0 });

    await h.newScheduler().tick();
    // The skip of `eager` decided on its stale entry loses its write: the pass asks for another.
    await h.handleQueuedRequests();

    // The tick reads `pick` (its slot holder is unexplained) and, as the one ready TI
    // max_active_tasks lets it read, `other`; not `eager`. It skips `followed` and, on the stale
    // entry, `eager` (not followed by the branch); the write on `eager` loses (it is failed) but
    // evaluateRun's runState already counted it skipped, and finishRun runs: the run ends
    // `success` although its leaf `eager` failed (Airflow: failed).
    expect({ run: (await h.run(run)).state, ...(await h.states(run)) }).toEqual({
      run: 'failed',
      other: 'success',
      pick: 'success',
      followed: 'skipped',
      eager: 'failed',
    });
  });
  it('does not finish a run while a TI that a stale entry showed as none is up for retry', async () => {
    const [versioned] = await h.register(
      dag({ id: 'stale_retry', maxActiveTasks: 1, defaultArgs: { weightRule: 'absolute' } }, (d) => {
        d.task({ id: 'other', priorityWeight: 10 }, noop);
        const pick = d.branch('pick', async () => []);
        d.task('followed', noop).after(pick);
        d.task(
          { id: 'eager', triggerRule: 'always', priorityWeight: 5, retries: 1, retryDelay: '1h' },
          noop,
        ).after(pick);
      }),
    );
    const run = await h.createRun(versioned!);
    const stopping = wrapStore(h.store, () => ({
      updateRunSummary: async () => {
        throw new Error('instance stopped (injected)');
      },
    }));
    const stoppingPass = (changed: ReturnType<typeof tiKey>[]) =>
      handleSchedulingMessages(engineDeps(h, stopping), [requestFor(run, changed)]);
    await stoppingPass([]);
    await h.succeed(tiKey(run, 'other'));
    await stoppingPass([tiKey(run, 'other')]);
    await h.failTi(tiKey(run, 'eager'), true);
    await stoppingPass([tiKey(run, 'eager')]);
    await h.succeed(tiKey(run, 'pick'), undefined, []);
    await h.notifier.drain();
    await h.queues.queues.scheduler.receive({ maxMessages: 10, waitTimeMs: 0 });
    expect((await h.ti(run, 'eager')).state).toBe('up_for_retry');

    await h.newScheduler().tick();

    // Same path: the skip of `eager` (from none) loses, the run is finished `success` anyway and
    // `eager` stays up_for_retry in a finished run for ever (no pass looks at a finished run).
    const state = { run: (await h.run(run)).state, eager: (await h.ti(run, 'eager')).state };
    expect(state).not.toEqual({ run: 'success', eager: 'up_for_retry' });
  });
});

/** The summary is a cache: every entry it has must be a state its TI was in (finished ones exact). */
async function expectSummaryMatchesTis(run: DagRunKey): Promise<void> {
  const head = await h.store.getRunHead(run);
  const snapshot = await h.store.getRunSnapshot(run);
  const actual = Object.fromEntries(
    (snapshot?.taskInstances ?? []).map((ti) => [ti.taskId, { state: ti.state, tryNumber: ti.tryNumber }]),
  );
  const cached = Object.fromEntries(
    Object.entries(head?.summary?.tasks ?? {}).map(([taskId, entry]) => [
      taskId,
      { state: entry.state, tryNumber: entry.tryNumber },
    ]),
  );
  expect({ clearCount: head?.summary?.clearCount, tasks: cached }).toEqual({
    clearCount: head?.run.clearCount,
    tasks: actual,
  });
}

describe('lost, duplicated and reordered scheduling requests', () => {
  it('a lost request naming a finished TI: the tick reads the TI (active in the summary) and goes on', async () => {
    const [versioned] = await h.register(
      dag({ id: 'lost' }, (d) => {
        const a = d.task('a', noop);
        const b = d.task('b', noop).after(a);
        d.task('c', noop).after(b);
      }),
    );
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);
    await h.succeed(tiKey(run, 'a'));
    await h.notifier.drain();
    // The request naming `a` is lost.
    await h.queues.queues.scheduler.receive({ maxMessages: 10, waitTimeMs: 0 });
    expect((await summaryOf(run))?.tasks.a?.state).toBe('queued');

    await h.newScheduler().tick();
    expect((await h.ti(run, 'b')).state).toBe('queued');
    await h.succeed(tiKey(run, 'b'));
    await h.newScheduler().tick();
    await h.succeed(tiKey(run, 'c'));
    await h.newScheduler().tick();

    expect((await h.run(run)).state).toBe('success');
    await expectSummaryMatchesTis(run);
  });

  it('a request naming a TI that is not in the DAG, or a mapped index, does no harm', async () => {
    const [versioned] = await h.register(
      dag({ id: 'odd' }, (d) => {
        const a = d.task('a', noop);
        d.task('b', noop).after(a);
      }),
    );
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);
    await h.succeed(tiKey(run, 'a'));
    const { retry } = await h
      .newScheduler()
      .handleMessages([requestFor(run, [tiKey(run, 'ghost'), tiKey(run, 'a', 3), tiKey(run, 'a')])]);
    expect({ retry, b: (await h.ti(run, 'b')).state }).toEqual({ retry: [], b: 'queued' });
  });

  it('requests reordered and duplicated across concurrent fresh instances keep max_active_tasks', async () => {
    const [versioned] = await h.register(
      dag({ id: 'dup', maxActiveTasks: 2 }, (d) => {
        for (let index = 0; index < 6; index += 1) d.task(`t${index}`, noop);
      }),
    );
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);
    const first = (await h.queuedTaskIds(run))[0]!;
    await h.succeed(tiKey(run, first));
    const named = requestFor(run, [tiKey(run, first)]);
    await Promise.all([
      h.newScheduler().handleMessages([named, requestFor(run)]),
      h.newScheduler().handleMessages([requestFor(run), named]),
      h.newScheduler().handleMessages([named]),
    ]);
    const snapshot = await h.store.getRunSnapshot(run);
    const active = snapshot!.taskInstances.filter((ti) => ti.state === 'queued' || ti.state === 'running');
    expect(active).toHaveLength(2);
    expect(snapshot!.taskSlots.used).toBe(2);
  });
});

describe('a summary that lags, is missing or was never written', () => {
  it('a pass that stops before its summary write, then a lost request: the tick finishes the run', async () => {
    const [versioned] = await h.register(
      dag({ id: 'lag' }, (d) => {
        const a = d.task('a', noop);
        d.task('b', noop).after(a);
        d.task({ id: 'c', triggerRule: 'one_failed' }, noop).after(a);
      }),
    );
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);
    await h.succeed(tiKey(run, 'a'));
    // The pass `a`'s report asks for queues `b`, skips `c`, and dies at its summary write.
    const noSummary = wrapStore(h.store, () => ({
      updateRunSummary: async () => {
        throw new Error('instance frozen (injected)');
      },
    }));
    await handleSchedulingMessages(engineDeps(h, noSummary), [requestFor(run, [tiKey(run, 'a')])]);
    expect(await h.states(run)).toEqual({ a: 'success', b: 'queued', c: 'skipped' });
    expect((await summaryOf(run))?.tasks).toEqual({
      a: { state: 'queued', tryNumber: 1 },
      b: { state: 'none', tryNumber: 0 },
      c: { state: 'none', tryNumber: 0 },
    });
    // `b` ends and the request its report sent is lost: only the tick is left.
    await h.succeed(tiKey(run, 'b'));
    await h.notifier.drain();
    await h.queues.queues.scheduler.receive({ maxMessages: 10, waitTimeMs: 0 });

    await h.newScheduler().tick();
    await h.handleQueuedRequests();

    expect((await h.run(run)).state).toBe('success');
    await expectSummaryMatchesTis(run);
  });

  it('a summary item deleted mid-run is rebuilt once, then passes read only what they need', async () => {
    const [versioned] = await h.register(
      dag({ id: 'deleted' }, (d) => {
        const a = d.task('a', noop);
        d.task('b', noop).after(a);
        for (let index = 0; index < 20; index += 1) d.task(`x${index}`, noop).after(a);
      }),
    );
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);
    await h.documentClient.send(new DeleteCommand({ TableName: 'updraft', Key: runSummaryKey(run) }));
    expect(await summaryOf(run)).toBeUndefined();
    await h.succeed(tiKey(run, 'a'));
    const { store, calls } = countingStore(['getRunSnapshot']);
    await handleSchedulingMessages(engineDeps(h, store), [requestFor(run, [tiKey(run, 'a')])]);
    await handleSchedulingMessages(engineDeps(h, store), [requestFor(run)]);
    expect(calls.getRunSnapshot).toBe(1);
    // max_active_tasks is 16 by default.
    expect(await h.queuedTaskIds(run)).toHaveLength(16);
    await expectSummaryMatchesTis(run);
  });

  it('a run written before summaries existed (no #SUMMARY item) runs to the end', async () => {
    const [versioned] = await h.register(
      dag({ id: 'legacy' }, (d) => {
        const a = d.task('a', noop);
        d.task('b', noop).after(a);
      }),
    );
    const run = await h.createRun(versioned!);
    await h.documentClient.send(new DeleteCommand({ TableName: 'updraft', Key: runSummaryKey(run) }));
    await h.newScheduler().handleRequests([run]);
    await h.succeed(tiKey(run, 'a'));
    await h.newScheduler().handleRequests([run]);
    await h.succeed(tiKey(run, 'b'));
    await h.newScheduler().handleRequests([run]);
    expect((await h.run(run)).state).toBe('success');
    await expectSummaryMatchesTis(run);
  });
});

describe('clears and the summary', () => {
  async function finishedRun(id: string) {
    const [versioned] = await h.register(
      dag({ id }, (d) => {
        const a = d.task('a', noop);
        d.task('b', noop).after(a);
      }),
    );
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);
    await h.succeed(tiKey(run, 'a'));
    await h.newScheduler().handleRequests([run]);
    await h.succeed(tiKey(run, 'b'));
    await h.newScheduler().handleRequests([run]);
    expect((await h.run(run)).state).toBe('success');
    return run;
  }
  const clearDeps = (store: Store = h.store) => ({ store, dags: h.dags, notifier: h.notifier, now: h.now });

  it('a clear that stops on a StateConflictError ends its count; the next pass rebuilds the summary once', async () => {
    const run = await finishedRun('conflict');
    // `b` moves between the clear's read and its reset: the reset of `b` loses (a's won).
    const racing = wrapStore(h.store, (real) => ({
      transitionTaskInstance: async (...args: Parameters<typeof real.transitionTaskInstance>) => {
        if (args[0].taskId === 'b') {
          const { ConditionFailedError } = await import('#store/errors.ts');
          throw new ConditionFailedError('b changed (injected)');
        }
        return real.transitionTaskInstance(...args);
      },
    }));
    await expect(clearTaskInstances(clearDeps(racing), clearAll(run))).rejects.toThrow('changed state');
    expect((await h.run(run)).clearsInProgress ?? 0).toBe(0);
    // `a` was reset: the run went back to queued, and runs `a` again, then `b` (all_success on a).
    await h.newScheduler().handleRequests([run]);
    const { store, calls } = countingStore(['getRunSnapshot']);
    await handleSchedulingMessages(engineDeps(h, store), [requestFor(run)]);
    expect(calls.getRunSnapshot ?? 0).toBe(0);
    await h.startTi(tiKey(run, 'a'));
    await h.succeed(tiKey(run, 'a'));
    await h.newScheduler().handleRequests([run]);
    expect({ run: (await h.run(run)).state, ...(await h.states(run)) }).toEqual({
      run: 'success',
      a: 'success',
      b: 'success',
    });
  });

  it('two concurrent clears of the same run: both end, the summary is rebuilt, every cleared TI runs again', async () => {
    const run = await finishedRun('twice');
    const results = await Promise.allSettled([
      clearTaskInstances(clearDeps(), clearAll(run)),
      clearTaskInstances(clearDeps(), clearAll(run, ['b'])),
    ]);
    await h.notifier.drain();
    expect(results.some((result) => result.status === 'fulfilled')).toBe(true);
    const cleared = await h.run(run);
    expect({ clearsInProgress: cleared.clearsInProgress ?? 0, state: cleared.state }).toEqual({
      clearsInProgress: 0,
      state: 'queued',
    });
    await h.newScheduler().handleRequests([run]);
    await expectSummaryMatchesTis(run);
    await h.startTi(tiKey(run, 'a'));
    await h.succeed(tiKey(run, 'a'));
    await h.newScheduler().handleRequests([run]);
    await h.startTi(tiKey(run, 'b'));
    await h.succeed(tiKey(run, 'b'));
    await h.newScheduler().handleRequests([run]);
    expect((await h.run(run)).state).toBe('success');
    expect((await h.ti(run, 'a')).tryNumber).toBe(2);
    await expectSummaryMatchesTis(run);
  });

  it('a pass that read the summary before a clear cannot write entries into the rebuilt one', async () => {
    const run = await finishedRun('late_write');
    // A pass of the run reads its head (summary for clear count 0) and stops before its write-back;
    // a clear then resets both TIs and a pass rebuilds the summary; the late write-back must be refused.
    const before = (await h.store.getRunHead(run))!;
    await clearTaskInstances(clearDeps(), clearAll(run));
    await h.newScheduler().handleRequests([run]);
    const written = await h.store.updateRunSummary(run, before.summary!, {
      a: { state: 'success', tryNumber: 1 },
      b: { state: 'success', tryNumber: 1 },
    });
    expect(written).toBe(false);
    await expectSummaryMatchesTis(run);
    expect((await h.run(run)).state).toBe('running');
  });
});

describe('retries, branches and bounded reads with the summary', () => {
  it('a retry whose report request was lost is learned by the tick and queued at its retry time', async () => {
    const [versioned] = await h.register(
      dag({ id: 'retry' }, (d) => {
        const a = d.task({ id: 'a', retries: 1, retryDelay: '10s' }, noop);
        d.task('b', noop).after(a);
      }),
    );
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);
    await h.failTi(tiKey(run, 'a'), true);
    await h.notifier.drain();
    await h.queues.queues.scheduler.receive({ maxMessages: 10, waitTimeMs: 0 });

    await h.newScheduler().tick();
    expect((await summaryOf(run))?.tasks.a).toMatchObject({ state: 'up_for_retry', tryNumber: 1 });
    const wake = h.timers.calls.at(-1);
    expect(wake?.atMs).toBe(h.now() + 10_000);
    h.advance(10_000);
    // The wake timer's request names no TI: `a` is read because the summary shows it due.
    await h.newScheduler().handleMessages([requestFor(run)]);
    expect((await h.ti(run, 'a')).state).toBe('queued');
    expect((await h.ti(run, 'a')).tryNumber).toBe(2);
  });

  it("skips the branch not followed on the summary's followTaskIds, without reading the branch TI again", async () => {
    const [versioned] = await h.register(
      dag({ id: 'branchy' }, (d) => {
        const pick = d.branch('pick', async () => 'left');
        const left = d.task('left', noop).after(pick);
        const right = d.task('right', noop).after(pick);
        d.task('left2', noop).after(left);
        d.task('right2', noop).after(right);
        d.task({ id: 'join', triggerRule: 'none_failed_min_one_success' }, noop).after('left2', 'right2');
      }),
    );
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);
    await h.succeed(tiKey(run, 'pick'), undefined, ['left']);
    await h.newScheduler().handleRequests([run]);
    expect((await summaryOf(run))?.tasks.pick).toEqual({
      state: 'success',
      tryNumber: 1,
      followTaskIds: ['left'],
    });
    for (const taskId of ['left', 'left2', 'join']) {
      await h.succeed(tiKey(run, taskId));
      await h.newScheduler().handleRequests([run]);
    }
    expect({ run: (await h.run(run)).state, ...(await h.states(run)) }).toEqual({
      run: 'success',
      pick: 'success',
      left: 'success',
      right: 'skipped',
      left2: 'success',
      right2: 'skipped',
      join: 'success',
    });
    await expectSummaryMatchesTis(run);
  });

  it('a request pass of a wide run reads the named TI and the few it may queue, not the partition', async () => {
    const [versioned] = await h.register(
      dag({ id: 'wide', maxActiveTasks: 4 }, (d) => {
        for (let index = 0; index < 200; index += 1) d.task(`t${String(index).padStart(3, '0')}`, noop);
      }),
    );
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);
    const [first] = await h.queuedTaskIds(run);
    await h.succeed(tiKey(run, first!));
    let keysRead = 0;
    const { store, calls } = countingStore(['getRunSnapshot']);
    const counting = wrapStore(store, (real) => ({
      getTaskInstances: (keys: Parameters<typeof real.getTaskInstances>[0]) => {
        keysRead += keys.length;
        return real.getTaskInstances(keys);
      },
    }));
    await handleSchedulingMessages(engineDeps(h, counting), [requestFor(run, [tiKey(run, first!)])]);
    expect(await h.queuedTaskIds(run)).toHaveLength(4);
    expect({ fullReads: calls.getRunSnapshot ?? 0, few: keysRead <= 4 }).toEqual({ fullReads: 0, few: true });
  });

  it('writes back more than 100 changed entries (chunked) in one pass of a 2,100-task run', {
    timeout: 120_000,
  }, async () => {
    const [versioned] = await h.register(
      dag({ id: 'huge_fanout' }, (d) => {
        const root = d.task('root', noop);
        for (let index = 0; index < 2_100; index += 1)
          d.task(`t${String(index).padStart(4, '0')}`, noop).after(root);
      }),
    );
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);
    await h.failTi(tiKey(run, 'root'), false);
    await h.newScheduler().handleRequests([run]);
    // 2,100 TIs went upstream_failed in one pass: 21 UpdateItems of 100 entries (+ root).
    expect((await h.run(run)).state).toBe('failed');
    await expectSummaryMatchesTis(run);
  });
});

describe('paused DAGs and the summary', () => {
  it('the tick reconciles a zombie of a paused DAG and the summary learns it; unpaused, the run goes on', async () => {
    const [versioned] = await h.register(
      dag({ id: 'paused' }, (d) => {
        const a = d.task({ id: 'a', pool: 'single' }, noop);
        d.task({ id: 'b', triggerRule: 'all_done' }, noop).after(a);
      }),
    );
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);
    await h.startTi(tiKey(run, 'a'));
    await h.store.updateDag('paused', { isPaused: true });
    h.advance(HEARTBEAT_TIMEOUT_MS + 1);

    await h.newScheduler().tick();
    expect({
      a: (await h.ti(run, 'a')).state,
      b: (await h.ti(run, 'b')).state,
      pool: (await h.store.getSlotPool({ kind: 'pool', pool: 'single' })).used,
    }).toEqual({ a: 'failed', b: 'none', pool: 0 });
    expect((await summaryOf(run))?.tasks.a?.state).toBe('failed');

    await h.store.updateDag('paused', { isPaused: false });
    await h.newScheduler().tick();
    expect((await h.ti(run, 'b')).state).toBe('queued');
  });
});

describe('max_active_tasks 1 and a 1-slot pool shared by several runs', () => {
  it('every run finishes through requests and nudges alone, never two TIs in the pool', async () => {
    const [versioned] = await h.register(
      dag({ id: 'shared', maxActiveTasks: 1, maxActiveRuns: 3 }, (d) => {
        const a = d.task({ id: 'a', pool: 'single' }, noop);
        d.task({ id: 'b', pool: 'single' }, noop).after(a);
        d.task({ id: 'c', pool: 'single' }, noop);
      }),
    );
    const runs = [];
    for (const runId of ['r1', 'r2', 'r3']) runs.push(await h.createRun(versioned!, { runId }));
    await Promise.all(runs.map((run) => h.newScheduler().handleRequests([run])));
    for (let step = 0; step < 30; step += 1) {
      await h.handleQueuedRequests();
      const active: { run: DagRunKey; taskId: string }[] = [];
      for (const run of runs) for (const taskId of await h.queuedTaskIds(run)) active.push({ run, taskId });
      expect(active.length).toBeLessThanOrEqual(1);
      if (active.length === 0) break;
      const [{ run, taskId }] = active as [{ run: DagRunKey; taskId: string }];
      await h.succeed(tiKey(run, taskId));
      await h.newScheduler().handleRequests([run]);
    }
    const states = await Promise.all(runs.map(async (run) => (await h.run(run)).state));
    expect(states).toEqual(['success', 'success', 'success']);
  });
});
