import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { CallbackWorkload } from '#contracts/messages.ts';
import type { Callback } from '#core/callbacks.ts';
import type { TaskInstanceKey } from '#core/models.ts';
import { silentLogger } from '#engine/logger.ts';
import { reconcileActiveTaskInstances } from '#engine/reconcile.ts';
import { dag } from '#sdk/index.ts';
import { type ApiHarness, runPath, startApiHarness, tiKey, tiPath, WORKER } from './api-harness.ts';

/**
 * Callbacks through the Execution API on the embedded store: which state changes owe which
 * callbacks (once), the callback workload and its routes, retries of a callback that raises,
 * and recovery when the call that owed a callback died before it materialized it.
 */
const noop = () => undefined;
const onRetry = function retrying() {};
const onFailure = function failing() {};
const onSuccess = function succeeding() {};
const onExecute = function executing() {};
const dagDone = function dagDone() {};
const twenty = Array.from({ length: 20 }, () => function oneOfTwenty() {});

const flaky = dag(
  { id: 'cbapi', schedule: null, startDate: '2026-01-01T00:00:00Z', onSuccess: dagDone, onFailure: dagDone },
  (d) => {
    d.task({ id: 'work', retries: 1, retryDelay: 0, onRetry, onFailure, onSuccess, onExecute }, noop);
    d.task(
      { id: 'raiser', onSuccess: { callback: onSuccess, retries: 2, retryDelay: 0, timeout: '5s' } },
      noop,
    );
    d.task({ id: 'plain' }, noop);
    d.task({ id: 'many_a', onSuccess: twenty }, noop);
    d.task({ id: 'many_b', onSuccess: twenty }, noop);
  },
);

