import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nextTryNumberOf, type TaskInstanceKey } from '#core/models.ts';
import { silentLogger } from '#engine/logger.ts';
import { reconcileActiveTaskInstances } from '#engine/reconcile.ts';
import { triggerIdOf } from '#engine/triggers.ts';
import { dag } from '#sdk/index.ts';
import {
  type ApiHarness,
  type ErrorBody,
  type StartedTaskBody,
  startApiHarness,
  tiKey,
  tiPath,
  WORKER,
} from './api-harness.ts';

/**
 * The deferral and triggerer parts of the Execution API over real HTTP: a task defers, a
 * triggerer job claims and reports on its trigger, and every event is bound to one deferral.
 */
const deferring = dag({ id: 'deferring' }, (d) => {
  d.task({ id: 'wait', retries: 1, retryDelay: '1s', executionTimeout: '1h' }, async () => 1);
  d.task({ id: 'once', retries: 0 }, async () => 1);
});

let api: ApiHarness;
let runs = 0;
const TRIGGER = { name: 'updraft.TimeDeltaTrigger', kwargs: '{"moment":"2030-01-01T00:00:00.000Z"}' };

beforeAll(async () => {
  api = await startApiHarness({
    triggererHeartbeatIntervalMs: 1_000,
    triggererHeartbeatTimeoutMs: 5_000,
  });
  await api.registerDags([deferring]);
});
afterAll(async () => {
  await api?.close();
});

async function newKey(taskId = 'wait'): Promise<TaskInstanceKey> {
  const runId = `run_${++runs}`;
  const response = await api.request('POST', '/api/v2/dags/deferring/dagRuns', { dag_run_id: runId });
  expect(response.status).toBe(201);
  return tiKey('deferring', runId, taskId);
}

/** Queues the TI as the scheduler would (the same try when it resumes) and starts it. */
async function start(key: TaskInstanceKey) {
  const current = await api.store.getTaskInstance(key);
  if (!current) throw new Error('no TI');
  const tryNumber = nextTryNumberOf(current);
  await api.store.transitionTaskInstance(
    key,
    { state: current.state, tryNumber: current.tryNumber },
    { state: 'queued', tryNumber, queuedAt: api.clock.iso() },
  );
  const token = await api.tokens.issue({ ...key, tryNumber }, api.clock.nowMs);
  const response = await api.request<StartedTaskBody>('PATCH', tiPath(key, 'run'), WORKER, token);
  expect(response.status).toBe(200);
  return { token, started: response.body, tryNumber };
}

const deferBody = (overrides: Record<string, unknown> = {}) => ({
  state: 'deferred',
  report_id: randomUUID(),
  deferral: {
    trigger: TRIGGER,
    next_method: 'executeComplete',
    next_kwargs: '{"round":1}',
    timeout_ms: 60_000,
  },
  ...overrides,
});

async function deferTask(key: TaskInstanceKey, token: string) {
  const response = await api.request('PATCH', tiPath(key, 'state'), deferBody(), token);
  expect(response.status).toBe(200);
  const ti = await api.store.getTaskInstance(key);
  if (!ti?.triggerId) throw new Error('not deferred');
  return ti;
}

async function registerJob(capacity = 10): Promise<{ jobId: string; token: string }> {
  const credential = await api.tokens.issueClaims({ kind: 'triggerer' }, api.clock.nowMs);
  const response = await api.request<{ job_id: string; token: string }>(
    'POST',
    '/execution/jobs',
    { hostname: 'triggerer-1', capacity },
    credential,
  );
  expect(response.status).toBe(201);
  return { jobId: response.body.job_id, token: response.body.token };
}

const load = (job: { token: string }, limit = 100) =>
  api.request<{ trigger_ids: string[] }>('POST', '/execution/triggers/load', { limit }, job.token);

const event = (job: { token: string }, triggerId: string, body: Record<string, unknown>) =>
  api.request<{ outcome: string } & ErrorBody>(
    'POST',
    `/execution/triggers/${triggerId}/event`,
    body,
    job.token,
  );

/** A deferred TI whose trigger `job` holds. */
async function deferredAndClaimed(job: { token: string }, taskId = 'wait') {
  const key = await newKey(taskId);
  const { token } = await start(key);
  const ti = await deferTask(key, token);
  const claimed = await load(job);
  expect(claimed.body.trigger_ids).toContain(ti.triggerId);
  return { key, ti, triggerId: ti.triggerId as string };
}

