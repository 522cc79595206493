import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CallbackWorkload } from '#contracts/messages.ts';
import type { Callback } from '#core/callbacks.ts';
import { owedOnRunFinish } from '#engine/callbacks.ts';
import { DagVersionCache } from '#engine/dag-cache.ts';
import { silentLogger } from '#engine/logger.ts';
import { type EngineDeps, newPassContext, scheduleRun } from '#engine/scheduler.ts';
import { DagValidationError } from '#sdk/errors.ts';
import { dag } from '#sdk/index.ts';
import { dagRunKey, taskInstanceKey } from '#store/keys.ts';
import { type ApiHarness, startApiHarness, tiKey, tiPath, WORKER } from './api-harness.ts';

/**
 * Callbacks under the faults a hostile review found: a long attempt whose workload token would
 * have expired before its report, a task with many callbacks and a long error, a finished run that
 * owes its DAG callback and is cleared before it was materialized, and an owner left in the owed
 * index by a call that died half way through settling it.
 */
const noop = () => undefined;
const longCallback = function longCallback() {};
const runFailed = function runFailed() {};
const twenty = Array.from({ length: 20 }, () => function manyFailure() {});
const handedBack = function handedBack() {};

const faults = dag(
  { id: 'cbfaults', schedule: null, startDate: '2026-01-01T00:00:00Z', onFailure: runFailed },
  (d) => {
    d.task({ id: 'slowcb', onSuccess: { callback: longCallback, timeout: '15m' } }, noop);
    d.task({ id: 'manycb', onFailure: twenty }, noop);
    d.task({ id: 'plain' }, noop);
    d.task({ id: 'handback', onSuccess: { callback: handedBack, retries: 3, retryDelay: 0 } }, noop);
  },
);

