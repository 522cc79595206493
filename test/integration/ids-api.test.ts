import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ID_MAX_LENGTH } from '#core/ids.ts';
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

/** Ids at the limits through the API, the store and the log files, as a worker drives a try. */

const DAG_ID = 'd'.repeat(ID_MAX_LENGTH);
const TASK_ID = 't'.repeat(ID_MAX_LENGTH);
const RUN_ID = `run:${'r'.repeat(ID_MAX_LENGTH - 4)}`;

const longIds = dag({ id: DAG_ID }, (d) => {
  d.task(TASK_ID, async () => 1);
});
const etl = dag({ id: 'etl' }, (d) => {
  d.task('extract', async () => 1);
});

let api: ApiHarness;

beforeAll(async () => {
  api = await startApiHarness();
  await api.registerDags([longIds, etl]);
});
afterAll(async () => {
  await api?.close();
});

describe('ids of 250 characters', () => {
  it('run a task end to end: trigger, start, log, report, read back', async () => {
    const triggered = await api.request('POST', `/api/v2/dags/${DAG_ID}/dagRuns`, { dag_run_id: RUN_ID });
    expect(triggered.status).toBe(201);
    const key = tiKey(DAG_ID, RUN_ID, TASK_ID);
    const token = await api.queueTaskInstance(key);
    const started = await api.request<StartedTaskBody>('PATCH', tiPath(key, 'run'), WORKER, token);
    expect(started.status).toBe(200);
    const beat = await api.request(
      'PUT',
      tiPath(key, 'heartbeat'),
      { log: { seq: 1, text: 'working\n' } },
      token,
    );
    expect(beat.status).toBe(200);
    const finished = await api.request(
      'PATCH',
      tiPath(key, 'state'),
      { report_id: randomUUID(), state: 'success', xcom: '1', log: { seq: 2, text: 'done\n' } },
      token,
    );
    expect(finished.status).toBe(200);

    const base = `/api/v2/dags/${DAG_ID}/dagRuns/${RUN_ID}/taskInstances/${TASK_ID}`;
    expect((await api.request<{ state: string }>('GET', base)).body.state).toBe('success');
    expect((await api.request<{ content: string }>('GET', `${base}/logs/1`)).body.content).toBe(
      'working\ndone\n',
    );
    expect(
      (await api.request<{ value: unknown }>('GET', `${base}/xcomEntries/return_value`)).body.value,
    ).toBe(1);
  });
});

describe('ids over the limit or of dots', () => {
  it('refuses a 251-character run id, naming the id and the limit', async () => {
    const runId = 'r'.repeat(ID_MAX_LENGTH + 1);
    const response = await api.request<ErrorBody>('POST', '/api/v2/dags/etl/dagRuns', { dag_run_id: runId });
    expect(response.status).toBe(400);
    expect(response.body.detail).toBe(
      `Invalid dag_run_id: run id "${runId}" is invalid (251 characters, over the limit of 250)`,
    );
  });

  it.each(['..', '.', '...'])('refuses the run id %s', async (runId) => {
    const response = await api.request<ErrorBody>('POST', '/api/v2/dags/etl/dagRuns', { dag_run_id: runId });
    expect(response.status).toBe(400);
    expect(response.body.detail).toBe(
      `Invalid dag_run_id: run id "${runId}" is invalid (an id must not consist of dots only)`,
    );
    expect(await api.store.getDagRun({ dagId: 'etl', runId })).toBeUndefined();
  });

  it('refuses a 251-character DAG id in a path, naming it', async () => {
    const dagId = 'd'.repeat(ID_MAX_LENGTH + 1);
    const response = await api.request<ErrorBody>('GET', `/api/v2/dags/${dagId}`);
    expect(response.status).toBe(422);
    expect(response.body.detail).toContain('over the limit of 250');
  });

  it('finds no run of dots to clear', async () => {
    const response = await api.request<ErrorBody>('POST', '/api/v2/dags/etl/clearTaskInstances', {
      dag_run_id: '..',
    });
    expect(response.status).toBe(404);
  });
});