/**
 * A running try whose first deferral has made its first write only (the trigger row, the TI still
 * running), its trigger claimed by `job`.
 */
async function runningWithTriggerClaimed(job: { token: string }, key: TaskInstanceKey): Promise<string> {
  const { tryNumber } = await start(key);
  const triggerId = triggerIdOf(key, tryNumber, 1);
  await api.store.putTrigger({
    triggerId,
    name: TRIGGER.name,
    kwargs: TRIGGER.kwargs,
    queue: 'default',
    ti: key,
    tryNumber,
    deferralSeq: 1,
    createdAt: api.clock.iso(),
    timeoutAt: null,
    jobId: null,
    claimedAt: null,
    revision: 0,
  });
  expect((await load(job)).body.trigger_ids).toContain(triggerId);
  return triggerId;
}

describe('deferral reports', () => {
  it('defers a running TI: the trigger is stored, the TI waits on it and the try is kept', async () => {
    const key = await newKey();
    const { token, tryNumber } = await start(key);
    const ti = await deferTask(key, token);
    expect(ti).toMatchObject({ state: 'deferred', tryNumber, deferralSeq: 1, nextMethod: 'executeComplete' });
    const trigger = await api.store.getTrigger(ti.triggerId as string);
    expect(trigger).toMatchObject({
      name: TRIGGER.name,
      kwargs: TRIGGER.kwargs,
      queue: 'default',
      jobId: null,
    });
    expect(trigger?.triggerId).toBe(triggerIdOf(key, tryNumber, 1));
    expect(Date.parse(ti.triggerTimeoutAt as string) - api.clock.nowMs).toBeLessThanOrEqual(60_000);
  });

  it('answers a repeated deferral report as a duplicate and stores one trigger', async () => {
    const key = await newKey();
    const { token } = await start(key);
    const body = deferBody();
    expect((await api.request('PATCH', tiPath(key, 'state'), body, token)).status).toBe(200);
    const again = await api.request<{ duplicate?: boolean }>('PATCH', tiPath(key, 'state'), body, token);
    expect(again.status).toBe(200);
    expect(again.body.duplicate).toBe(true);
    expect((await api.store.getTaskInstance(key))?.deferralSeq).toBe(1);
  });

  it('refuses defer kwargs over UPDRAFT_XCOM_MAX_BYTES with 413 and leaves the TI running', async () => {
    const key = await newKey();
    const { token } = await start(key);
    const big = JSON.stringify({ blob: 'x'.repeat(api.settings.xcomMaxBytes) });
    const response = await api.request<ErrorBody>(
      'PATCH',
      tiPath(key, 'state'),
      deferBody({ deferral: { trigger: TRIGGER, next_method: 'go', next_kwargs: big, timeout_ms: null } }),
      token,
    );
    expect(response.status).toBe(413);
    expect(response.body.detail).toContain('UPDRAFT_XCOM_MAX_BYTES');
    expect((await api.store.getTaskInstance(key))?.state).toBe('running');
  });

  it('refuses a next method that is not a name with 422', async () => {
    const key = await newKey();
    const { token } = await start(key);
    const response = await api.request(
      'PATCH',
      tiPath(key, 'state'),
      deferBody({ deferral: { trigger: TRIGGER, next_method: 'a b', next_kwargs: '{}', timeout_ms: null } }),
      token,
    );
    expect(response.status).toBe(422);
  });
});

