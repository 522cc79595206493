import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TaskInstanceKey } from '#core/models.ts';
import { dag } from '#sdk/index.ts';
import {
  type ApiHarness,
  type ErrorBody,
  type StartedTaskBody,
  startApiHarness,
  TEST_LIMITS,
  tiKey,
  tiPath,
  WORKER,
} from './api-harness.ts';

const etl = dag({ id: 'etl', params: { region: 'eu-west-1', limit: 10 } }, (d) => {
  const extract = d.task({ id: 'extract', retries: 1, retryDelay: '30s' }, async () => 1);
  const transform = d.task('transform', async () => 2).args(extract);
  d.task('load', async () => 3).after(transform);
});

let api: ApiHarness;
let runs = 0;

beforeAll(async () => {
  api = await startApiHarness();
  await api.registerDags([etl]);
});
afterAll(async () => {
  await api?.close();
});

/** A new run of `etl` (conf overrides one param); returns its id. */
async function newRun(): Promise<string> {
  const runId = `run_${++runs}`;
  const response = await api.request('POST', '/api/v2/dags/etl/dagRuns', {
    dag_run_id: runId,
    conf: { limit: 99, extra: true },
  });
  expect(response.status).toBe(201);
  return runId;
}

/** Queues and starts a TI as a worker would; returns the token of the running try. */
async function startTask(key: TaskInstanceKey): Promise<string> {
  const token = await api.queueTaskInstance(key);
  const response = await api.request('PATCH', tiPath(key, 'run'), WORKER, token);
  expect(response.status).toBe(200);
  return token;
}

/** A report; each call is a new report (its own `report_id`) unless the body names one. */
const finish = (key: TaskInstanceKey, token: string, body: Record<string, unknown>) =>
  api.request<ErrorBody>('PATCH', tiPath(key, 'state'), { report_id: randomUUID(), ...body }, token);

describe('Execution API start', () => {
  it('starts a queued TI and returns what the worker needs', async () => {
    const key = tiKey('etl', await newRun(), 'transform');
    const token = await api.queueTaskInstance(key);
    const response = await api.request<StartedTaskBody>('PATCH', tiPath(key, 'run'), WORKER, token);
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({
      dag_id: 'etl',
      task_id: 'transform',
      map_index: -1,
      try_number: 1,
      max_tries: 1,
      conf: { limit: 99, extra: true },
      params: { region: 'eu-west-1', limit: 99, extra: true },
      args: [{ task_id: 'extract', key: 'return_value' }],
      fileloc: 'dags/etl.ts',
      execution_timeout_ms: null,
    });
    const stored = await api.store.getTaskInstance(key);
    expect(stored).toMatchObject({ state: 'running', hostname: 'test-host', workerId: 'worker-1' });
  });

  it('refuses a duplicate start of the same try with 409', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    const token = await startTask(key);
    const again = await api.request<ErrorBody>('PATCH', tiPath(key, 'run'), WORKER, token);
    expect(again.status).toBe(409);
    expect(again.body.detail).toContain('is running at try 1, expected queued at try 1');
  });

  it('refuses a token of another TI with 403 naming both', async () => {
    const runId = await newRun();
    const tokenOfExtract = await api.queueTaskInstance(tiKey('etl', runId, 'extract'));
    const response = await api.request<ErrorBody>(
      'PATCH',
      tiPath(tiKey('etl', runId, 'load'), 'run'),
      WORKER,
      tokenOfExtract,
    );
    expect(response.status).toBe(403);
    expect(response.body.detail).toBe(`This token grants etl/${runId}/extract, not etl/${runId}/load`);
  });

  it('refuses the token of try 1 once the TI was queued again as try 2, with 409', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    const firstToken = await startTask(key);
    expect(
      (await finish(key, firstToken, { state: 'failed', error_message: 'boom', retryable: true })).status,
    ).toBe(200);
    await api.queueTaskInstance(key);
    const response = await api.request<ErrorBody>('PATCH', tiPath(key, 'run'), WORKER, firstToken);
    expect(response.status).toBe(409);
    expect(response.body.detail).toContain('is queued at try 2, expected queued at try 1');
    expect(await api.store.getTaskInstance(key)).toMatchObject({ state: 'queued', tryNumber: 2 });
  });

  it('refuses a garbage token with 401', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    await api.queueTaskInstance(key);
    const response = await api.request<ErrorBody>('PATCH', tiPath(key, 'run'), WORKER, 'not.a.jwt');
    expect(response.status).toBe(401);
    expect(response.body.detail).toMatch(/^Invalid or expired task token/);
  });

  it('refuses an expired token with 401', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    await api.queueTaskInstance(key);
    const ttlMs = TEST_LIMITS.executionTokenTtlSeconds * 1000;
    const expired = await api.tokens.issue({ ...key, tryNumber: 1 }, api.clock.nowMs - 2 * ttlMs);
    const response = await api.request<ErrorBody>('PATCH', tiPath(key, 'run'), WORKER, expired);
    expect(response.status).toBe(401);
    expect(response.body.detail).toMatch(/^Invalid or expired task token/);
    expect(await api.store.getTaskInstance(key)).toMatchObject({ state: 'queued' });
  });
});

