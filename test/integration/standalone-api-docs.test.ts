import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dag } from '#sdk/index.ts';
import {
  type ApiHarness,
  type ErrorBody,
  startApiHarness,
  type TaskInstanceCollectionBody,
  tiKey,
  tiPath,
  WORKER,
} from './api-harness.ts';

/** What the docs say about the API, checked against the API itself. */

const pair = dag({ id: 'pair' }, (d) => {
  const first = d.task('first', async () => 1);
  d.task('second', async () => 2).after(first);
});

let api: ApiHarness;

beforeAll(async () => {
  api = await startApiHarness();
  await api.registerDags([pair]);
});
afterAll(async () => {
  await api?.close();
});

interface OpenApiDocument {
  paths: Record<string, Record<string, { security?: Record<string, string[]>[] }>>;
  components: { securitySchemes: Record<string, { type: string; scheme: string }> };
}

describe('the OpenAPI document', () => {
  it('is served without a token', async () => {
    const response = await api.request('GET', '/api/v2/openapi.json', undefined, null);
    expect(response.status).toBe(200);
  });

  it('documents health, metrics and itself', async () => {
    const { body } = await api.request<OpenApiDocument>('GET', '/api/v2/openapi.json', undefined, null);
    expect(Object.keys(body.paths)).toEqual(
      expect.arrayContaining(['/api/v2/monitor/health', '/api/v2/metrics', '/api/v2/openapi.json']),
    );
  });

  it('declares the API token on every /api/v2 route but health and itself, and on /execution the token of its caller (none on a batch)', async () => {
    const { body } = await api.request<OpenApiDocument>('GET', '/api/v2/openapi.json', undefined, null);
    expect(body.components.securitySchemes.apiToken).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(body.components.securitySchemes.taskToken).toMatchObject({ type: 'http', scheme: 'bearer' });
    const securityOf = Object.entries(body.paths).flatMap(([path, item]) =>
      Object.entries(item).map(([method, operation]) => [`${method} ${path}`, operation.security]),
    );
    for (const [operation, security] of securityOf) {
      const name = String(operation);
      if (name.endsWith('/monitor/health') || name.endsWith('/openapi.json')) expect(security).toEqual([]);
      // A batch carries no token of its own: each of its calls carries its own.
      else if (name === 'post /execution/batch') expect(security).toEqual([]);
      // A triggerer registers with its credential, then calls the job and trigger routes with its job token.
      else if (name === 'post /execution/jobs') expect(security).toEqual([{ triggererToken: [] }]);
      else if (
        name.includes(' /execution/jobs/') ||
        name.includes(' /execution/triggers/') ||
        name.endsWith(' /execution/callbacks/claim')
      )
        expect(security, name).toEqual([{ jobToken: [] }]);
      else if (name.includes(' /execution/')) expect(security, name).toEqual([{ taskToken: [] }]);
      else expect(security, name).toEqual([{ apiToken: [] }]);
    }
  });
});

describe('the health route', () => {
  it('answers without a token, naming the store healthy', async () => {
    const response = await api.request('GET', '/api/v2/monitor/health', undefined, null);
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ status: 'healthy', metadatabase: { status: 'healthy' } });
  });
});

describe('query parameters', () => {
  it('refuses ?offset= on a log, naming it and what the route takes', async () => {
    const response = await api.request<ErrorBody>(
      'GET',
      '/api/v2/dags/pair/dagRuns/r/taskInstances/first/logs/1?offset=100',
    );
    expect(response.status).toBe(400);
    expect(response.body.detail).toBe(
      'Unknown query parameter `offset` for GET /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}: it takes `map_index`, `token`',
    );
  });

  it('refuses ?offset= on a list (pagination uses cursor)', async () => {
    const response = await api.request<ErrorBody>('GET', '/api/v2/dags?offset=10');
    expect(response.status).toBe(400);
    expect(response.body.detail).toContain('it takes `limit`, `cursor`');
  });

  it('accepts the parameters a route declares', async () => {
    expect((await api.request('GET', '/api/v2/dags?limit=5')).status).toBe(200);
  });
});

describe('clear with dry_run while a task runs', () => {
  it('answers a preview listing the running task instance, and changes nothing', async () => {
    expect((await api.request('POST', '/api/v2/dags/pair/dagRuns', { dag_run_id: 'busy' })).status).toBe(201);
    const first = tiKey('pair', 'busy', 'first');
    const token = await api.queueTaskInstance(first);
    expect((await api.request('PATCH', tiPath(first, 'run'), WORKER, token)).status).toBe(200);

    const preview = await api.request<TaskInstanceCollectionBody>(
      'POST',
      '/api/v2/dags/pair/clearTaskInstances',
      { dag_run_id: 'busy', dry_run: true },
    );
    expect(preview.status).toBe(200);
    expect(preview.body.task_instances.map((ti) => [ti.task_id, ti.state]).sort()).toEqual([
      ['first', 'running'],
      ['second', null],
    ]);
    expect((await api.store.getTaskInstance(first))?.state).toBe('running');

    const clear = await api.request('POST', '/api/v2/dags/pair/clearTaskInstances', { dag_run_id: 'busy' });
    expect(clear.status).toBe(409);
  });
});

describe('the README', () => {
  it('quotes dags/example_branching.ts as it is', async () => {
    const readme = await readFile('README.md', 'utf8');
    const file = await readFile('dags/example_branching.ts', 'utf8');
    const block = /from `dags\/example_branching\.ts`\):\n\n```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBeDefined();
    // The quote may leave parts out, marked by a `// …` line; every other line is the file's.
    for (const part of block!.split(/^\s*\/\/ …\n/m)) expect(file).toContain(part);
  });
});