describe('triggerer jobs and tokens', () => {
  it('refuses to register a job with a task token (403) or without a token (401)', async () => {
    const key = await newKey();
    const { token } = await start(key);
    const body = { hostname: 'h', capacity: 1 };
    expect((await api.request('POST', '/execution/jobs', body, token)).status).toBe(403);
    expect((await api.request('POST', '/execution/jobs', body, null)).status).toBe(401);
  });

  it('refuses a job token on the task instance routes with 403', async () => {
    const job = await registerJob();
    const key = await newKey();
    await start(key);
    const response = await api.request<ErrorBody>('PUT', tiPath(key, 'heartbeat'), {}, job.token);
    expect(response.status).toBe(403);
    expect(response.body.detail).toContain('job token');
  });

  it('refuses a task token on the trigger routes with 403', async () => {
    const key = await newKey();
    const { token } = await start(key);
    expect((await api.request('POST', '/execution/triggers/load', { limit: 1 }, token)).status).toBe(403);
  });

  it("refuses a heartbeat for another job's id with 403", async () => {
    const one = await registerJob();
    const other = await registerJob();
    const response = await api.request(
      'POST',
      `/execution/jobs/${other.jobId}/heartbeat`,
      { running: 0 },
      one.token,
    );
    expect(response.status).toBe(403);
  });

  it('refuses bodies with unknown keys or out-of-range values with 422 and a message', async () => {
    const job = await registerJob();
    const unknown = await api.request<ErrorBody>(
      'POST',
      '/execution/triggers/load',
      { limit: 1, extra: 1 },
      job.token,
    );
    expect(unknown.status).toBe(422);
    expect(unknown.body.detail).toContain('extra');
    const zero = await api.request<ErrorBody>('POST', '/execution/triggers/load', { limit: 0 }, job.token);
    expect(zero.status).toBe(422);
    expect(zero.body.detail).toContain('limit');
    const hashQueue = await api.request<ErrorBody>(
      'POST',
      '/execution/triggers/load',
      { limit: 1, queues: ['gpu#1'] },
      job.token,
    );
    expect(hashQueue.status).toBe(422);
    expect(hashQueue.body.detail).toContain("must not contain '#'");
  });

  it('answers 409 to the heartbeat of a completed job, and the completion releases its triggers', async () => {
    const job = await registerJob();
    const { triggerId } = await deferredAndClaimed(job);
    expect(
      (await api.request('POST', `/execution/jobs/${job.jobId}/complete`, undefined, job.token)).status,
    ).toBe(200);
    expect((await api.store.getTrigger(triggerId))?.jobId).toBeNull();
    const beat = await api.request(
      'POST',
      `/execution/jobs/${job.jobId}/heartbeat`,
      { running: 0 },
      job.token,
    );
    expect(beat.status).toBe(409);
  });

  it("hands a silent job's triggers to another job after the heartbeat timeout", async () => {
    const silent = await registerJob();
    const { triggerId } = await deferredAndClaimed(silent);
    const other = await registerJob();
    expect((await load(other)).body.trigger_ids).not.toContain(triggerId);
    api.clock.advance(api.settings.triggererHeartbeatTimeoutMs + 1);
    expect((await load(other)).body.trigger_ids).toContain(triggerId);
    const beat = await api.request(
      'POST',
      `/execution/jobs/${silent.jobId}/heartbeat`,
      { running: 1 },
      silent.token,
    );
    expect(beat.status).toBe(409);
    // The job that lost the trigger cannot report on it.
    const late = await event(silent, triggerId, { type: 'resume', payload: '1' });
    expect(late.status).toBe(409);
  });
});

