import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TaskInstanceKey } from '#core/models.ts';
import { dag } from '#sdk/index.ts';
import {
  type ApiHarness,
  type DagRunBody,
  type ErrorBody,
  runPath,
  startApiHarness,
  type TaskInstanceCollectionBody,
  tiKey,
  tiPath,
  WORKER,
} from './api-harness.ts';

const etl = dag({ id: 'etl' }, (d) => {
  const extract = d.task({ id: 'extract', retries: 1 }, async () => 1);
  const transform = d.task({ id: 'transform', retries: 2 }, async () => 2).args(extract);
  d.task('load', async () => 3).after(transform);
  d.task('audit', async () => 4);
});
const choose = dag({ id: 'choose' }, (d) => {
  const pick = d.branch('pick', async () => 'left');
  const left = d.task('left', async () => 1).after(pick);
  d.task('right', async () => 2).after(pick);
  d.task('join', async () => 3).after(left);
});

let api: ApiHarness;
let runs = 0;

beforeAll(async () => {
  api = await startApiHarness();
  await api.registerDags([etl, choose]);
});
afterAll(async () => {
  await api?.close();
});

async function newRun(dagId: string): Promise<string> {
  const runId = `run_${++runs}`;
  expect((await api.request('POST', `/api/v2/dags/${dagId}/dagRuns`, { dag_run_id: runId })).status).toBe(
    201,
  );
  return runId;
}

async function startTask(key: TaskInstanceKey): Promise<string> {
  const token = await api.queueTaskInstance(key);
  expect((await api.request('PATCH', tiPath(key, 'run'), WORKER, token)).status).toBe(200);
  return token;
}

const finish = (key: TaskInstanceKey, token: string, body: Record<string, unknown>) =>
  api.request<ErrorBody>('PATCH', tiPath(key, 'state'), { report_id: randomUUID(), ...body }, token);

/**
 * A failed run as the scheduler leaves it: extract failed (try 1), its downstream
 * upstream_failed, audit succeeded, the run failed.
 */
async function failedRun(): Promise<string> {
  const runId = await newRun('etl');
  const extract = tiKey('etl', runId, 'extract');
  const token = await startTask(extract);
  await finish(extract, token, { state: 'failed', error_message: 'boom', retryable: false });
  for (const taskId of ['transform', 'load']) {
    await api.store.transitionTaskInstance(
      tiKey('etl', runId, taskId),
      { state: 'none', tryNumber: 0 },
      { state: 'upstream_failed' },
    );
  }
  const audit = tiKey('etl', runId, 'audit');
  await finish(audit, await startTask(audit), { state: 'success' });
  await api.store.transitionDagRun(
    { dagId: 'etl', runId },
    'queued',
    { state: 'failed', endDate: api.clock.iso() },
    { owed: [] },
  );
  return runId;
}

async function states(runId: string): Promise<Record<string, [string | null, number, number]>> {
  const response = await api.request<TaskInstanceCollectionBody>(
    'GET',
    `${runPath('etl', runId)}/taskInstances`,
  );
  return Object.fromEntries(
    response.body.task_instances.map((ti) => [ti.task_id, [ti.state, ti.try_number, ti.max_tries]]),
  );
}

describe('branch report', () => {
  it('refuses a followed task that is not directly downstream with 400 and keeps the TI running', async () => {
    const key = tiKey('choose', await newRun('choose'), 'pick');
    const token = await startTask(key);
    const response = await finish(key, token, {
      state: 'success',
      xcom: '"join"',
      follow_task_ids: ['left', 'join'],
    });
    expect(response.status).toBe(400);
    expect(response.body.detail).toBe('Branch pick chose join, which is not directly downstream of it');
    expect(await api.store.getTaskInstance(key)).toMatchObject({ state: 'running', followTaskIds: null });
    expect(await api.store.getXCom({ ...key, key: 'return_value' })).toBeUndefined();
  });

  it('records the followed tasks of a valid choice', async () => {
    const key = tiKey('choose', await newRun('choose'), 'pick');
    const token = await startTask(key);
    expect((await finish(key, token, { state: 'success', follow_task_ids: ['left'] })).status).toBe(200);
    expect(await api.store.getTaskInstance(key)).toMatchObject({ state: 'success', followTaskIds: ['left'] });
  });
});

describe('clearing task instances', () => {
  it('clears a failed TI and its downstream, raises max tries and queues the run again', async () => {
    const runId = await failedRun();
    const response = await api.request<TaskInstanceCollectionBody>(
      'POST',
      '/api/v2/dags/etl/clearTaskInstances',
      { dag_run_id: runId, task_ids: ['extract'], include_downstream: true },
    );
    expect(response.status).toBe(200);
    expect(response.body.task_instances.map((ti) => ti.task_id).sort()).toEqual([
      'extract',
      'load',
      'transform',
    ]);
    expect(await states(runId)).toEqual({
      extract: [null, 1, 3],
      transform: [null, 0, 3],
      load: [null, 0, 1],
      audit: ['success', 1, 1],
    });
    const extract = await api.store.getTaskInstance(tiKey('etl', runId, 'extract'));
    expect(extract).toMatchObject({ errorMessage: null, endDate: null, startDate: null });
    const run = await api.request<DagRunBody>('GET', runPath('etl', runId));
    expect(run.body).toMatchObject({ state: 'queued', end_date: null });
  });

  it('refuses to clear a running TI with 409 and clears nothing', async () => {
    const runId = await failedRun();
    const load = tiKey('etl', runId, 'load');
    await api.store.transitionTaskInstance(
      load,
      { state: 'upstream_failed' },
      { state: 'none' },
      { reset: true },
    );
    await startTask(load);
    const response = await api.request<ErrorBody>('POST', '/api/v2/dags/etl/clearTaskInstances', {
      dag_run_id: runId,
      task_ids: ['extract'],
      include_downstream: true,
    });
    expect(response.status).toBe(409);
    expect(response.body.detail).toBe(
      `Cannot clear task instances that are queued or running: etl/${runId}/load (running)`,
    );
    expect((await states(runId)).extract).toEqual(['failed', 1, 2]);
    expect((await api.request<DagRunBody>('GET', runPath('etl', runId))).body.state).toBe('failed');
  });

  it('changes nothing on a dry run but lists what it would clear', async () => {
    const runId = await failedRun();
    const before = await states(runId);
    const response = await api.request<TaskInstanceCollectionBody>(
      'POST',
      '/api/v2/dags/etl/clearTaskInstances',
      { dag_run_id: runId, only_failed: true, dry_run: true },
    );
    expect(response.status).toBe(200);
    expect(response.body.task_instances.map((ti) => [ti.task_id, ti.state]).sort()).toEqual([
      ['extract', 'failed'],
      ['load', 'upstream_failed'],
      ['transform', 'upstream_failed'],
    ]);
    expect(await states(runId)).toEqual(before);
    expect((await api.request<DagRunBody>('GET', runPath('etl', runId))).body.state).toBe('failed');
  });
});
