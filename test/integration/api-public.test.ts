import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dag } from '#sdk/index.ts';
import {
  API_TOKEN,
  type ApiHarness,
  type DagCollectionBody,
  type DagDetailBody,
  type DagRunBody,
  type DagRunCollectionBody,
  type ErrorBody,
  runPath,
  startApiHarness,
  type TaskInstanceCollectionBody,
  TEST_LIMITS,
} from './api-harness.ts';

const etl = dag({ id: 'etl', params: { region: 'eu-west-1' }, tags: ['team-a'] }, (d) => {
  const extract = d.task('extract', async () => 1);
  const transform = d.task('transform', async () => 2).args(extract);
  d.task('load', async () => 3).after(transform);
});
/** Only the run tests trigger runs of this DAG, so its listing is exactly theirs. */
const reports = dag({ id: 'reports' }, (d) => {
  d.task('render', async () => 1);
});
/** Never gets a run: proves that refused triggers store nothing. */
const untouched = dag({ id: 'untouched' }, (d) => {
  d.task('only', async () => 1);
});

let api: ApiHarness;

beforeAll(async () => {
  api = await startApiHarness();
  await api.registerDags(
    [etl, reports, untouched],
    [{ fileloc: 'dags/broken.ts', message: 'SyntaxError: Unexpected token )' }],
  );
});
afterAll(async () => {
  await api?.close();
});

describe('public API authentication', () => {
  it('refuses a request without a token with 401 and a Bearer challenge', async () => {
    const response = await api.request<ErrorBody>('GET', '/api/v2/dags', undefined, null);
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe('Bearer');
    expect(response.body).toEqual({ detail: 'Missing or invalid bearer token', status: 401 });
  });

  it('refuses a wrong token with 401', async () => {
    const response = await api.request('GET', '/api/v2/dags', undefined, `${API_TOKEN}x`);
    expect(response.status).toBe(401);
  });

  it('accepts the right token', async () => {
    const response = await api.request('GET', '/api/v2/dags', undefined, API_TOKEN);
    expect(response.status).toBe(200);
  });

  it('serves the health check without a token', async () => {
    const response = await api.request('GET', '/api/v2/monitor/health', undefined, null);
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ status: 'healthy', metadatabase: { status: 'healthy' } });
  });
});

describe('public API validation', () => {
  it('refuses an unknown key in a trigger body with 422 naming the key', async () => {
    const response = await api.request<ErrorBody>('POST', '/api/v2/dags/etl/dagRuns', { bogus_key: 1 });
    expect(response.status).toBe(422);
    expect(response.body.detail).toMatch(/^Invalid request: /);
    expect(response.body.detail).toContain('bogus_key');
  });

  it('refuses a conf that is not an object with 422', async () => {
    const response = await api.request<ErrorBody>('POST', '/api/v2/dags/etl/dagRuns', { conf: [1, 2] });
    expect(response.status).toBe(422);
    expect(response.body.detail).toContain('conf');
  });

  it('refuses a logical_date that is not ISO-8601 with 422', async () => {
    const response = await api.request<ErrorBody>('POST', '/api/v2/dags/etl/dagRuns', {
      logical_date: 'yesterday',
    });
    expect(response.status).toBe(422);
    expect(response.body.detail).toContain('logical_date');
  });

  it('refuses a non-boolean is_paused with 422', async () => {
    const response = await api.request<ErrorBody>('PATCH', '/api/v2/dags/etl', { is_paused: 'yes' });
    expect(response.status).toBe(422);
    expect(response.body.detail).toContain('is_paused');
  });

  it('answers 404 naming an unknown DAG', async () => {
    const trigger = await api.request<ErrorBody>('POST', '/api/v2/dags/no_such_dag/dagRuns', {});
    expect(trigger.status).toBe(404);
    expect(trigger.body.detail).toBe('DAG no_such_dag not found');
    const get = await api.request<ErrorBody>('GET', '/api/v2/dags/no_such_dag');
    expect(get.status).toBe(404);
    expect(get.body.detail).toContain('no_such_dag');
  });

  it('refuses a conf over confMaxBytes with 413 and stores no run', async () => {
    const conf = { blob: 'x'.repeat(TEST_LIMITS.confMaxBytes) };
    const response = await api.request<ErrorBody>('POST', '/api/v2/dags/untouched/dagRuns', { conf });
    expect(response.status).toBe(413);
    expect(response.body.detail).toContain('UPDRAFT_CONF_MAX_BYTES');
    expect(response.body.detail).toContain(`${TEST_LIMITS.confMaxBytes} bytes`);
    const runs = await api.request<DagRunCollectionBody>('GET', '/api/v2/dags/untouched/dagRuns');
    expect(runs.body.dag_runs).toEqual([]);
  });

  it('refuses a duplicate dag_run_id with 409 and keeps the first run', async () => {
    const first = await api.request<DagRunBody>('POST', '/api/v2/dags/etl/dagRuns', {
      dag_run_id: 'dup',
      conf: { attempt: 'first' },
    });
    expect(first.status).toBe(201);
    const second = await api.request<ErrorBody>('POST', '/api/v2/dags/etl/dagRuns', {
      dag_run_id: 'dup',
      conf: { attempt: 'second' },
    });
    expect(second.status).toBe(409);
    expect(second.body.detail).toBe('DAG run etl/dup already exists');
    const stored = await api.request<DagRunBody>('GET', runPath('etl', 'dup'));
    expect(stored.body).toEqual(first.body);
  });

  it('refuses a body over requestMaxBytes with 413', async () => {
    const body = JSON.stringify({ conf: { blob: 'x'.repeat(TEST_LIMITS.requestMaxBytes) } });
    const response = await api.request<ErrorBody>('POST', '/api/v2/dags/untouched/dagRuns', body);
    expect(response.status).toBe(413);
    expect(response.body.detail).toBe(
      `Request body is larger than ${TEST_LIMITS.requestMaxBytes} bytes (UPDRAFT_REQUEST_MAX_BYTES)`,
    );
  });
});