describe('trigger events', () => {
  it('resumes the TI in the same try with the payload kept as opaque text', async () => {
    const job = await registerJob();
    const { key, ti, triggerId } = await deferredAndClaimed(job);
    const payload = '{"__updraft_type":"updraft.Date","value":"2030-01-01T00:00:00.000Z"}';
    const response = await event(job, triggerId, { type: 'resume', payload });
    expect(response.body.outcome).toBe('applied');
    const resumed = await api.store.getTaskInstance(key);
    expect(resumed).toMatchObject({ state: 'scheduled', tryNumber: ti.tryNumber, nextEvent: payload });
    expect(await api.store.getTrigger(triggerId)).toBeUndefined();
    const { started, tryNumber } = await start(key);
    expect(tryNumber).toBe(ti.tryNumber);
    expect(started.resume).toEqual({
      method: 'executeComplete',
      kwargs: '{"round":1}',
      event: payload,
      deferral_seq: 1,
    });
    expect(started.execution_timeout_ms).toBeLessThanOrEqual(3_600_000);
  });

  it('drops an event for an earlier deferral of the same try, and counts it', async () => {
    const job = await registerJob();
    const { key, ti, triggerId: first } = await deferredAndClaimed(job);
    expect((await event(job, first, { type: 'resume', payload: '1' })).body.outcome).toBe('applied');
    const { token } = await start(key);
    await deferTask(key, token);
    // The first deferral's trigger, stored again (a triggerer that never heard it was done).
    await api.store.putTrigger({
      ...(await api.store.getTrigger((await api.store.getTaskInstance(key))?.triggerId as string))!,
      triggerId: first,
      deferralSeq: 1,
      jobId: null,
    });
    expect((await load(job)).body.trigger_ids).toContain(first);
    const before = (await api.metrics.snapshot()).counters['triggers.stale_events_dropped'] ?? 0;
    expect((await event(job, first, { type: 'resume', payload: '2' })).body.outcome).toBe('stale');
    const after = await api.store.getTaskInstance(key);
    expect(after).toMatchObject({ state: 'deferred', deferralSeq: 2, tryNumber: ti.tryNumber });
    expect((await api.metrics.snapshot()).counters['triggers.stale_events_dropped']).toBe(before + 1);
  });

  it('drops an event for an earlier try', async () => {
    const job = await registerJob();
    const { key, ti, triggerId } = await deferredAndClaimed(job);
    // The try ended another way (a timeout put it up for retry), and the next try runs.
    await api.store.transitionTaskInstance(
      key,
      { state: 'deferred', tryNumber: ti.tryNumber },
      { state: 'up_for_retry', nextRetryAt: api.clock.iso() },
      { owed: [] },
    );
    await start(key);
    expect((await event(job, triggerId, { type: 'resume', payload: '1' })).body.outcome).toBe('stale');
    expect(await api.store.getTaskInstance(key)).toMatchObject({
      state: 'running',
      tryNumber: ti.tryNumber + 1,
    });
  });

  it('applies the first of two events and drops the second', async () => {
    const job = await registerJob();
    const { key, triggerId } = await deferredAndClaimed(job);
    const [a, b] = await Promise.all([
      event(job, triggerId, { type: 'resume', payload: '"a"' }),
      event(job, triggerId, { type: 'resume', payload: '"b"' }),
    ]);
    // The second finds the deferral already resumed by this trigger: a duplicate, not applied again.
    expect([a.body.outcome, b.body.outcome].sort()).toEqual(['applied', 'duplicate']);
    const ti = await api.store.getTaskInstance(key);
    expect(['"a"', '"b"']).toContain(ti?.nextEvent);
  });

  it('ends the task from the trigger with a success event, its payload as the XCom', async () => {
    const job = await registerJob();
    const { key, triggerId } = await deferredAndClaimed(job);
    const response = await event(job, triggerId, { type: 'success', payload: '{"rows":3}' });
    expect(response.body).toEqual({ outcome: 'applied' });
    expect((await api.store.getTaskInstance(key))?.state).toBe('success');
    expect(await api.store.getXCom({ ...key, key: 'return_value' })).toBe('{"rows":3}');
  });

  it('ends the task from the trigger with a failure event, without a retry', async () => {
    const job = await registerJob();
    const { key, triggerId } = await deferredAndClaimed(job);
    expect((await event(job, triggerId, { type: 'failure', payload: '"job 42 failed"' })).body.outcome).toBe(
      'applied',
    );
    const ti = await api.store.getTaskInstance(key);
    expect(ti?.state).toBe('failed');
    expect(ti?.errorMessage).toContain('job 42 failed');
  });

  it('puts the TI up for retry when its trigger fails and retries are left', async () => {
    const job = await registerJob();
    const { key, triggerId } = await deferredAndClaimed(job);
    const response = await api.request<{ outcome: string }>(
      'POST',
      `/execution/triggers/${triggerId}/failure`,
      { error: 'boom' },
      job.token,
    );
    expect(response.body.outcome).toBe('applied');
    const ti = await api.store.getTaskInstance(key);
    expect(ti?.state).toBe('up_for_retry');
    expect(ti?.errorMessage).toContain('boom');
  });

  it('fails the try, naming the setting, for an event payload over UPDRAFT_XCOM_MAX_BYTES', async () => {
    const job = await registerJob();
    const { key, triggerId } = await deferredAndClaimed(job, 'once');
    const payload = JSON.stringify('x'.repeat(api.settings.xcomMaxBytes));
    const response = await event(job, triggerId, { type: 'resume', payload });
    expect(response.body.outcome).toBe('applied');
    const ti = await api.store.getTaskInstance(key);
    expect(ti?.state).toBe('failed');
    expect(ti?.errorMessage).toContain('UPDRAFT_XCOM_MAX_BYTES');
  });

  it('cuts a trigger log chunk over the chunk limit instead of refusing the event', async () => {
    const job = await registerJob();
    const { key, triggerId } = await deferredAndClaimed(job);
    const text = 'y'.repeat(api.settings.logChunkMaxBytes + 10);
    const response = await event(job, triggerId, { type: 'resume', payload: '1', log: { seq: 1, text } });
    expect(response.body.outcome).toBe('applied');
    expect((await api.store.getTaskInstance(key))?.state).toBe('scheduled');
  });

  it('refuses an event type it does not know with 422', async () => {
    const job = await registerJob();
    const { triggerId } = await deferredAndClaimed(job);
    expect((await event(job, triggerId, { type: 'maybe', payload: '1' })).status).toBe(422);
  });

  it('keeps trigger log chunks in the try log, between the phases of the task', async () => {
    const job = await registerJob();
    const { key, ti, triggerId } = await deferredAndClaimed(job);
    await api.request(
      'POST',
      '/execution/triggers/logs',
      { chunks: [{ trigger_id: triggerId, seq: 1, text: 'waiting\n' }] },
      job.token,
    );
    await event(job, triggerId, { type: 'resume', payload: '1', log: { seq: 2, text: 'fired\n' } });
    const log = await api.request<{ content: string }>(
      'GET',
      `/api/v2/dags/deferring/dagRuns/${key.runId}/taskInstances/wait/logs/${ti.tryNumber}`,
    );
    expect(log.status).toBe(200);
    expect(JSON.stringify(log.body)).toMatch(/waiting\\n.*fired/);
  });
});

