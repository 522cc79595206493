import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { InProcessTaskExecutor } from '#aws/lambda-executor.ts';
import type { Callback } from '#core/callbacks.ts';
import { silentLogger } from '#engine/logger.ts';
import type { CallbackContext } from '#sdk/callback-context.ts';
import { dag } from '#sdk/index.ts';
import { TriggererClient } from '#triggerer/client.ts';
import { Triggerer } from '#triggerer/triggerer.ts';
import { ExecutionClient } from '#worker/execution-client.ts';
import { type ApiHarness, startApiHarness, tiKey, tiPath, WORKER } from './api-harness.ts';

/**
 * Async callbacks on the triggerer, end to end over real HTTP (127.0.0.1): a real Triggerer
 * claims them with its job token and runs them in its event loop, starting and reporting each
 * attempt under the callback's token as a worker does. Under faults: two triggerers at once, a
 * claim never started, an attempt never reported, a callback that raises.
 */

/** Effects by idempotency key and attempt, as the callbacks record them. */
const effects: { key: string; attempt: number; kind: string; runId: string }[] = [];
let raises = 0;

async function alertOnSuccess(ctx: CallbackContext): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 5));
  effects.push({ key: ctx.idempotencyKey, attempt: ctx.attempt, kind: ctx.kind, runId: ctx.runId });
}
async function flakyAlert(ctx: CallbackContext): Promise<void> {
  if (raises > 0) {
    raises -= 1;
    throw new Error(`the alert endpoint is down (attempt ${ctx.attempt})`);
  }
  effects.push({ key: ctx.idempotencyKey, attempt: ctx.attempt, kind: ctx.kind, runId: ctx.runId });
}
async function onWorkerAnyway(_ctx: CallbackContext): Promise<void> {}
/** While `hold` is set, waits for its stop signal (a triggerer stopping); then returns at once. */
let hold = false;
async function holdsUntilStopped(ctx: CallbackContext): Promise<void> {
  if (hold) {
    await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
    return;
  }
  effects.push({ key: ctx.idempotencyKey, attempt: ctx.attempt, kind: ctx.kind, runId: ctx.runId });
  mayHaveRun.push(ctx.previousAttemptMayHaveRun);
}
const mayHaveRun: boolean[] = [];
function syncAlert(_ctx: CallbackContext): void {}

const cbdag = dag({ id: 'cbtrig', schedule: null, startDate: '2026-01-01T00:00:00Z' }, (d) => {
  for (const id of ['a', 'b', 'c', 'd', 'e']) d.task({ id, onSuccess: alertOnSuccess }, () => 1);
  d.task(
    { id: 'flaky', onSuccess: { callback: flakyAlert, retries: 1, retryDelay: 0, timeout: '2s' } },
    () => 1,
  );
  d.task({ id: 'placed', onSuccess: [{ callback: onWorkerAnyway, runOn: 'worker' }, syncAlert] }, () => 1);
  d.task(
    { id: 'held', onSuccess: { callback: holdsUntilStopped, retries: 0, retryDelay: '1h', timeout: '60s' } },
    () => 1,
  );
});