describe('callbacks through the Execution API', () => {
  let api: ApiHarness;

  beforeAll(async () => {
    api = await startApiHarness({
      callbackOwedGraceMs: 1_000,
      heartbeatTimeoutMs: 10_000,
      heartbeatIntervalMs: 2_000,
    });
    await api.registerDags([flaky]);
  });
  afterAll(async () => {
    await api?.close();
  });

  const newRun = async () => {
    const runId = `r-${randomUUID().slice(0, 8)}`;
    expect((await api.request('POST', '/api/v2/dags/cbapi/dagRuns', { dag_run_id: runId })).status).toBe(201);
    return runId;
  };
  const start = async (key: TaskInstanceKey) => {
    const token = await api.queueTaskInstance(key);
    expect((await api.request('PATCH', tiPath(key, 'run'), WORKER, token)).status).toBe(200);
    return token;
  };
  const report = (key: TaskInstanceKey, token: string, body: Record<string, unknown>) =>
    api.request('PATCH', tiPath(key, 'state'), { report_id: randomUUID(), ...body }, token);
  const callbacksOf = async (runId: string): Promise<Callback[]> =>
    (await api.store.listCallbacks({ dagId: 'cbapi', runId }, { limit: 100 })).items;
  const kindsOf = async (runId: string, taskId?: string) =>
    (await callbacksOf(runId))
      .filter((callback) => taskId === undefined || callback.taskId === taskId)
      .map((callback) => `${callback.kind}@${callback.tryNumber ?? callback.clearCount}`)
      .sort();
  /** Every callback workload waiting in the callbacks queue, taken off it. */
  const drainWorkloads = async (): Promise<CallbackWorkload[]> => {
    const received = await api.queues.callbacks.receive({ maxMessages: 10, waitTimeMs: 0 });
    await api.queues.callbacks.delete(received.map((message) => message.receiptHandle));
    const more = received.length === 10 ? await drainWorkloads() : [];
    return [...received.map((message) => JSON.parse(message.body) as CallbackWorkload), ...more];
  };
  const workloadOf = async (callback: Callback) =>
    (await drainWorkloads()).find((workload) => workload.callback_id === callback.callbackId);
  const callbackPath = (id: string, action: 'run' | 'state') => `/execution/callbacks/${id}/${action}`;

  it('owes onRetry for a failure with a retry to come and onFailure only for the last try, once each', async () => {
    const runId = await newRun();
    const key = tiKey('cbapi', runId, 'work');
    let token = await start(key);
    expect(await kindsOf(runId, 'work')).toEqual(['task_execute@1']);
    const failure = { state: 'failed', error_message: 'boom', retryable: true, report_id: 'report-1' };
    expect((await report(key, token, failure)).status).toBe(200);
    // The same report again (its answer lost): a duplicate, nothing owed twice.
    expect((await api.request('PATCH', tiPath(key, 'state'), failure, token)).body).toMatchObject({
      duplicate: true,
    });
    expect(await kindsOf(runId, 'work')).toEqual(['task_execute@1', 'task_retry@1']);
    token = await start(key);
    expect(
      (await report(key, token, { state: 'failed', error_message: 'boom again', retryable: true })).status,
    ).toBe(200);
    expect(await kindsOf(runId, 'work')).toEqual([
      'task_execute@1',
      'task_execute@2',
      'task_failure@2',
      'task_retry@1',
    ]);
    const failed = (await callbacksOf(runId)).find((callback) => callback.kind === 'task_failure');
    expect(failed).toMatchObject({ ownerError: 'boom again', ownerErrorType: 'task_error', state: 'queued' });
    // Nothing is left owed on the TI: every element became an item.
    expect((await api.store.getTaskInstance(key))?.owedCallbacks).toBeUndefined();
  });

  it('sends one workload per callback and refuses a second start of the same attempt (a duplicate delivery)', async () => {
    await drainWorkloads();
    const runId = await newRun();
    const key = tiKey('cbapi', runId, 'plain');
    const token = await start(key);
    expect((await report(key, token, { state: 'success' })).status).toBe(200);
    // `plain` has no callbacks of its own, and the run is not finished: nothing owed.
    expect(await kindsOf(runId)).toEqual([]);
    const work = tiKey('cbapi', runId, 'work');
    const workToken = await start(work);
    const [executeCallback] = await callbacksOf(runId);
    const workloads = await drainWorkloads();
    expect(workloads.map((workload) => workload.callback_id)).toEqual([executeCallback?.callbackId]);
    const workload = workloads[0] as CallbackWorkload;
    const first = await api.request(
      'PATCH',
      callbackPath(workload.callback_id, 'run'),
      { ...WORKER, start_id: 's1' },
      workload.token,
    );
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({
      kind: 'task_execute',
      name: 'executing',
      event: 'onExecute',
      index: 0,
    });
    expect(first.body).toMatchObject({
      idempotency_key: workload.callback_id,
      previous_attempt_may_have_run: false,
    });
    const { gauges } = await api.metrics.snapshot();
    expect(gauges['callbacks.start_latency_ms']).toBeGreaterThanOrEqual(0);
    // The same start again (its answer lost) is answered again; another delivery's start is refused.
    const again = await api.request(
      'PATCH',
      callbackPath(workload.callback_id, 'run'),
      { ...WORKER, start_id: 's1' },
      workload.token,
    );
    expect(again.status).toBe(200);
    const duplicate = await api.request(
      'PATCH',
      callbackPath(workload.callback_id, 'run'),
      { ...WORKER, start_id: 's2' },
      workload.token,
    );
    expect(duplicate.status).toBe(409);
    const done = await api.request(
      'PATCH',
      callbackPath(workload.callback_id, 'state'),
      { state: 'success', report_id: 'done-1', log: 'hello from the callback\n' },
      workload.token,
    );
    expect(done.body).toMatchObject({ ok: true, state: 'success' });
    const log = await api.request<{ content: string }>(
      'GET',
      `${runPath('cbapi', runId)}/callbacks/${workload.callback_id}/logs/1`,
    );
    expect(log.body.content).toBe('hello from the callback\n');
    // A task token cannot call the callback routes, nor a callback token the task routes.
    expect(
      (await api.request('PATCH', callbackPath(workload.callback_id, 'run'), WORKER, workToken)).status,
    ).toBe(403);
    expect((await api.request('PUT', tiPath(work, 'heartbeat'), {}, workload.token)).status).toBe(403);
  });

  it("lists a run's callbacks in pages, filtering before it pages, with a cursor to the next", async () => {
    const runId = await newRun();
    for (const taskId of ['many_a', 'many_b']) {
      const key = tiKey('cbapi', runId, taskId);
      const token = await start(key);
      expect((await report(key, token, { state: 'success', report_id: 'r1' })).status).toBe(200);
    }
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const query = new URLSearchParams({ task_id: 'many_b', limit: '7', ...(cursor ? { cursor } : {}) });
      const page = await api.request('GET', `${runPath('cbapi', runId)}/callbacks?${query}`);
      expect(page.status).toBe(200);
      const body = page.body as {
        callbacks: { callback_id: string; task_id: string }[];
        next_cursor?: string;
      };
      expect(body.callbacks.length).toBeLessThanOrEqual(7);
      for (const callback of body.callbacks) {
        expect(callback.task_id).toBe('many_b');
        seen.push(callback.callback_id);
      }
      cursor = body.next_cursor;
      pages += 1;
    } while (cursor !== undefined && pages < 10);
    expect(new Set(seen).size).toBe(20);
    expect(seen).toHaveLength(20);
    const bad = await api.request('GET', `${runPath('cbapi', runId)}/callbacks?cursor=not-a-cursor`);
    expect(bad.status).toBe(400);
    // A cursor of another run's list is refused as well, not answered with a server error.
    const otherRun = await newRun();
    const key = tiKey('cbapi', otherRun, 'many_a');
    const token = await start(key);
    expect((await report(key, token, { state: 'success', report_id: 'r1' })).status).toBe(200);
    const other = await api.request('GET', `${runPath('cbapi', otherRun)}/callbacks?limit=3`);
    const foreign = (other.body as { next_cursor?: string }).next_cursor as string;
    expect(foreign).toBeDefined();
    const crossed = await api.request(
      'GET',
      `${runPath('cbapi', runId)}/callbacks?cursor=${encodeURIComponent(foreign)}`,
    );
    expect(crossed.status).toBe(400);
    // A filter that matches nothing reads the run in a few large reads, not one per callback.
    const reads = vi.spyOn(api.store, 'listCallbacks');
    const none = await api.request('GET', `${runPath('cbapi', runId)}/callbacks?limit=1&state=failed`);
    expect(none.body).toMatchObject({ callbacks: [] });
    expect(reads.mock.calls.length).toBeLessThanOrEqual(2);
    reads.mockRestore();
    const over = await api.request('GET', `${runPath('cbapi', runId)}/callbacks?limit=1001`);
    expect(over.status).toBe(422);
  });

  it('retries a callback that raises, then fails it with its error visible, and leaves the run alone', async () => {
    await drainWorkloads();
    const runId = await newRun();
    const key = tiKey('cbapi', runId, 'raiser');
    const token = await start(key);
    expect((await report(key, token, { state: 'success' })).status).toBe(200);
    const [callback] = await callbacksOf(runId);
    expect(callback).toMatchObject({ kind: 'task_success', maxAttempts: 3, timeoutMs: 5_000 });
    for (const attempt of [1, 2, 3]) {
      const workload = await workloadOf(callback as Callback);
      expect(workload?.attempt).toBe(attempt);
      const started = await api.request(
        'PATCH',
        callbackPath(callback?.callbackId as string, 'run'),
        WORKER,
        workload?.token,
      );
      expect(started.body).toMatchObject({ attempt, previous_attempt_may_have_run: attempt > 1 });
      const failed = await api.request(
        'PATCH',
        callbackPath(callback?.callbackId as string, 'state'),
        {
          state: 'failed',
          report_id: `r${attempt}`,
          error_message: `raised ${attempt}`,
          retryable: true,
          log: `attempt ${attempt}\n`,
        },
        workload?.token,
      );
      expect(failed.body).toMatchObject({ state: attempt < 3 ? 'queued' : 'failed' });
      // A late report of an attempt that moved on changes nothing.
      if (attempt < 3) {
        const late = await api.request(
          'PATCH',
          callbackPath(callback?.callbackId as string, 'state'),
          { state: 'success', report_id: `late${attempt}` },
          workload?.token,
        );
        expect(late.status).toBe(409);
      }
    }
    const listed = await api.request<{
      callbacks: { state: string; error_message: string; attempt: number }[];
    }>('GET', `${runPath('cbapi', runId)}/callbacks?state=failed`);
    expect(listed.body.callbacks).toEqual([
      expect.objectContaining({ state: 'failed', attempt: 3, error_message: 'raised 3' }),
    ]);
    const log = await api.request<{ content: string }>(
      'GET',
      `${runPath('cbapi', runId)}/callbacks/${callback?.callbackId}/logs/2`,
    );
    expect(log.body.content).toBe('attempt 2\n');
    expect((await api.store.getTaskInstance(key))?.state).toBe('success');
  });

  it('materializes on the tick what a call that died after its state write still owes, once', async () => {
    const runId = await newRun();
    const key = tiKey('cbapi', runId, 'work');
    const token = await start(key);
    await drainWorkloads();
    // The API dies between the TI write and the callback item (here: every put fails).
    const putCallback = api.store.putCallback.bind(api.store);
    api.store.putCallback = () => Promise.reject(new Error('the API instance died here'));
    try {
      expect((await report(key, token, { state: 'success' })).status).toBe(200);
    } finally {
      api.store.putCallback = putCallback;
    }
    const ti = await api.store.getTaskInstance(key);
    expect(ti?.state).toBe('success');
    expect(ti?.owedCallbacks?.map((element) => JSON.parse(element).k)).toEqual(['task_success']);
    expect(await kindsOf(runId, 'work')).toEqual(['task_execute@1']);
    // Within the grace the tick leaves it to its writer; after it, the tick materializes it.
    await api.callbacks.sweep();
    expect(await kindsOf(runId, 'work')).toEqual(['task_execute@1']);
    api.clock.advance(1_500);
    await api.callbacks.sweep();
    await api.callbacks.sweep();
    expect(await kindsOf(runId, 'work')).toEqual(['task_execute@1', 'task_success@1']);
    expect((await api.store.getTaskInstance(key))?.owedCallbacks).toBeUndefined();
    expect((await drainWorkloads()).length).toBe(1);
  });

  it('ends an attempt whose worker was lost once its timeout has passed, and retries it', async () => {
    await drainWorkloads();
    const runId = await newRun();
    const key = tiKey('cbapi', runId, 'raiser');
    const token = await start(key);
    expect((await report(key, token, { state: 'success' })).status).toBe(200);
    const [callback] = await callbacksOf(runId);
    const workload = await workloadOf(callback as Callback);
    await api.request('PATCH', callbackPath(callback?.callbackId as string, 'run'), WORKER, workload?.token);
    // Before timeout + heartbeat timeout (5 s + 10 s) the attempt may still run: left alone.
    api.clock.advance(14_000);
    await api.callbacks.sweep();
    expect((await api.store.getCallback(callback as Callback))?.state).toBe('running');
    api.clock.advance(2_000);
    await api.callbacks.sweep();
    const after = await api.store.getCallback(callback as Callback);
    expect(after).toMatchObject({ state: 'queued', attempt: 2 });
    expect(after?.errorMessage).toMatch(/did not report within its timeout/);
    // The lost attempt's late report is refused.
    const late = await api.request(
      'PATCH',
      callbackPath(callback?.callbackId as string, 'state'),
      { state: 'success', report_id: 'late' },
      workload?.token,
    );
    expect(late.status).toBe(409);
  });

  it('a try stopped by its execution timeout owes its retry callback with that error type', async () => {
    const runId = await newRun();
    const key = tiKey('cbapi', runId, 'work');
    const token = await start(key);
    const stopped = {
      state: 'failed',
      error_message: 'The task exceeded its execution timeout',
      retryable: true,
      error_type: 'execution_timeout',
    };
    expect((await report(key, token, stopped)).status).toBe(200);
    const retry = (await callbacksOf(runId)).find((callback) => callback.kind === 'task_retry');
    expect(retry).toMatchObject({ ownerErrorType: 'execution_timeout', tryNumber: 1 });
  });

  it('a zombie (heartbeat timeout) owes its failure callback once, with its error type', async () => {
    const runId = await newRun();
    const key = tiKey('cbapi', runId, 'work');
    await start(key);
    await api.store.transitionTaskInstance(key, { state: 'running' }, { maxTries: 1 });
    const ti = await api.store.getTaskInstance(key);
    const run = await api.store.getDagRun(key);
    const serialized = await api.store.getSerializedDag('cbapi', run?.dagVersion as string);
    const deps = {
      store: api.store,
      settings: { heartbeatTimeoutMs: 1_000, queuedTimeoutMs: 60_000, maxQueuedSends: 3 },
      log: silentLogger,
      metrics: api.metrics,
    };
    const later = Date.parse(ti?.heartbeatAt as string) + 5_000;
    // Two passes see the same zombie: the second's write loses, nothing is owed twice.
    await Promise.all([
      reconcileActiveTaskInstances(deps, [ti as never], serialized as never, later),
      reconcileActiveTaskInstances(deps, [ti as never], serialized as never, later),
    ]);
    const zombie = await api.store.getTaskInstance(key);
    expect(zombie?.state).toBe('failed');
    expect(zombie?.owedCallbacks?.map((element) => JSON.parse(element))).toEqual([
      expect.objectContaining({ k: 'task_failure', n: 1, t: 'heartbeat_timeout' }),
    ]);
    await api.callbacks.materialize({ run: run as never, ti: zombie as never }, zombie?.owedCallbacks ?? []);
    expect((await kindsOf(runId, 'work')).filter((kind) => kind.startsWith('task_failure'))).toEqual([
      'task_failure@1',
    ]);
  });
});