describe('public API DAGs', () => {
  it('lists the DAGs and the import errors', async () => {
    const response = await api.request<DagCollectionBody>('GET', '/api/v2/dags');
    expect(response.status).toBe(200);
    expect(response.body.dags.map((d) => d.dag_id).sort()).toEqual(['etl', 'reports', 'untouched']);
    expect(response.body.import_errors).toEqual([
      {
        filename: 'dags/broken.ts',
        stack_trace: 'SyntaxError: Unexpected token )',
        timestamp: api.clock.iso(),
      },
    ]);
  });

  it('gets a DAG with its tasks and their upstream and downstream ids', async () => {
    const response = await api.request<DagDetailBody>('GET', '/api/v2/dags/etl');
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({
      dag_id: 'etl',
      fileloc: 'dags/etl.ts',
      tags: ['team-a'],
      params: { region: 'eu-west-1' },
      is_paused: false,
    });
    const edges = response.body.tasks.map((task) => [
      task.task_id,
      task.upstream_task_ids,
      task.downstream_task_ids,
    ]);
    expect(edges).toEqual([
      ['extract', [], ['transform']],
      ['transform', ['extract'], ['load']],
      ['load', ['transform'], []],
    ]);
  });

  it('pauses and unpauses a DAG', async () => {
    const paused = await api.request<DagDetailBody>('PATCH', '/api/v2/dags/reports', { is_paused: true });
    expect(paused.status).toBe(200);
    expect(paused.body.is_paused).toBe(true);
    expect((await api.request<DagDetailBody>('GET', '/api/v2/dags/reports')).body.is_paused).toBe(true);
    await api.request('PATCH', '/api/v2/dags/reports', { is_paused: false });
    expect((await api.request<DagDetailBody>('GET', '/api/v2/dags/reports')).body.is_paused).toBe(false);
  });
});