describe('async callbacks on the triggerer', () => {
  let api: ApiHarness;
  const triggerers: Triggerer[] = [];

  beforeAll(async () => {
    api = await startApiHarness({
      callbackOwedGraceMs: 1_000,
      heartbeatTimeoutMs: 10_000,
      heartbeatIntervalMs: 2_000,
      triggererLoadIntervalMs: 50,
      triggererHeartbeatIntervalMs: 200,
      triggererHeartbeatTimeoutMs: 1_000,
    });
    await api.registerDags([cbdag]);
  });
  afterEach(async () => {
    await Promise.all(triggerers.splice(0).map((triggerer) => triggerer.stop()));
    effects.length = 0;
    mayHaveRun.length = 0;
    hold = false;
  });
  afterAll(async () => {
    await api?.close();
  });

  const newRun = async () => {
    const runId = `r-${randomUUID().slice(0, 8)}`;
    expect((await api.request('POST', '/api/v2/dags/cbtrig/dagRuns', { dag_run_id: runId })).status).toBe(
      201,
    );
    return runId;
  };
  const succeed = async (runId: string, taskId: string) => {
    const key = tiKey('cbtrig', runId, taskId);
    const token = await api.queueTaskInstance(key);
    expect((await api.request('PATCH', tiPath(key, 'run'), WORKER, token)).status).toBe(200);
    const done = await api.request(
      'PATCH',
      tiPath(key, 'state'),
      { state: 'success', report_id: randomUUID() },
      token,
    );
    expect(done.status).toBe(200);
  };
  const callbacksOf = async (runId: string): Promise<Callback[]> =>
    (await api.store.listCallbacks({ dagId: 'cbtrig', runId }, { limit: 100 })).items;
  const jobClient = async () => {
    const credential = await api.tokens.issueClaims({ kind: 'triggerer' }, api.clock.nowMs);
    return new TriggererClient(api.baseUrl, credential);
  };
  const startTriggerer = async () => {
    const triggerer = new Triggerer({
      client: await jobClient(),
      settings: api.settings,
      log: silentLogger,
      hostname: `triggerer-${triggerers.length + 1}`,
      callbacks: {
        execution: new ExecutionClient(api.baseUrl),
        executor: new InProcessTaskExecutor({ loadModule: async () => ({ cbdag }) }),
      },
    });
    triggerers.push(triggerer);
    void triggerer.run();
    return triggerer;
  };
  const until = async (check: () => Promise<boolean>, what: string, timeoutMs = 10_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  const settled = (runId: string, count: number) => async () => {
    const callbacks = await callbacksOf(runId);
    return (
      callbacks.length === count && callbacks.every((cb) => cb.state === 'success' || cb.state === 'failed')
    );
  };

  it('places async callbacks on the triggerer and runs each once there, with two triggerers claiming', async () => {
    const runId = await newRun();
    for (const id of ['a', 'b', 'c', 'd', 'e']) await succeed(runId, id);
    const waiting = await callbacksOf(runId);
    expect(waiting.map((cb) => [cb.place, cb.state])).toEqual(Array(5).fill(['triggerer', 'queued']));
    // Nothing for the workers' queue: they wait for a triggerer's claim.
    expect((await api.queues.callbacks.stats()).visible).toBe(0);

    await startTriggerer();
    await startTriggerer();
    await until(settled(runId, 5), 'the callbacks to succeed');
    const done = await callbacksOf(runId);
    expect(done.every((cb) => cb.state === 'success' && cb.attempt === 1)).toBe(true);
    const jobs = new Set(done.map((cb) => cb.workerId));
    expect([...jobs].every((job) => triggerers.some((triggerer) => triggerer.jobId === job))).toBe(true);
    expect(effects.map((effect) => effect.key).sort()).toEqual(done.map((cb) => cb.callbackId).sort());
    expect(effects.every((effect) => effect.kind === 'task_success' && effect.runId === runId)).toBe(true);

    const listed = await api.request<{ callbacks: { place: string; worker_id: string }[] }>(
      'GET',
      `/api/v2/dags/cbtrig/dagRuns/${runId}/callbacks`,
    );
    expect(listed.body.callbacks.map((cb) => cb.place)).toEqual(Array(5).fill('triggerer'));
  });

  it('leaves sync callbacks and those placed on a worker to the workers', async () => {
    const runId = await newRun();
    await succeed(runId, 'placed');
    const callbacks = await callbacksOf(runId);
    expect(callbacks.map((cb) => cb.place)).toEqual(['worker', 'worker']);
    const sent = await api.queues.callbacks.receive({ maxMessages: 10, waitTimeMs: 0 });
    await api.queues.callbacks.delete(sent.map((message) => message.receiptHandle));
    expect(sent.length).toBe(2);
  });

  it('retries a callback that raises on the triggerer, with its log, and changes no task instance', async () => {
    raises = 1;
    const runId = await newRun();
    await succeed(runId, 'flaky');
    await startTriggerer();
    await until(settled(runId, 1), 'the flaky callback to succeed');
    const [callback] = await callbacksOf(runId);
    expect(callback).toMatchObject({ state: 'success', attempt: 2, place: 'triggerer' });
    expect(effects).toEqual([{ key: callback?.callbackId, attempt: 2, kind: 'task_success', runId }]);
    const log = await api.request<{ content: string }>(
      'GET',
      `/api/v2/dags/cbtrig/dagRuns/${runId}/callbacks/${callback?.callbackId}/logs/1`,
    );
    expect(log.body.content).toContain('the alert endpoint is down (attempt 1)');
    expect((await api.store.getTaskInstance(tiKey('cbtrig', runId, 'flaky')))?.state).toBe('success');
  });

  it('hands a claim never started to another triggerer after the queued timeout, and runs it once', async () => {
    const runId = await newRun();
    await succeed(runId, 'a');
    // A triggerer claims, then dies before it starts the attempt.
    const dead = await jobClient();
    await dead.register({ hostname: 'dead', capacity: 10 });
    const [lost] = await dead.claimCallbacks(10);
    expect(lost).toBeDefined();
    // Nobody claims it again before its queued timeout…
    const other = await jobClient();
    await other.register({ hostname: 'other', capacity: 10 });
    expect(await other.claimCallbacks(10)).toEqual([]);
    // …then the tick makes it claimable again.
    api.clock.advance(api.settings.queuedTimeoutMs + 1);
    await api.callbacks.sweep();
    await startTriggerer();
    await until(settled(runId, 1), 'the callback to succeed');
    expect(effects.length).toBe(1);
    // The dead triggerer's workload, delivered late, starts nothing.
    const late = await api.request(
      'PATCH',
      `/execution/callbacks/${lost?.callback_id}/run`,
      WORKER,
      lost?.token,
    );
    expect(late.status).toBe(409);
  });

  it('retries an attempt whose triggerer died before it reported', async () => {
    const runId = await newRun();
    await succeed(runId, 'b');
    const dead = await jobClient();
    await dead.register({ hostname: 'dead', capacity: 10 });
    const [claimed] = await dead.claimCallbacks(10);
    const started = await api.request(
      'PATCH',
      `/execution/callbacks/${claimed?.callback_id}/run`,
      WORKER,
      claimed?.token,
    );
    expect(started.status).toBe(200);
    const [running] = await callbacksOf(runId);
    api.clock.advance((running?.timeoutMs ?? 0) + api.settings.heartbeatTimeoutMs + 1);
    await api.callbacks.sweep();
    expect((await callbacksOf(runId))[0]).toMatchObject({ state: 'queued', attempt: 2 });
    api.clock.advance(api.settings.callbackRetryDelayMs + 1);
    await startTriggerer();
    await until(settled(runId, 1), 'the retried callback to succeed');
    expect((await callbacksOf(runId))[0]).toMatchObject({ state: 'success', attempt: 2 });
    expect(effects.map((effect) => effect.attempt)).toEqual([2]);
  });

  it('hands an attempt back when its triggerer stops gracefully: it runs again at once, not counted as an attempt', async () => {
    hold = true;
    const runId = await newRun();
    await succeed(runId, 'held');
    const first = await startTriggerer();
    await until(async () => (await callbacksOf(runId))[0]?.state === 'running', 'the attempt to start');
    expect(first.runningCallbacks).toBe(1);
    await first.stop();
    // retries: 0 and a retry delay of an hour: a counted failure would have ended it for good.
    expect((await callbacksOf(runId))[0]).toMatchObject({
      state: 'queued',
      attempt: 1,
      handedBack: 1,
      notBefore: null,
    });
    hold = false;
    await startTriggerer();
    await until(settled(runId, 1), 'the handed-back callback to succeed');
    expect((await callbacksOf(runId))[0]).toMatchObject({ state: 'success', attempt: 1 });
    expect(effects.length).toBe(1);
    // The stopped attempt may have had its effect: the next one is told.
    expect(mayHaveRun).toEqual([true]);
  });

  it('leaves the attempts of a triggerer that crashed to the tick', async () => {
    hold = true;
    const runId = await newRun();
    await succeed(runId, 'held');
    const crashed = await startTriggerer();
    await until(async () => (await callbacksOf(runId))[0]?.state === 'running', 'the attempt to start');
    await crashed.stop({ graceful: false });
    const [left] = await callbacksOf(runId);
    expect(left).toMatchObject({ state: 'running', attempt: 1 });
    // Still counted for the triggerers' scaling while it runs (or is lost).
    expect(await api.store.countTriggererCallbacks(api.clock.iso(), 100)).toBeGreaterThanOrEqual(1);
    api.clock.advance((left?.timeoutMs ?? 0) + api.settings.heartbeatTimeoutMs + 1);
    await api.callbacks.sweep();
    // retries: 0: the lost attempt fails the callback, and the tick says why.
    expect((await callbacksOf(runId))[0]).toMatchObject({ state: 'failed', attempt: 1 });
    expect((await callbacksOf(runId))[0]?.errorMessage).toContain('its worker was lost');
  });

  it('counts for the triggerers what they have to run now, and not a retry still waiting out its delay', async () => {
    const runId = await newRun();
    const before = await api.store.countTriggererCallbacks(api.clock.iso(), 1_000);
    await succeed(runId, 'c');
    expect(await api.store.countTriggererCallbacks(api.clock.iso(), 1_000)).toBe(before + 1);
    const client = await jobClient();
    await client.register({ hostname: 'counter', capacity: 10 });
    const [claimed] = await client.claimCallbacks(10);
    // Claimed, not started: still the triggerers'.
    expect(await api.store.countTriggererCallbacks(api.clock.iso(), 1_000)).toBe(before + 1);
    const start = await api.request(
      'PATCH',
      `/execution/callbacks/${claimed?.callback_id}/run`,
      WORKER,
      claimed?.token,
    );
    expect(start.status).toBe(200);
    expect(await api.store.countTriggererCallbacks(api.clock.iso(), 1_000)).toBe(before + 1);
    const failed = await api.request(
      'PATCH',
      `/execution/callbacks/${claimed?.callback_id}/state`,
      { state: 'failed', report_id: randomUUID(), error_message: 'down', retryable: true },
      claimed?.token,
    );
    expect(failed.body).toMatchObject({ state: 'queued' });
    // The retry waits out its delay (UPDRAFT_CALLBACK_RETRY_DELAY_MS): nothing to run until then.
    expect(await api.store.countTriggererCallbacks(api.clock.iso(), 1_000)).toBe(before);
    api.clock.advance(api.settings.callbackRetryDelayMs + 1);
    expect(await api.store.countTriggererCallbacks(api.clock.iso(), 1_000)).toBe(before + 1);
  });

  it('moves a callback no triggerer claimed in time to the workers', async () => {
    const runId = await newRun();
    await succeed(runId, 'd');
    expect((await callbacksOf(runId))[0]?.place).toBe('triggerer');
    api.clock.advance(api.settings.callbackTriggererClaimTimeoutMs - 1_000);
    await api.callbacks.sweep();
    expect((await callbacksOf(runId))[0]?.place).toBe('triggerer');
    api.clock.advance(1_001);
    await api.callbacks.sweep();
    const [moved] = await callbacksOf(runId);
    expect(moved).toMatchObject({ place: 'worker', state: 'queued', attempt: 1 });
    const sent = await api.queues.callbacks.receive({ maxMessages: 10, waitTimeMs: 0 });
    await api.queues.callbacks.delete(sent.map((message) => message.receiptHandle));
    expect(sent.map((message) => JSON.parse(message.body).callback_id)).toContain(moved?.callbackId);
    expect((await api.metrics.snapshot()).counters['callbacks.moved_to_workers']).toBeGreaterThanOrEqual(1);
  });

  it('refuses a claim without a running job token', async () => {
    const task = await api.request('POST', '/execution/callbacks/claim', { limit: 1 }, 'not-a-token');
    expect(task.status).toBe(401);
    const client = await jobClient();
    await client.register({ hostname: 'x', capacity: 1 });
    const job = client.job;
    await client.complete();
    const after = await api.request('POST', '/execution/callbacks/claim', { limit: 1 }, job?.token);
    expect(after.status).toBe(409);
    const tooMany = await api.request('POST', '/execution/callbacks/claim', { limit: 1_001 }, job?.token);
    expect(tooMany.status).toBe(422);
  });
});