describe('callbacks under faults', () => {
  let api: ApiHarness;

  beforeAll(async () => {
    api = await startApiHarness({
      callbackOwedGraceMs: 1_000,
      executionTokenTtlSeconds: 600,
      queuedTimeoutMs: 60_000,
      requestMaxBytes: 1024 * 1024,
    });
    await api.registerDags([faults]);
  });
  afterAll(async () => {
    await api?.close();
  });

  const newRun = async () => {
    const runId = `r-${randomUUID().slice(0, 8)}`;
    expect((await api.request('POST', '/api/v2/dags/cbfaults/dagRuns', { dag_run_id: runId })).status).toBe(
      201,
    );
    return runId;
  };
  const drain = async (): Promise<CallbackWorkload[]> => {
    const received = await api.queues.callbacks.receive({ maxMessages: 10, waitTimeMs: 0 });
    await api.queues.callbacks.delete(received.map((message) => message.receiptHandle));
    const more = received.length === 10 ? await drain() : [];
    return [...received.map((message) => JSON.parse(message.body) as CallbackWorkload), ...more];
  };
  const callbacksOf = async (runId: string): Promise<Callback[]> =>
    (await api.store.listCallbacks({ dagId: 'cbfaults', runId }, { limit: 500 })).items;
  /** A new run whose `taskId` ran and succeeded: its onSuccess callbacks are owed and queued. */
  const succeedIn = async (taskId: string): Promise<string> => {
    const runId = await newRun();
    const key = tiKey('cbfaults', runId, taskId);
    const token = await api.queueTaskInstance(key);
    expect((await api.request('PATCH', tiPath(key, 'run'), WORKER, token)).status).toBe(200);
    expect(
      (await api.request('PATCH', tiPath(key, 'state'), { state: 'success', report_id: 'r1' }, token)).status,
    ).toBe(200);
    return runId;
  };

  it('a callback that runs longer than the token lifetime (inside its timeout) still reports its success', async () => {
    await drain();
    const runId = await succeedIn('slowcb');
    const [workload] = await drain();
    const id = workload?.callback_id as string;
    // The workload waits in the queue for most of the queued timeout, then runs 14 minutes.
    api.clock.advance(50_000);
    const started = await api.request('PATCH', `/execution/callbacks/${id}/run`, WORKER, workload?.token);
    expect(started.body).toMatchObject({ timeout_ms: 15 * 60_000 });
    api.clock.advance(14 * 60_000);
    const report = await api.request(
      'PATCH',
      `/execution/callbacks/${id}/state`,
      { state: 'success', report_id: 'ok-1' },
      workload?.token,
    );
    expect(report.status).toBe(200);
    expect((await api.store.getCallback({ dagId: 'cbfaults', runId, callbackId: id }))?.state).toBe(
      'success',
    );
  });

  it('counts hand-backs per attempt: the attempt after one handed back too often gets its own', async () => {
    await drain();
    const runId = await succeedIn('handback');
    const handBack = async (round: string) => {
      const [workload] = await drain();
      const id = workload?.callback_id as string;
      const started = await api.request(
        'PATCH',
        `/execution/callbacks/${id}/run`,
        { ...WORKER, start_id: `s-${round}` },
        workload?.token,
      );
      expect(started.status).toBe(200);
      const report = { state: 'handed_back', report_id: `hb-${round}` };
      expect(
        (await api.request('PATCH', `/execution/callbacks/${id}/state`, report, workload?.token)).status,
      ).toBe(200);
      return (await callbacksOf(runId)).find((callback) => callback.taskId === 'handback') as Callback;
    };
    // Five hand-backs of attempt 1 keep it; the sixth counts it as failed.
    for (let round = 1; round <= 5; round += 1)
      expect(await handBack(`1.${round}`)).toMatchObject({ attempt: 1 });
    expect(await handBack('1.6')).toMatchObject({ state: 'queued', attempt: 2 });
    // Attempt 2 starts with none of attempt 1's hand-backs.
    expect(await handBack('2.1')).toMatchObject({ state: 'queued', attempt: 2, handedBack: 1 });
  });

  it('a restart sends again what the previous process had queued and retries what it was running, at once', async () => {
    await drain();
    const owe = async () => {
      const runId = await succeedIn('slowcb');
      const [workload] = await drain();
      return { runId, workload: workload as CallbackWorkload };
    };
    // One workload lost with the old process's queue, one attempt lost with its worker.
    const lost = await owe();
    const running = await owe();
    const started = await api.request(
      'PATCH',
      `/execution/callbacks/${running.workload.callback_id}/run`,
      WORKER,
      running.workload.token,
    );
    expect(started.status).toBe(200);
    api.clock.advance(1_000);
    const startedAtMs = api.clock.nowMs;
    api.clock.advance(1_000);

    // (Callbacks of the earlier tests in this store are the previous process's too.)
    expect(await api.callbacks.recoverOrphans(startedAtMs)).toBeGreaterThanOrEqual(2);
    const resent = await drain();
    expect(resent).toContainEqual(
      expect.objectContaining({ callback_id: lost.workload.callback_id, attempt: 1 }),
    );
    expect((await callbacksOf(lost.runId))[0]).toMatchObject({ state: 'queued', attempt: 1 });
    expect((await callbacksOf(running.runId))[0]).toMatchObject({
      state: 'queued',
      attempt: 2,
      errorMessage: expect.stringContaining('was running in a process that stopped without reporting it'),
    });
    // What the new process queued or started itself is its own.
    expect(await api.callbacks.recoverOrphans(startedAtMs)).toBe(0);
  });

  it('refuses more than 20 callbacks for one event when the DAG is parsed, naming the limit', () => {
    const tooMany = Array.from({ length: 21 }, () => noop);
    expect(() => dag({ id: 'toomany' }, (d) => d.task({ id: 't', onFailure: tooMany }, noop))).toThrow(
      DagValidationError,
    );
    expect(() => dag({ id: 'toomany' }, (d) => d.task({ id: 't', onFailure: tooMany }, noop))).toThrow(
      /21 callbacks, over the limit of 20 per event/,
    );
  });

  it('a task with the most callbacks for an event and a long error fails, and owes each once', async () => {
    const runId = await newRun();
    const key = tiKey('cbfaults', runId, 'manycb');
    const token = await api.queueTaskInstance(key);
    expect((await api.request('PATCH', tiPath(key, 'run'), WORKER, token)).status).toBe(200);
    const failure = { state: 'failed', report_id: 'f1', error_message: 'x'.repeat(10_000), retryable: false };
    expect((await api.request('PATCH', tiPath(key, 'state'), failure, token)).status).toBe(200);
    expect((await api.store.getTaskInstance(key))?.state).toBe('failed');
    const failures = (await callbacksOf(runId)).filter((c) => c.kind === 'task_failure');
    expect(failures.map((c) => c.index).sort((a, b) => a - b)).toEqual([...Array(20).keys()]);
    expect(failures.every((c) => c.ownerError?.length === 2_000)).toBe(true);
  });

  it('a run that owed its DAG callback and was cleared before it was materialized runs it at its next pass', async () => {
    const runId = await newRun();
    const run0 = await api.store.getDagRun({ dagId: 'cbfaults', runId });
    await api.store.transitionDagRun(run0 as never, 'queued', { state: 'running' });
    const run = await api.store.getDagRun({ dagId: 'cbfaults', runId });
    const serialized = await api.store.getSerializedDag('cbfaults', run?.dagVersion as string);
    // The finish wins, then its scheduler dies before it materializes.
    const owed = owedOnRunFinish(serialized as never, { to: 'failed', clearCount: 0, atMs: api.clock.nowMs });
    await api.store.transitionDagRun(
      run as never,
      { state: 'running', clearCount: 0 },
      { state: 'failed', endDate: api.clock.iso() },
      { owed },
    );
    // A user clears it at once: the run is active again, out of the owed index.
    const clear = await api.request('POST', '/api/v2/dags/cbfaults/clearTaskInstances', {
      dag_run_id: runId,
      task_ids: ['plain'],
    });
    expect(clear.status).toBe(200);
    expect((await api.store.getDagRun({ dagId: 'cbfaults', runId }))?.owedCallbacks).toHaveLength(1);
    const deps: EngineDeps = {
      store: api.store,
      queues: api.queues,
      dags: new DagVersionCache(api.store),
      tokens: api.tokens,
      timers: { wakeAt: async () => undefined },
      metrics: api.metrics,
      settings: api.settings,
      log: silentLogger,
      now: () => api.clock.nowMs,
      callbacks: api.callbacks,
    };
    await scheduleRun(deps, { dagId: 'cbfaults', runId }, newPassContext(deps));
    expect((await callbacksOf(runId)).map((c) => `${c.kind}@${c.clearCount}`)).toEqual(['dag_failure@0']);
    expect((await api.store.getDagRun({ dagId: 'cbfaults', runId }))?.owedCallbacks).toBeUndefined();
  });

  it('an owner left in the owed index with nothing owed leaves it at the next sweep, counted as nothing materialized', async () => {
    const owner = taskInstanceKey({ dagId: 'cbfaults', runId: 'stuck', taskId: 'plain', mapIndex: -1 });
    // The state a settle leaves when its call dies between emptying the set and leaving the index.
    await api.rawPut({
      ...dagRunKey({ dagId: 'cbfaults', runId: 'stuck' }),
      dagId: 'cbfaults',
      runId: 'stuck',
      state: 'success',
      dagVersion: 'v1',
      clearCount: 0,
      revision: 1,
    });
    await api.rawPut({
      ...owner,
      gsi2pk: 'CALLBACKS_OWED',
      gsi2sk: `2020-01-01T00:00:00.000Z#${owner.pk}#${owner.sk}`,
      dagId: 'cbfaults',
      runId: 'stuck',
      taskId: 'plain',
      mapIndex: -1,
      state: 'success',
      tryNumber: 1,
      revision: 3,
    });
    const swept = await api.callbacks.sweep();
    expect(swept.materialized).toBe(0);
    const later = new Date(api.clock.nowMs).toISOString();
    expect(await api.store.listOwedOwners(later, 100)).not.toContainEqual(owner);
  });
});
