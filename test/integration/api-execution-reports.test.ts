import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TaskInstanceKey } from '#core/models.ts';
import { FileLogStore } from '#logs/file-store.ts';
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

const etl = dag({ id: 'etl' }, (d) => {
  const extract = d.task({ id: 'extract', retries: 2, retryDelay: '30s' }, async () => 1);
  const transform = d.task('transform', async () => 2).args(extract);
  d.task('load', async () => 3).after(transform);
  d.task('side', async () => 4);
});

let api: ApiHarness;
let logs: FileLogStore;
let runs = 0;

beforeAll(async () => {
  api = await startApiHarness();
  logs = new FileLogStore(`${api.settings.home}/logs`);
  await api.registerDags([etl]);
});
afterAll(async () => {
  await api?.close();
});

async function newRun(): Promise<string> {
  const runId = `run_${++runs}`;
  expect((await api.request('POST', '/api/v2/dags/etl/dagRuns', { dag_run_id: runId })).status).toBe(201);
  return runId;
}

async function startTask(key: TaskInstanceKey): Promise<string> {
  const token = await api.queueTaskInstance(key);
  expect((await api.request('PATCH', tiPath(key, 'run'), WORKER, token)).status).toBe(200);
  return token;
}

const heartbeat = (key: TaskInstanceKey, token: string, body: Record<string, unknown> = {}) =>
  api.request<ErrorBody>('PUT', tiPath(key, 'heartbeat'), body, token);
const finish = (key: TaskInstanceKey, token: string, body: Record<string, unknown>) =>
  api.request<ErrorBody & { ok?: boolean; duplicate?: boolean }>('PATCH', tiPath(key, 'state'), body, token);

/** What the scheduler does to a zombie try 1 with retries left, then queues and starts try 2. */
async function moveOnToTry2(key: TaskInstanceKey): Promise<string> {
  await api.store.transitionTaskInstance(
    key,
    { state: 'running', tryNumber: 1 },
    { state: 'up_for_retry' },
    { owed: [] },
  );
  return startTask(key);
}

describe('Execution API start limits', () => {
  it('tells the worker its XCom and log limits', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    const token = await api.queueTaskInstance(key);
    const response = await api.request<StartedTaskBody>('PATCH', tiPath(key, 'run'), WORKER, token);
    expect(response.body).toMatchObject({
      xcom_max_bytes: TEST_LIMITS.xcomMaxBytes,
      log_chunk_max_bytes: TEST_LIMITS.logChunkMaxBytes,
      log_max_chunks: 4,
    });
  });
});

describe('Execution API heartbeat from a stale try', () => {
  it('is refused with 409 and writes nothing, its log chunk included', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    const firstToken = await startTask(key);
    await heartbeat(key, firstToken, { log: { seq: 1, text: 'first\n' } });
    await moveOnToTry2(key);
    const before = await api.store.getTaskInstance(key);
    api.clock.advance(1_000);
    const response = await heartbeat(key, firstToken, { log: { seq: 2, text: 'stale\n' } });
    expect(response.status).toBe(409);
    expect(await api.store.getTaskInstance(key)).toEqual(before);
    expect(await logs.read(key, 1)).toBe('first\n');
    expect(await logs.read(key, 2)).toBeUndefined();
  });
});

describe('Execution API log chunks', () => {
  it('refuses a chunk over logChunkMaxBytes with 413 naming the limit, and records no heartbeat', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    const token = await startTask(key);
    const before = await api.store.getTaskInstance(key);
    api.clock.advance(1_000);
    const text = 'x'.repeat(TEST_LIMITS.logChunkMaxBytes + 1);
    const response = await heartbeat(key, token, { log: { seq: 1, text } });
    expect(response.status).toBe(413);
    expect(response.body.detail).toContain(`over the limit of ${TEST_LIMITS.logChunkMaxBytes} bytes`);
    expect(response.body.detail).toContain('UPDRAFT_LOG_CHUNK_MAX_BYTES');
    expect((await api.store.getTaskInstance(key))?.heartbeatAt).toBe(before?.heartbeatAt);
    expect(await logs.read(key, 1)).toBeUndefined();
  });

  it('refuses a seq past the last chunk of a try with 413 naming UPDRAFT_LOG_MAX_BYTES', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    const token = await startTask(key);
    const response = await heartbeat(key, token, { log: { seq: 5, text: 'too much\n' } });
    expect(response.status).toBe(413);
    expect(response.body.detail).toContain('past the last chunk a try may have, 4');
    expect(response.body.detail).toContain(`${TEST_LIMITS.logMaxBytes} bytes (UPDRAFT_LOG_MAX_BYTES)`);
  });

  it('keeps one copy of a chunk sent twice', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    const token = await startTask(key);
    await heartbeat(key, token, { log: { seq: 1, text: 'once\n' } });
    await heartbeat(key, token, { log: { seq: 1, text: 'once\n' } });
    await heartbeat(key, token, { log: { seq: 2, text: 'twice\n' } });
    expect(await logs.read(key, 1)).toBe('once\ntwice\n');
  });
});