type EventResult = { trigger_id: string; outcome?: string; status?: number; detail?: string };
const events = (job: { token: string }, body: unknown) =>
  api.request<{ results: EventResult[] } & ErrorBody>('POST', '/execution/triggers/events', body, job.token);

describe('trigger events in one call', () => {
  it('applies each event as the single route does and answers one result per event, in order', async () => {
    const job = await registerJob();
    const other = await registerJob();
    const resumed = await deferredAndClaimed(job);
    const succeeded = await deferredAndClaimed(job);
    // Held by another job: that event is refused on its own (409), the rest go on.
    const foreign = await deferredAndClaimed(job);
    await api.store.releaseTrigger(foreign.triggerId, job.jobId);
    expect((await load(other)).body.trigger_ids).toContain(foreign.triggerId);
    // A trigger stored before its TI waits on it (the deferral's first write only): 503, send it again.
    const early = { triggerId: await runningWithTriggerClaimed(job, await newKey()) };

    const response = await events(job, {
      events: [
        { trigger_id: resumed.triggerId, type: 'resume', payload: '"r"' },
        { trigger_id: 'gone', type: 'resume', payload: '1' },
        { trigger_id: succeeded.triggerId, type: 'success', payload: '{"rows":3}' },
        { trigger_id: foreign.triggerId, type: 'resume', payload: '1' },
        { trigger_id: early.triggerId, type: 'resume', payload: '1' },
      ],
    });

    expect(response.status).toBe(200);
    expect(response.body.results).toEqual([
      { trigger_id: resumed.triggerId, outcome: 'applied' },
      { trigger_id: 'gone', outcome: 'stale' },
      { trigger_id: succeeded.triggerId, outcome: 'applied' },
      {
        trigger_id: foreign.triggerId,
        status: 409,
        detail: `Trigger ${foreign.triggerId} is held by another triggerer now (job ${other.jobId}), not by job ${job.jobId}`,
      },
      {
        trigger_id: early.triggerId,
        status: 503,
        detail: `Trigger ${early.triggerId} fired before its task instance finished deferring; send the event again`,
      },
    ]);
    expect(await api.store.getTaskInstance(resumed.key)).toMatchObject({
      state: 'scheduled',
      nextEvent: '"r"',
    });
    expect(await api.store.getTaskInstance(succeeded.key)).toMatchObject({ state: 'success' });
    expect(await api.store.getXCom({ ...succeeded.key, key: 'return_value' })).toBe('{"rows":3}');
    // The applied events' triggers are deleted; the refused ones are kept for their holder.
    expect(await api.store.getTrigger(resumed.triggerId)).toBeUndefined();
    expect(await api.store.getTrigger(succeeded.triggerId)).toBeUndefined();
    expect(await api.store.getTrigger(foreign.triggerId)).toMatchObject({ jobId: other.jobId });
    expect(await api.store.getTrigger(early.triggerId)).toMatchObject({ jobId: job.jobId });

    // Sent again (an answer lost): the applied ones come back as already done, nothing changes twice.
    const again = await events(job, {
      events: [{ trigger_id: resumed.triggerId, type: 'resume', payload: '"other"' }],
    });
    expect(again.body.results).toEqual([{ trigger_id: resumed.triggerId, outcome: 'stale' }]);
    expect(await api.store.getTaskInstance(resumed.key)).toMatchObject({ nextEvent: '"r"' });
  });

  it('fails the try of an event over UPDRAFT_XCOM_MAX_BYTES, as the single route does, and applies the others', async () => {
    const job = await registerJob();
    const big = await deferredAndClaimed(job, 'once');
    const small = await deferredAndClaimed(job);
    const response = await events(job, {
      events: [
        { trigger_id: big.triggerId, type: 'resume', payload: `"${'x'.repeat(api.settings.xcomMaxBytes)}"` },
        { trigger_id: small.triggerId, type: 'resume', payload: '1' },
      ],
    });
    expect(response.body.results.map((result) => result.outcome)).toEqual(['applied', 'applied']);
    const failed = await api.store.getTaskInstance(big.key);
    expect(failed?.state).toBe('failed');
    expect(failed?.errorMessage).toContain('UPDRAFT_XCOM_MAX_BYTES');
    expect(await api.store.getTaskInstance(small.key)).toMatchObject({ state: 'scheduled' });
  });

  it("ends the task with a failure event's reason however long its payload", async () => {
    const job = await registerJob();
    const { key, triggerId } = await deferredAndClaimed(job);
    const reason = `upstream said no: ${'x'.repeat(api.settings.xcomMaxBytes)}`;
    const response = await events(job, {
      events: [{ trigger_id: triggerId, type: 'failure', payload: JSON.stringify(reason) }],
    });
    expect(response.body.results).toEqual([{ trigger_id: triggerId, outcome: 'applied' }]);
    const failed = await api.store.getTaskInstance(key);
    expect(failed?.state).toBe('failed');
    expect(failed?.errorMessage).toMatch(/^The trigger ended the task as failed: upstream said no: x+/);
  });

  it('answers 400 for an id no trigger can have, and applies the others', async () => {
    const job = await registerJob();
    const good = await deferredAndClaimed(job);
    const response = await events(job, {
      events: [
        { trigger_id: 'a#b', type: 'resume', payload: '1' },
        { trigger_id: good.triggerId, type: 'resume', payload: '1' },
      ],
    });
    expect(response.status).toBe(200);
    expect(response.body.results).toEqual([
      {
        trigger_id: 'a#b',
        status: 400,
        detail: "Trigger id 'a#b' cannot be stored: it must be non-empty and must not contain '#'",
      },
      { trigger_id: good.triggerId, outcome: 'applied' },
    ]);
    expect(await api.store.getTaskInstance(good.key)).toMatchObject({ state: 'scheduled' });
  });

  it('answers the applied events when deleting their triggers fails (cleanup deletes them later)', async () => {
    const job = await registerJob();
    const { key, triggerId } = await deferredAndClaimed(job);
    const deleteTriggers = api.store.deleteTriggers.bind(api.store);
    api.store.deleteTriggers = async () => {
      throw new Error('store down');
    };
    try {
      const response = await events(job, {
        events: [{ trigger_id: triggerId, type: 'resume', payload: '1' }],
      });
      expect(response.status).toBe(200);
      expect(response.body.results).toEqual([{ trigger_id: triggerId, outcome: 'applied' }]);
    } finally {
      api.store.deleteTriggers = deleteTriggers;
    }
    expect(await api.store.getTaskInstance(key)).toMatchObject({ state: 'scheduled' });
    expect(await api.store.getTrigger(triggerId)).toBeDefined();
  });

  it('refuses with 422 a batch naming a trigger twice, more than 100 events, or none', async () => {
    const job = await registerJob();
    const one = { trigger_id: 't', type: 'resume', payload: '1' };
    const twice = await events(job, { events: [one, one] });
    expect(twice.status).toBe(422);
    expect(twice.body.detail).toContain("trigger_id 't' appears more than once");
    const many = Array.from({ length: 101 }, (_, i) => ({ ...one, trigger_id: `t${i}` }));
    expect((await events(job, { events: many })).status).toBe(422);
    expect((await events(job, { events: [] })).status).toBe(422);
    const hundred = Array.from({ length: 100 }, (_, i) => ({ ...one, trigger_id: `t${i}` }));
    const atLimit = await events(job, { events: hundred });
    expect(atLimit.status).toBe(200);
    expect(atLimit.body.results).toHaveLength(100);
  });
});