describe('public API DAG runs', () => {
  const januaryRun = { dag_run_id: 'january', logical_date: '2026-01-01T00:00:00Z', conf: { size: 3 } };

  it('triggers a manual run in state queued, echoing the conf', async () => {
    const response = await api.request<DagRunBody>('POST', '/api/v2/dags/reports/dagRuns', januaryRun);
    expect(response.status).toBe(201);
    expect(response.body).toMatchObject({
      dag_id: 'reports',
      dag_run_id: 'january',
      run_type: 'manual',
      state: 'queued',
      logical_date: '2026-01-01T00:00:00.000Z',
      conf: { size: 3 },
      queued_at: api.clock.iso(),
      start_date: null,
    });
  });

  it('lists runs newest logical date first', async () => {
    const february = await api.request('POST', '/api/v2/dags/reports/dagRuns', {
      dag_run_id: 'february',
      logical_date: '2026-02-01T00:00:00+00:00',
    });
    expect(february.status).toBe(201);
    const response = await api.request<DagRunCollectionBody>('GET', '/api/v2/dags/reports/dagRuns');
    expect(response.status).toBe(200);
    expect(response.body.dag_runs.map((run) => run.dag_run_id)).toEqual(['february', 'january']);
    expect(response.body.total_entries).toBe(2);
  });

  it('pages runs with next_cursor and counts them all in total_entries', async () => {
    const first = await api.request<DagRunCollectionBody>('GET', '/api/v2/dags/reports/dagRuns?limit=1');
    expect(first.body.dag_runs.map((run) => run.dag_run_id)).toEqual(['february']);
    expect(first.body.total_entries).toBe(2);
    expect(first.body.next_cursor).toEqual(expect.any(String));
    const second = await api.request<DagRunCollectionBody>(
      'GET',
      `/api/v2/dags/reports/dagRuns?limit=1&cursor=${encodeURIComponent(first.body.next_cursor ?? '')}`,
    );
    expect(second.body.dag_runs.map((run) => run.dag_run_id)).toEqual(['january']);
    expect(second.body.total_entries).toBe(2);
  });

  it('gets one run', async () => {
    const response = await api.request<DagRunBody>('GET', runPath('reports', 'january'));
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ dag_run_id: 'january', state: 'queued', conf: { size: 3 } });
  });

  it('answers 404 for an unknown run', async () => {
    const response = await api.request<ErrorBody>('GET', runPath('reports', 'march'));
    expect(response.status).toBe(404);
    expect(response.body.detail).toBe('DAG run reports/march not found');
  });

  it('lists the task instances of a new run with a null state and try 0', async () => {
    await api.request('POST', '/api/v2/dags/etl/dagRuns', { dag_run_id: 'fresh' });
    const response = await api.request<TaskInstanceCollectionBody>(
      'GET',
      `${runPath('etl', 'fresh')}/taskInstances`,
    );
    expect(response.status).toBe(200);
    const summary = response.body.task_instances
      .map((ti) => ({
        task_id: ti.task_id,
        state: ti.state,
        try_number: ti.try_number,
        map_index: ti.map_index,
      }))
      .sort((a, b) => a.task_id.localeCompare(b.task_id));
    expect(summary).toEqual([
      { task_id: 'extract', state: null, try_number: 0, map_index: -1 },
      { task_id: 'load', state: null, try_number: 0, map_index: -1 },
      { task_id: 'transform', state: null, try_number: 0, map_index: -1 },
    ]);
  });
});

describe('OpenAPI document', () => {
  it('is OpenAPI 3.1.0 and covers the public and Execution APIs', async () => {
    const response = await api.request<{ openapi: string; paths: Record<string, unknown> }>(
      'GET',
      '/api/v2/openapi.json',
    );
    expect(response.status).toBe(200);
    expect(response.body.openapi).toBe('3.1.0');
    expect(Object.keys(response.body.paths)).toEqual(
      expect.arrayContaining(['/api/v2/dags/{dag_id}/dagRuns', '/execution/task-instances/{ti_id}/run']),
    );
  });

  it('is served without a token, while the routes it describes still need one', async () => {
    expect((await api.request('GET', '/api/v2/openapi.json', undefined, null)).status).toBe(200);
    expect((await api.request('GET', '/api/v2/dags', undefined, null)).status).toBe(401);
  });
});

describe('metrics endpoint', () => {
  it('serves the registry snapshot as gauges and counters', async () => {
    api.metrics.gauge('executor.open_slots', 3);
    api.metrics.increment('ti_successes', 2);
    const response = await api.request('GET', '/api/v2/metrics');
    expect(response.status).toBe(200);
    expect(response.body).toEqual({
      gauges: { 'executor.open_slots': 3 },
      counters: { ti_successes: 2 },
    });
  });
});