describe('Execution API finish reports', () => {
  it('answers a repeat of a recorded report with 200 duplicate and changes nothing', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    const token = await startTask(key);
    const body = { state: 'failed', error_message: 'boom', retryable: true, report_id: randomUUID() };
    const first = await finish(key, token, { ...body, log: { seq: 1, text: 'bye\n' } });
    expect(first.body).toEqual({ ok: true });
    const recorded = await api.store.getTaskInstance(key);
    api.clock.advance(5_000);
    const again = await finish(key, token, { ...body, log: { seq: 1, text: 'bye\n' } });
    expect(again.status).toBe(200);
    expect(again.body).toEqual({ ok: true, duplicate: true });
    expect(await api.store.getTaskInstance(key)).toEqual(recorded);
    expect(await logs.read(key, 1)).toBe('bye\n');
  });

  it('stores the report id with the outcome', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    const reportId = randomUUID();
    await finish(key, await startTask(key), { state: 'success', report_id: reportId });
    expect(await api.store.getTaskInstance(key)).toMatchObject({ state: 'success', reportId });
  });

  it('refuses another report of a finished try with 409', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    const token = await startTask(key);
    await finish(key, token, { state: 'success', report_id: 'first' });
    const response = await finish(key, token, { state: 'skipped', report_id: 'second' });
    expect(response.status).toBe(409);
    expect(await api.store.getTaskInstance(key)).toMatchObject({ state: 'success', reportId: 'first' });
  });

  it('refuses a late report with 409, writes no XCom and says so in the log of its try', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    const firstToken = await startTask(key);
    await moveOnToTry2(key);
    const response = await finish(key, firstToken, {
      state: 'success',
      report_id: randomUUID(),
      xcom: '42',
      log: { seq: 1, text: 'late output\n' },
    });
    expect(response.status).toBe(409);
    expect(response.body.detail).toBe(
      `Task instance etl/${key.runId}/extract is running at try 2, expected running at try 1`,
    );
    expect(await api.store.getXCom({ ...key, key: 'return_value' })).toBeUndefined();
    const log = await logs.read(key, 1);
    expect(log).toContain(
      'Report of try 1 (success) arrived after the task instance moved on: it is now running at try 2; the report was refused',
    );
    expect(log).not.toContain('late output');
  });

  it('names the XCom, its size and the setting when it is too large', async () => {
    const key = tiKey('etl', await newRun(), 'extract');
    const xcom = JSON.stringify('x'.repeat(TEST_LIMITS.xcomMaxBytes));
    const response = await finish(key, await startTask(key), { state: 'success', report_id: 'r', xcom });
    expect(response.status).toBe(413);
    expect(response.body.detail).toBe(
      `XCom return_value of etl/${key.runId}/extract is ${xcom.length} bytes, over the limit of ${TEST_LIMITS.xcomMaxBytes} bytes (UPDRAFT_XCOM_MAX_BYTES)`,
    );
  });
});

describe('Execution API XCom reads', () => {
  it('serves the XCom of a transitive upstream task', async () => {
    const runId = await newRun();
    const extract = tiKey('etl', runId, 'extract');
    await finish(extract, await startTask(extract), { state: 'success', report_id: 'r', xcom: '1' });
    const loadToken = await api.tokens.issue(
      { ...tiKey('etl', runId, 'load'), tryNumber: 1 },
      api.clock.nowMs,
    );
    const response = await api.request(
      'GET',
      `/execution/xcoms/etl/${runId}/extract/return_value`,
      undefined,
      loadToken,
    );
    expect(response.body).toEqual({ key: 'return_value', value: '1' });
  });

  it('refuses the XCom of a task that is not upstream with 403', async () => {
    const runId = await newRun();
    const token = await api.tokens.issue({ ...tiKey('etl', runId, 'side'), tryNumber: 1 }, api.clock.nowMs);
    const response = await api.request<ErrorBody>(
      'GET',
      `/execution/xcoms/etl/${runId}/extract/return_value`,
      undefined,
      token,
    );
    expect(response.status).toBe(403);
    expect(response.body.detail).toBe(
      'Task side may read the XComs of its upstream tasks only, and extract is not upstream of it',
    );
  });
});