describe('workloads and cleanup', () => {
  it('gives the workloads of held triggers and asks to stop the rest', async () => {
    const job = await registerJob();
    const other = await registerJob();
    const { key, triggerId } = await deferredAndClaimed(job);
    const response = await api.request<{
      workloads: { trigger_id: string; ti: { try_number: number } }[];
      stop: string[];
    }>('POST', '/execution/triggers/workloads', { trigger_ids: [triggerId, 'unknown-id'] }, job.token);
    expect(response.body.workloads.map((w) => w.trigger_id)).toEqual([triggerId]);
    expect(response.body.workloads[0]).toMatchObject({ name: TRIGGER.name, kwargs: TRIGGER.kwargs });
    expect(response.body.stop).toEqual(['unknown-id']);
    const foreign = await api.request<{ stop: string[] }>(
      'POST',
      '/execution/triggers/cleanup',
      { trigger_ids: [triggerId] },
      other.token,
    );
    expect(foreign.body.stop).toEqual([triggerId]);
    expect((await api.store.getTaskInstance(key))?.state).toBe('deferred');
  });

  it('asks to stop, and deletes, a trigger its TI no longer waits on', async () => {
    const job = await registerJob();
    const { key, ti, triggerId } = await deferredAndClaimed(job);
    await api.store.transitionTaskInstance(
      key,
      { state: 'deferred', tryNumber: ti.tryNumber },
      { state: 'failed' },
      { owed: [] },
    );
    const response = await api.request<{ stop: string[] }>(
      'POST',
      '/execution/triggers/cleanup',
      { trigger_ids: [triggerId] },
      job.token,
    );
    expect(response.body.stop).toEqual([triggerId]);
    expect(await api.store.getTrigger(triggerId)).toBeUndefined();
  });
});

