import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CallbackWorkload } from '#contracts/messages.ts';
import type { Callback } from '#core/callbacks.ts';
import type { DagRunKey } from '#core/models.ts';
import { DagVersionCache } from '#engine/dag-cache.ts';
import { runSchedulerTick } from '#engine/entrypoints.ts';
import { silentLogger } from '#engine/logger.ts';
import { createDagRun } from '#engine/runs.ts';
import { type EngineDeps, newPassContext, scheduleRun } from '#engine/scheduler.ts';
import { dag } from '#sdk/index.ts';
import { versionDag } from '#sdk/serialize.ts';
import { type ApiHarness, runPath, startApiHarness, tiKey, tiPath, WORKER } from './api-harness.ts';

/**
 * Deadline alerts on the real engine and the embedded store: a run's deadlines are fixed when it
 * is created, a deadline that comes before the run finishes is missed once (its callback owed
 * once, however many passes race), one the run beats is met and owes nothing.
 */
const noop = () => undefined;
const missed = function missed() {};
const alsoMissed = function alsoMissed() {};

const tight = dag(
  {
    id: 'tight',
    schedule: null,
    startDate: '2026-01-01T00:00:00Z',
    deadline: { within: '1m', of: 'queued_at', callback: missed },
  },
  (d) => {
    d.task({ id: 'only' }, noop);
  },
);
const roomy = dag(
  {
    id: 'roomy',
    schedule: null,
    startDate: '2026-01-01T00:00:00Z',
    deadline: { within: '10m', of: 'queued_at', callback: missed },
  },
  (d) => {
    d.task({ id: 'only' }, noop);
  },
);
const references = dag(
  {
    id: 'references',
    schedule: null,
    startDate: '2026-01-01T00:00:00Z',
    deadline: [
      { within: '1h', of: 'logical_date', callback: missed },
      { by: '2100-01-01T00:00:00+02:00', callback: missed },
      { within: '2x', of: 'average_duration', over: 1, callback: [missed, alsoMissed] },
    ],
  },
  (d) => {
    d.task({ id: 'only' }, noop);
  },
);
const single = dag(
  {
    id: 'single',
    schedule: null,
    startDate: '2026-01-01T00:00:00Z',
    maxActiveRuns: 1,
    deadline: { within: '1m', of: 'queued_at', callback: missed },
  },
  (d) => {
    d.task({ id: 'only' }, noop);
  },
);

