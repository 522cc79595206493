import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DagVersionCache } from '#engine/dag-cache.ts';
import { silentLogger } from '#engine/logger.ts';
import { type EngineDeps, newPassContext, scheduleRun } from '#engine/scheduler.ts';
import { DagValidationError } from '#sdk/errors.ts';
import { dag } from '#sdk/index.ts';
import { type ApiHarness, startApiHarness, tiKey, tiPath, WORKER } from './api-harness.ts';

/** dagRunTimeout: a run still running past it fails, its unfinished TIs skipped, its DAG failure callback owed once. */
const noop = () => undefined;
const timedOut = function timedOut() {};
const slow = dag(
  {
    id: 'timeboxed',
    schedule: null,
    startDate: '2026-01-01T00:00:00Z',
    dagRunTimeout: '1m',
    onFailure: timedOut,
  },
  (d) => {
    const first = d.task({ id: 'first' }, noop);
    d.task({ id: 'second' }, noop).after(first);
  },
);

describe('a DAG run timeout', () => {
  let api: ApiHarness;
  let deps: EngineDeps;
  const wakes: number[] = [];

  beforeAll(async () => {
    api = await startApiHarness();
    await api.registerDags([slow]);
    deps = {
      store: api.store,
      queues: api.queues,
      dags: new DagVersionCache(api.store),
      tokens: api.tokens,
      timers: {
        wakeAt: async (_run, atMs) => {
          wakes.push(atMs);
        },
      },
      metrics: api.metrics,
      settings: api.settings,
      log: silentLogger,
      now: () => api.clock.nowMs,
      callbacks: api.callbacks,
    };
  });
  afterAll(async () => {
    await api?.close();
  });

  it('fails the run past its timeout, skips its unfinished TIs, stops the running try and owes onFailure once', async () => {
    const runId = `r-${randomUUID().slice(0, 8)}`;
    expect((await api.request('POST', '/api/v2/dags/timeboxed/dagRuns', { dag_run_id: runId })).status).toBe(
      201,
    );
    const key = { dagId: 'timeboxed', runId };
    await scheduleRun(deps, key, newPassContext(deps));
    const started = await api.store.getDagRun(key);
    expect(started?.state).toBe('running');
    // The pass that started the run armed a wake-up at its timeout.
    expect(wakes).toContain(Date.parse(started?.startDate as string) + 60_000);
    const first = tiKey('timeboxed', runId, 'first');
    const token = await api.tokens.issue({ ...first, tryNumber: 1 }, api.clock.nowMs);
    expect((await api.request('PATCH', tiPath(first, 'run'), WORKER, token)).status).toBe(200);

    api.clock.advance(59_000);
    await scheduleRun(deps, key, newPassContext(deps));
    expect((await api.store.getDagRun(key))?.state).toBe('running');

    api.clock.advance(2_000);
    await scheduleRun(deps, key, newPassContext(deps));
    await scheduleRun(deps, key, newPassContext(deps));
    const run = await api.store.getDagRun(key);
    expect(run?.state).toBe('failed');
    const tis = (await api.store.getRunSnapshot(key))?.taskInstances ?? [];
    expect(tis.map((ti) => [ti.taskId, ti.state]).sort()).toEqual([
      ['first', 'skipped'],
      ['second', 'skipped'],
    ]);
    expect(tis[0]?.errorMessage).toMatch(/dagRunTimeout of 60000 ms/);
    // The running try's worker is refused at its next heartbeat, and stops it.
    expect((await api.request('PUT', tiPath(first, 'heartbeat'), {}, token)).status).toBe(409);
    const callbacks = (await api.store.listCallbacks(key, { limit: 10 })).items;
    expect(callbacks.map((c) => [c.kind, c.ownerErrorType, c.name])).toEqual([
      ['dag_failure', 'dagrun_timeout', 'timedOut'],
    ]);
    // Its slots were given back.
    expect(Object.keys((await api.store.getRunHead(key))?.taskSlots.holders ?? {})).toEqual([]);
  });

  it('does not fail the run while a TI that moved on during the timeout is unfinished; the next pass skips it', async () => {
    const runId = `r-${randomUUID().slice(0, 8)}`;
    expect((await api.request('POST', '/api/v2/dags/timeboxed/dagRuns', { dag_run_id: runId })).status).toBe(
      201,
    );
    const key = { dagId: 'timeboxed', runId };
    await scheduleRun(deps, key, newPassContext(deps));
    const first = tiKey('timeboxed', runId, 'first');
    const token = await api.tokens.issue({ ...first, tryNumber: 1 }, api.clock.nowMs);
    expect((await api.request('PATCH', tiPath(first, 'run'), WORKER, token)).status).toBe(200);
    api.clock.advance(61_000);
    // The worker's report lands between the timeout's read and its skip of the running TI.
    let raced = false;
    const racing = new Proxy(api.store, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver);
        if (property !== 'transitionTaskInstance')
          return typeof value === 'function' ? value.bind(target) : value;
        return async (...args: Parameters<typeof api.store.transitionTaskInstance>) => {
          if (!raced && args[2].state === 'skipped' && args[0].taskId === 'first') {
            raced = true;
            await api.store.transitionTaskInstance(
              first,
              { state: 'running', tryNumber: 1 },
              { state: 'up_for_retry', nextRetryAt: api.clock.iso(), endDate: api.clock.iso() },
              { owed: [] },
            );
          }
          return target.transitionTaskInstance(...args);
        };
      },
    });
    await scheduleRun({ ...deps, store: racing }, key, newPassContext(deps));
    expect(raced).toBe(true);
    expect((await api.store.getDagRun(key))?.state).toBe('running');
    await scheduleRun(deps, key, newPassContext(deps));
    expect((await api.store.getDagRun(key))?.state).toBe('failed');
    const tis = (await api.store.getRunSnapshot(key))?.taskInstances ?? [];
    expect(tis.map((ti) => ti.state)).toEqual(['skipped', 'skipped']);
  });

  it('is refused when not positive, naming the option', () => {
    expect(() => dag({ id: 'bad', dagRunTimeout: 0 }, (d) => d.task({ id: 't' }, noop))).toThrow(
      DagValidationError,
    );
    expect(() => dag({ id: 'bad', dagRunTimeout: 0 }, (d) => d.task({ id: 't' }, noop))).toThrow(
      "DAG 'bad': option 'dagRunTimeout' must be greater than 0",
    );
  });
});