describe('a load whose answer was lost', () => {
  it('names the triggers the job holds without knowing them when the cleanup lists all it runs', async () => {
    const job = await registerJob();
    const { triggerId } = await deferredAndClaimed(job);
    const partial = await api.request<{ stop: string[]; adopt?: string[] }>(
      'POST',
      '/execution/triggers/cleanup',
      { trigger_ids: [] },
      job.token,
    );
    expect(partial.body.adopt).toBeUndefined();
    const complete = await api.request<{ stop: string[]; adopt: string[] }>(
      'POST',
      '/execution/triggers/cleanup',
      { trigger_ids: [], complete: true },
      job.token,
    );
    expect(complete.body).toEqual({ stop: [], adopt: [triggerId] });
    const known = await api.request<{ stop: string[]; adopt: string[] }>(
      'POST',
      '/execution/triggers/cleanup',
      { trigger_ids: [triggerId], complete: true },
      job.token,
    );
    expect(known.body).toEqual({ stop: [], adopt: [] });
  });

  it('lists the ids the job holds, a page of 1,000 at a time, for a triggerer holding more than a cleanup names', async () => {
    const job = await registerJob();
    const other = await registerJob();
    const { triggerId } = await deferredAndClaimed(job);
    const stored = (await api.store.getTrigger(triggerId))!;
    // One more than a page: 1,000 copies of the claimed trigger, held by the same job.
    const copies = Array.from({ length: 1_000 }, (_, index) => `${triggerId}-copy-${index}`);
    for (let index = 0; index < copies.length; index += 50) {
      await Promise.all(
        copies.slice(index, index + 50).map((id) => api.store.putTrigger({ ...stored, triggerId: id })),
      );
    }
    const listed: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const held = await api.request<{ trigger_ids: string[]; next_cursor?: string }>(
        'POST',
        '/execution/triggers/held',
        cursor === undefined ? {} : { cursor },
        job.token,
      );
      expect(held.status).toBe(200);
      expect(held.body.trigger_ids.length).toBeLessThanOrEqual(1_000);
      listed.push(...held.body.trigger_ids);
      cursor = held.body.next_cursor;
      pages += 1;
    } while (cursor !== undefined);
    expect(pages).toBeGreaterThanOrEqual(2);
    expect(listed.sort()).toEqual([triggerId, ...copies].sort());
    // The copies would crowd the claims of later tests (the store is shared).
    await Promise.all(copies.map((id) => api.store.deleteTrigger(id)));
    const none = await api.request('POST', '/execution/triggers/held', {}, other.token);
    expect(none.body).toEqual({ trigger_ids: [] });
    const malformed = await api.request<ErrorBody>(
      'POST',
      '/execution/triggers/held',
      { cursor: 'not-a-cursor' },
      job.token,
    );
    expect(malformed.status).toBe(400);
    expect(malformed.body.detail).toMatch(/cursor/i);
    const unknownKey = await api.request('POST', '/execution/triggers/held', { page: 2 }, job.token);
    expect(unknownKey.status).toBe(422);
    const key = await newKey();
    const { token } = await start(key);
    expect((await api.request('POST', '/execution/triggers/held', {}, token)).status).toBe(403);
  });
});