describe('deadline alerts', () => {
  let api: ApiHarness;
  let deps: EngineDeps;
  const wakes: { run: DagRunKey; atMs: number }[] = [];

  beforeAll(async () => {
    api = await startApiHarness();
    await api.registerDags([tight, roomy, references, single]);
    deps = {
      store: api.store,
      queues: api.queues,
      dags: new DagVersionCache(api.store),
      tokens: api.tokens,
      timers: {
        wakeAt: async (run, atMs) => {
          wakes.push({ run: { dagId: run.dagId, runId: run.runId }, atMs });
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

  const newRun = async (dagId: string, body: Record<string, unknown> = {}): Promise<DagRunKey> => {
    const runId = `r-${randomUUID().slice(0, 8)}`;
    const created = await api.request('POST', `/api/v2/dags/${dagId}/dagRuns`, {
      dag_run_id: runId,
      ...body,
    });
    expect(created.status).toBe(201);
    return { dagId, runId };
  };
  const pass = (key: DagRunKey) => scheduleRun(deps, key, newPassContext(deps));
  /** Runs the queued try of the run's only task to success through the Execution API. */
  const succeedOnly = async (key: DagRunKey) => {
    const ti = tiKey(key.dagId, key.runId, 'only');
    const tryNumber = (await api.store.getTaskInstance(ti))?.tryNumber ?? 0;
    const token = await api.tokens.issue({ ...ti, tryNumber }, api.clock.nowMs);
    expect((await api.request('PATCH', tiPath(ti, 'run'), WORKER, token)).status).toBe(200);
    const report = { state: 'success', report_id: randomUUID() };
    expect((await api.request('PATCH', tiPath(ti, 'state'), report, token)).status).toBe(200);
  };
  /**
   * A pass over `key` whose first deadline write waits for `race` (another writer between the
   * pass's read of the run and its write); whether the race ran.
   */
  const passRacedAtDeadlineWrite = async (key: DagRunKey, race: () => Promise<unknown>): Promise<boolean> => {
    let raced = false;
    const racing = new Proxy(api.store, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver);
        if (property !== 'transitionDagRun') return typeof value === 'function' ? value.bind(target) : value;
        return async (...args: Parameters<typeof api.store.transitionDagRun>) => {
          if (!raced && args[3]?.deadlines !== undefined) {
            raced = true;
            await race();
          }
          return target.transitionDagRun(...args);
        };
      },
    });
    await scheduleRun({ ...deps, store: racing }, key, newPassContext(deps));
    return raced;
  };
  const callbacksOf = async (key: DagRunKey): Promise<Callback[]> =>
    (await api.store.listCallbacks(key, { limit: 100 })).items;
  const counter = async (name: string) => (await api.metrics.snapshot()).counters[name] ?? 0;
  const drainWorkloads = async (): Promise<CallbackWorkload[]> => {
    const received = await api.queues.callbacks.receive({ maxMessages: 10, waitTimeMs: 0 });
    await api.queues.callbacks.delete(received.map((message) => message.receiptHandle));
    const more = received.length === 10 ? await drainWorkloads() : [];
    return [...received.map((message) => JSON.parse(message.body) as CallbackWorkload), ...more];
  };

  it('misses a deadline once when passes race at its time, and tells its callback which deadline', async () => {
    await drainWorkloads();
    const missedBefore = await counter('deadlines.missed');
    const key = await newRun('tight');
    const created = await api.store.getDagRun(key);
    const at = new Date(Date.parse(created?.queuedAt as string) + 60_000).toISOString();
    expect(created?.deadlines).toEqual([{ index: 0, reference: 'queued_at', at, state: 'pending' }]);
    await pass(key);
    // The pass that started the run (created by the API, which has no timers) armed its deadline.
    expect(wakes).toContainEqual({ run: key, atMs: Date.parse(at) });

    api.clock.advance(59_000);
    await pass(key);
    expect((await api.store.getDagRun(key))?.deadlines?.[0]?.state).toBe('pending');

    api.clock.advance(2_000);
    await Promise.all([pass(key), pass(key), pass(key)]);
    await pass(key);
    const run = await api.store.getDagRun(key);
    expect(run?.state).toBe('running');
    expect(run?.deadlines?.[0]?.state).toBe('missed');
    expect(run?.owedCallbacks).toBeUndefined();
    const callbacks = await callbacksOf(key);
    expect(callbacks.map((c) => [c.kind, c.deadlineIndex, c.index, c.name, c.state])).toEqual([
      ['deadline_missed', 0, 0, 'missed', 'queued'],
    ]);
    expect(callbacks[0]?.ownerError).toBe(
      `The DAG run did not finish by its deadline ${at} (1m after it was queued)`,
    );
    expect((await counter('deadlines.missed')) - missedBefore).toBe(1);

    const workloads = await drainWorkloads();
    expect(workloads.map((workload) => workload.callback_id)).toEqual([callbacks[0]?.callbackId]);
    const workload = workloads[0] as CallbackWorkload;
    const started = await api.request(
      'PATCH',
      `/execution/callbacks/${workload.callback_id}/run`,
      WORKER,
      workload.token,
    );
    expect(started.status).toBe(200);
    expect(started.body).toMatchObject({
      kind: 'deadline_missed',
      event: 'deadline[0]',
      index: 0,
      name: 'missed',
      deadline: { at, reference: 'queued_at', late_by_ms: 1_000 },
    });

    // The run finishing late changes the decided deadline in nothing and owes nothing more.
    await succeedOnly(key);
    await pass(key);
    const done = await api.store.getDagRun(key);
    expect(done?.state).toBe('success');
    expect(done?.deadlines?.[0]?.state).toBe('missed');
    expect((await callbacksOf(key)).length).toBe(1);
    const wire = await api.request<{ deadlines: unknown }>('GET', runPath(key.dagId, key.runId));
    expect(wire.body.deadlines).toEqual([{ index: 0, reference: 'queued_at', at, state: 'missed' }]);

    // A clear runs the run again; its deadlines were decided once and are not armed again.
    expect((await api.request('POST', `${runPath(key.dagId, key.runId)}/clear`, {})).status).toBe(200);
    api.clock.advance(120_000);
    await pass(key);
    await succeedOnly(key);
    await pass(key);
    const again = await api.store.getDagRun(key);
    expect(again?.state).toBe('success');
    expect(again?.deadlines?.[0]?.state).toBe('missed');
    expect((await callbacksOf(key)).map((c) => c.kind)).toEqual(['deadline_missed']);
  });

  it('a clear between a pass reading the run and missing its deadline: the miss owes at the clear count after it', async () => {
    await drainWorkloads();
    const key = await newRun('tight');
    await pass(key);
    await succeedOnly(key);
    api.clock.advance(61_000);
    // The pass read the run (clear count 0) before the clear; its miss is written after it.
    const cleared = await passRacedAtDeadlineWrite(key, async () => {
      const clear = await api.request('POST', `${runPath(key.dagId, key.runId)}/clear`, {});
      expect(clear.status).toBe(200);
    });
    expect(cleared).toBe(true);
    const run = await api.store.getDagRun(key);
    expect(run?.clearCount).toBe(2);
    expect(run?.deadlines?.[0]?.state).toBe('missed');
    expect((await callbacksOf(key)).map((c) => [c.kind, c.clearCount])).toEqual([['deadline_missed', 2]]);
    await drainWorkloads();
  });

  it('misses a deadline once when another pass decides it between this pass’s read and its write', async () => {
    const missedBefore = await counter('deadlines.missed');
    const key = await newRun('tight');
    await pass(key);
    api.clock.advance(61_000);
    const raced = await passRacedAtDeadlineWrite(key, () => pass(key));
    expect(raced).toBe(true);
    expect((await api.store.getDagRun(key))?.deadlines?.[0]?.state).toBe('missed');
    expect((await counter('deadlines.missed')) - missedBefore).toBe(1);
    expect((await callbacksOf(key)).map((c) => c.kind)).toEqual(['deadline_missed']);
  });

  it('meets a deadline the run beats: marked met, nothing owed, nothing done at its time', async () => {
    const metBefore = await counter('deadlines.met');
    const key = await newRun('roomy');
    await pass(key);
    api.clock.advance(30_000);
    await succeedOnly(key);
    await pass(key);
    const run = await api.store.getDagRun(key);
    expect(run?.state).toBe('success');
    expect(run?.deadlines?.map((d) => d.state)).toEqual(['met']);
    expect((await counter('deadlines.met')) - metBefore).toBe(1);
    // The wake-up at the deadline comes after the run finished: its pass does nothing.
    api.clock.advance(600_000);
    await pass(key);
    expect((await api.store.getDagRun(key))?.deadlines?.map((d) => d.state)).toEqual(['met']);
    expect(await callbacksOf(key)).toEqual([]);
  });

  it('misses in the finishing write a deadline that came before any pass saw it', async () => {
    const key = await newRun('tight');
    await pass(key);
    api.clock.advance(30_000);
    await succeedOnly(key);
    api.clock.advance(60_000);
    await pass(key);
    const run = await api.store.getDagRun(key);
    expect(run?.state).toBe('success');
    expect(run?.deadlines?.map((d) => d.state)).toEqual(['missed']);
    const callbacks = await callbacksOf(key);
    expect(callbacks.map((c) => c.kind)).toEqual(['deadline_missed']);
    const started = await api.request<{ deadline: { late_by_ms: number } }>(
      'PATCH',
      `/execution/callbacks/${callbacks[0]?.callbackId}/run`,
      WORKER,
      await api.tokens.issueClaims(
        {
          kind: 'callback',
          dagId: key.dagId,
          runId: key.runId,
          callbackId: callbacks[0]?.callbackId as string,
          attempt: 1,
        },
        api.clock.nowMs,
        600,
      ),
    );
    expect(started.body.deadline.late_by_ms).toBe(30_000);
  });

  it('computes each reference at creation, and arms no average-duration deadline without history', async () => {
    const first = await newRun('references', { logical_date: '2030-01-01T00:00:00Z' });
    expect((await api.store.getDagRun(first))?.deadlines).toEqual([
      { index: 0, reference: 'logical_date', at: '2030-01-01T01:00:00.000Z', state: 'pending' },
      { index: 1, reference: 'fixed_time', at: '2099-12-31T22:00:00.000Z', state: 'pending' },
    ]);
    // A run of 40 s makes the history: the next run must finish within twice that of being queued.
    await pass(first);
    api.clock.advance(40_000);
    await succeedOnly(first);
    await pass(first);
    const done = await api.store.getDagRun(first);
    expect(done?.state).toBe('success');
    expect(done?.deadlines?.map((d) => d.state)).toEqual(['met', 'met']);
    const second = await newRun('references', { logical_date: '2030-01-02T00:00:00Z' });
    const run = await api.store.getDagRun(second);
    const expected = new Date(Date.parse(run?.queuedAt as string) + 80_000).toISOString();
    expect(run?.deadlines?.[2]).toEqual({
      index: 2,
      reference: 'average_duration',
      at: expected,
      state: 'pending',
    });
    // Both callbacks of the missed deadline are owed, each once.
    await pass(second);
    api.clock.advance(80_000);
    await pass(second);
    await pass(second);
    expect((await api.store.getDagRun(second))?.deadlines?.map((d) => d.state)).toEqual([
      'pending',
      'pending',
      'missed',
    ]);
    expect((await callbacksOf(second)).map((c) => [c.deadlineIndex, c.index, c.name]).sort()).toEqual([
      [2, 0, 'missed'],
      [2, 1, 'alsoMissed'],
    ]);
  });

  it('arms a wake-up at each deadline when the run is created by the scheduler', async () => {
    const versioned = versionDag(references, 'dags/references.ts');
    const at = '2030-02-01T00:00:00.000Z';
    const run = await createDagRun(
      api.store,
      {
        dag: versioned.dag,
        versionHash: versioned.versionHash,
        runType: 'scheduled',
        logicalDate: at,
        now: api.clock.iso(),
        confMaxBytes: 1024,
      },
      { timers: deps.timers, log: silentLogger },
    );
    const armed = wakes.filter((wake) => wake.run.runId === run.runId).map((wake) => wake.atMs);
    expect(armed.sort()).toEqual(run.deadlines?.map((d) => Date.parse(d.at)).sort());
    expect(armed.length).toBe(3);
  });

  it('decides a deadline in the store once: a second decision is refused, and changes cannot set deadlines', async () => {
    const key = await newRun('roomy');
    const decided = await api.store.transitionDagRun(
      key,
      ['queued', 'running'],
      {},
      {
        owed: [],
        deadlines: [{ position: 0, state: 'missed' }],
      },
    );
    expect(decided.deadlines?.[0]?.state).toBe('missed');
    await expect(
      api.store.transitionDagRun(
        key,
        ['queued', 'running'],
        {},
        { owed: [], deadlines: [{ position: 0, state: 'met' }] },
      ),
    ).rejects.toThrow(/deadline at 0 pending/);
    const changes = { deadlines: [] } as unknown as Parameters<typeof api.store.transitionDagRun>[2];
    const unchanged = await api.store.transitionDagRun(key, ['queued', 'running'], changes);
    expect(unchanged.deadlines?.map((d) => d.state)).toEqual(['missed']);
  });

  it("misses a queued run's deadline on the tick, the backstop, even while the run cannot start", async () => {
    const running = await newRun('single');
    await pass(running);
    const waiting = await newRun('single');
    await pass(waiting);
    expect((await api.store.getDagRun(waiting))?.state).toBe('queued');
    api.clock.advance(61_000);
    await runSchedulerTick(deps);
    const run = await api.store.getDagRun(waiting);
    expect(run?.state).toBe('queued');
    expect(run?.deadlines?.map((d) => d.state)).toEqual(['missed']);
    expect((await callbacksOf(waiting)).map((c) => c.kind)).toEqual(['deadline_missed']);
  });
});