describe('Execution API heartbeat and logs', () => {
  it('records the heartbeat time on the TI', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    const token = await startTask(key);
    api.clock.advance(5_000);
    const response = await api.request('PUT', tiPath(key, 'heartbeat'), {}, token);
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ ok: true });
    expect((await api.store.getTaskInstance(key))?.heartbeatAt).toBe(api.clock.iso());
  });

  it('keeps logs sent with heartbeats and the finish readable for that try', async () => {
    const runId = await newRun();
    const key = tiKey('etl', runId, 'extract');
    const token = await startTask(key);
    await api.request('PUT', tiPath(key, 'heartbeat'), { log: { seq: 1, text: 'line one\n' } }, token);
    await finish(key, token, { state: 'success', log: { seq: 2, text: 'line two\n' } });
    const response = await api.request(
      'GET',
      `/api/v2/dags/etl/dagRuns/${runId}/taskInstances/extract/logs/1`,
    );
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ content: 'line one\nline two\n' });
  });

  it('refuses a heartbeat once the TI left running with 409', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    const token = await startTask(key);
    await finish(key, token, { state: 'success' });
    const response = await api.request<ErrorBody>('PUT', tiPath(key, 'heartbeat'), {}, token);
    expect(response.status).toBe(409);
    expect(response.body.detail).toContain('is success at try 1, expected running at try 1');
  });

  it('answers 404 for the log of a try that does not exist', async () => {
    const runId = await newRun();
    await startTask(tiKey('etl', runId, 'extract'));
    const response = await api.request<ErrorBody>(
      'GET',
      `/api/v2/dags/etl/dagRuns/${runId}/taskInstances/extract/logs/3`,
    );
    expect(response.status).toBe(404);
    expect(response.body.detail).toBe('Task instance extract has no try 3 (its latest try is 1)');
  });
});