describe('a trigger stored a moment before its task instance waits on it', () => {
  it('is handed out and its event is asked again (503) until the deferral is written', async () => {
    const job = await registerJob();
    const triggerId = await runningWithTriggerClaimed(job, await newKey());
    const workloads = await api.request<{ workloads: unknown[]; stop: string[] }>(
      'POST',
      '/execution/triggers/workloads',
      { trigger_ids: [triggerId] },
      job.token,
    );
    expect(workloads.body.stop).toEqual([]);
    expect(workloads.body.workloads).toHaveLength(1);
    const early = await event(job, triggerId, { type: 'resume', payload: '1' });
    expect(early.status).toBe(503);
    expect(early.headers.get('retry-after')).toBe('1');
    expect(await api.store.getTrigger(triggerId)).toBeDefined();
  });
});

describe('a deferral report repeated after the try resumed', () => {
  it('is answered as a duplicate and changes nothing in the resumed phase', async () => {
    const job = await registerJob();
    const key = await newKey();
    const { token } = await start(key);
    const body = deferBody();
    expect((await api.request('PATCH', tiPath(key, 'state'), body, token)).status).toBe(200);
    const triggerId = (await api.store.getTaskInstance(key))?.triggerId as string;
    expect((await load(job)).body.trigger_ids).toContain(triggerId);
    expect((await event(job, triggerId, { type: 'resume', payload: '1' })).body.outcome).toBe('applied');
    const resumed = await start(key);
    const late = await api.request<{ duplicate?: boolean }>(
      'PATCH',
      tiPath(key, 'state'),
      body,
      resumed.token,
    );
    expect(late.status).toBe(200);
    expect(late.body.duplicate).toBe(true);
    expect(await api.store.getTaskInstance(key)).toMatchObject({ state: 'running', deferralSeq: 1 });
    expect((await api.store.listTriggers({ limit: 10 })).items.map((t) => t.triggerId)).not.toContain(
      triggerIdOf(key, resumed.tryNumber, 2),
    );
  });
});

describe('a deferral that can never end otherwise', () => {
  it('fails the try when the trigger it waits on is gone (the tick reconciles it)', async () => {
    const key = await newKey();
    const { token } = await start(key);
    const ti = await deferTask(key, token);
    await api.store.deleteTrigger(ti.triggerId as string);
    const run = await api.store.getDagRun(key);
    const dag = await api.store.getSerializedDag('deferring', run!.dagVersion);
    const metrics = { increment: () => undefined, gauge: () => undefined };
    await reconcileActiveTaskInstances(
      { store: api.store, settings: api.settings, log: silentLogger, metrics },
      [ti],
      dag!,
      api.clock.nowMs,
    );
    const after = await api.store.getTaskInstance(key);
    expect(after?.state).toBe('up_for_retry');
    expect(after?.errorMessage).toContain('is gone');
  });

  it('lets a clear end the wait and delete the trigger', async () => {
    const key = await newKey();
    const { token } = await start(key);
    const ti = await deferTask(key, token);
    const response = await api.request('POST', '/api/v2/dags/deferring/clearTaskInstances', {
      dag_run_id: key.runId,
      task_ids: ['wait'],
    });
    expect(response.status).toBeLessThan(300);
    expect((await api.store.getTaskInstance(key))?.state).toBe('none');
    expect(await api.store.getTrigger(ti.triggerId as string)).toBeUndefined();
  });
});

describe('a trigger that takes down every triggerer that runs it', () => {
  it('is handed on a few times, then its try fails instead of taking down another triggerer', async () => {
    const first = await registerJob();
    const { key, triggerId } = await deferredAndClaimed(first, 'once');
    for (let round = 1; round <= 4; round += 1) {
      api.clock.advance(api.settings.triggererHeartbeatTimeoutMs + 1);
      const next = await registerJob();
      // Other tests' jobs die too: a limit that takes every trigger they held.
      expect((await load(next, 1_000)).status).toBe(200);
      const trigger = await api.store.getTrigger(triggerId);
      if (round <= 3) expect(trigger).toMatchObject({ jobId: next.jobId, takeovers: round });
      else expect(trigger).toBeUndefined();
    }
    const ti = await api.store.getTaskInstance(key);
    expect(ti?.state).toBe('failed');
    expect(ti?.errorMessage).toContain('taken over 3 times');
  });
});