describe('Execution API finish', () => {
  it('records a success with its duration', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    const token = await startTask(key);
    api.clock.advance(1_500);
    expect((await finish(key, token, { state: 'success' })).status).toBe(200);
    const response = await api.request('GET', `/api/v2/dags/etl/dagRuns/${key.runId}/taskInstances/extract`);
    expect(response.body).toMatchObject({ state: 'success', duration: 1.5, end_date: api.clock.iso() });
  });

  it('stores the XCom text as sent and serves it to a TI of the same run only', async () => {
    const runId = await newRun();
    const key = tiKey('etl', runId, 'extract');
    const token = await startTask(key);
    const xcom = '{"b":2,  "a":1}';
    expect((await finish(key, token, { state: 'success', xcom })).status).toBe(200);

    const sameRunToken = await api.tokens.issue(
      { ...tiKey('etl', runId, 'transform'), tryNumber: 1 },
      api.clock.nowMs,
    );
    const path = `/execution/xcoms/etl/${runId}/extract/return_value`;
    const read = await api.request('GET', path, undefined, sameRunToken);
    expect(read.status).toBe(200);
    expect(read.body).toEqual({ key: 'return_value', value: xcom });

    const otherRunId = await newRun();
    const otherRunToken = await api.tokens.issue(
      { ...tiKey('etl', otherRunId, 'transform'), tryNumber: 1 },
      api.clock.nowMs,
    );
    const refused = await api.request<ErrorBody>('GET', path, undefined, otherRunToken);
    expect(refused.status).toBe(403);
    expect(refused.body.detail).toBe(`This token grants access to run etl/${otherRunId} only`);
  });

  it('answers 404 for an XCom that was never written', async () => {
    const runId = await newRun();
    const token = await api.tokens.issue(
      { ...tiKey('etl', runId, 'transform'), tryNumber: 1 },
      api.clock.nowMs,
    );
    const path = `/execution/xcoms/etl/${runId}/extract/return_value`;
    const response = await api.request<ErrorBody>('GET', path, undefined, token);
    expect(response.status).toBe(404);
    expect(response.body.detail).toBe(`XCom return_value of etl/${runId}/extract not found`);
  });

  it('refuses an XCom over xcomMaxBytes with 413 and leaves the TI running', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    const token = await startTask(key);
    const xcom = JSON.stringify('x'.repeat(TEST_LIMITS.xcomMaxBytes));
    const response = await finish(key, token, { state: 'success', xcom });
    expect(response.status).toBe(413);
    expect(response.body.detail).toContain('UPDRAFT_XCOM_MAX_BYTES');
    expect(response.body.detail).toContain(`${TEST_LIMITS.xcomMaxBytes} bytes`);
    expect(await api.store.getTaskInstance(key)).toMatchObject({ state: 'running', tryNumber: 1 });
    expect(await api.store.getXCom({ ...key, key: 'return_value' })).toBeUndefined();
  });

  it('puts a retryable failure with tries left up for retry', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    const token = await startTask(key);
    const response = await finish(key, token, { state: 'failed', error_message: 'timeout', retryable: true });
    expect(response.status).toBe(200);
    const ti = await api.request('GET', `/api/v2/dags/etl/dagRuns/${key.runId}/taskInstances/extract`);
    expect(ti.body).toMatchObject({
      state: 'up_for_retry',
      error_message: 'timeout',
      next_retry_at: new Date(api.clock.nowMs + 30_000).toISOString(),
    });
  });

  it('fails a non-retryable failure at once even with tries left', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    const token = await startTask(key);
    await finish(key, token, { state: 'failed', error_message: 'bad input', retryable: false });
    expect(await api.store.getTaskInstance(key)).toMatchObject({
      state: 'failed',
      errorMessage: 'bad input',
      nextRetryAt: null,
    });
  });

  it('records a skip', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    const token = await startTask(key);
    expect((await finish(key, token, { state: 'skipped', reason: 'nothing to do' })).status).toBe(200);
    expect(await api.store.getTaskInstance(key)).toMatchObject({ state: 'skipped' });
  });

  it('refuses to finish a TI that is not running with 409', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    const token = await api.queueTaskInstance(key);
    const response = await finish(key, token, { state: 'success' });
    expect(response.status).toBe(409);
    expect(response.body.detail).toBe(
      `Task instance etl/${key.runId}/extract is queued at try 1, expected running at try 1`,
    );
    expect(await api.store.getTaskInstance(key)).toMatchObject({ state: 'queued' });
  });
});

describe('Execution API version header', () => {
  it('refuses an unsupported version with 400 naming the supported ones', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    const token = await api.queueTaskInstance(key);
    const response = await api.request<ErrorBody>('PATCH', tiPath(key, 'run'), WORKER, token, {
      'Updraft-API-Version': '1999-01-01',
    });
    expect(response.status).toBe(400);
    expect(response.body.detail).toBe(
      'Unsupported Updraft-API-Version "1999-01-01"; this server supports 2026-11-01',
    );
    expect(await api.store.getTaskInstance(key)).toMatchObject({ state: 'queued' });
  });

  it('names the version it speaks on every response', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    const token = await api.queueTaskInstance(key);
    const started = await api.request('PATCH', tiPath(key, 'run'), WORKER, token);
    expect(started.headers.get('Updraft-API-Version')).toBe('2026-11-01');
    const refused = await api.request('PATCH', tiPath(key, 'run'), WORKER, 'garbage');
    expect(refused.status).toBe(401);
    expect(refused.headers.get('Updraft-API-Version')).toBe('2026-11-01');
  });
});
