import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandlerDeps } from '#aws/handler-deps.ts';
import { createSignedFetch, TASK_TOKEN_HEADER } from '#aws/handler-signed-fetch.ts';
import { settingsSchema } from '#config/settings.ts';
import { encodeTaskInstanceId } from '#contracts/execution-api.ts';
import { registerDags } from '#engine/dag-registry.ts';
import { silentLogger } from '#engine/logger.ts';
import { TaskTokenSigner } from '#engine/tokens.ts';
import { createInMemoryQueues, type InMemoryQueues } from '#queue/memory.ts';
import { dag } from '#sdk/index.ts';
import { versionDag } from '#sdk/serialize.ts';
import type { Store } from '#store/port.ts';
import { makeHandler as makeApiHandler } from '../../functions/api.ts';
import { makeHandler as makeExecutionApiHandler } from '../../functions/execution-api.ts';
import {
  fetchThrough,
  type LambdaHandler,
  MemoryLogStore,
  QueueWakeTimers,
  quietObservability,
} from '../support/lambda-events.ts';
import { type StoreHarness, startStoreHarness } from './store-fixtures.ts';

/**
 * The two HTTP functions over API Gateway v2 and function URL events: each serves only its half
 * of the router, the public one on the bearer token from its secret (rotation included), the
 * Execution API one on the task token carried beside the SigV4 signature.
 */

const API_URL = 'https://api123.execute-api.us-east-1.amazonaws.com';
const EXECUTION_API_URL = 'https://exec123.lambda-url.us-east-1.on.aws';
const KEYS = { k1: 'api-test-execution-secret-0123456789abcdef' };
const settings = settingsSchema.parse({});

type HttpHandler = LambdaHandler<APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2>;

let harness: StoreHarness;
let store: Store;
let queues: InMemoryQueues;

beforeAll(async () => {
  harness = await startStoreHarness();
  store = await harness.newStore();
  queues = createInMemoryQueues(settings);
  const only = dag({ id: 'only_dag', startDate: '2026-01-01T00:00:00Z' }, (d) => {
    d.task('only', async () => 1);
  });
  await registerDags(
    { store, log: silentLogger, now: Date.now, pausedAtCreation: false },
    { dags: [versionDag(only, 'only.ts')], errors: [] },
  );
});

afterAll(async () => {
  queues.close();
  await harness.close();
});

function deps(overrides: Partial<HandlerDeps> = {}): Partial<HandlerDeps> {
  return {
    ...quietObservability(),
    settings,
    now: Date.now,
    store,
    queues: queues.queues,
    timers: new QueueWakeTimers(queues.queues.scheduler),
    logs: new MemoryLogStore(),
    apiToken: async () => 'first-api-token-0123456789',
    executionKeys: async () => KEYS,
    ...overrides,
  };
}

function publicApi(overrides: Partial<HandlerDeps> = {}): typeof fetch {
  return fetchThrough(makeApiHandler(deps(overrides)) as unknown as HttpHandler, 'http-api', 'updraft-api');
}

function executionApi(): typeof fetch {
  return fetchThrough(
    makeExecutionApiHandler(deps()) as unknown as HttpHandler,
    'function-url',
    'updraft-execution-api',
  );
}

describe('the public API handler', () => {
  it('serves /api/v2 to the bearer token of its secret and refuses other callers', async () => {
    const api = publicApi();
    const ok = await api(`${API_URL}/api/v2/dags`, {
      headers: { authorization: 'Bearer first-api-token-0123456789' },
    });
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { dags: { dag_id: string }[] }).dags.map((d) => d.dag_id)).toEqual([
      'only_dag',
    ]);
    const wrong = await api(`${API_URL}/api/v2/dags`, { headers: { authorization: 'Bearer another-token' } });
    expect(wrong.status).toBe(401);
    expect((await api(`${API_URL}/api/v2/dags`)).status).toBe(401);
  });

  it('takes a rotated token once its secret changes', async () => {
    let token = 'first-api-token-0123456789';
    const api = publicApi({ apiToken: async () => token });
    const get = (value: string) =>
      api(`${API_URL}/api/v2/dags`, { headers: { authorization: `Bearer ${value}` } });
    expect((await get('first-api-token-0123456789')).status).toBe(200);
    token = 'second-api-token-0123456789';
    expect((await get('first-api-token-0123456789')).status).toBe(401);
    expect((await get('second-api-token-0123456789')).status).toBe(200);
  });

  it('has the scheduling request of a triggered run on the queue when it answers', async () => {
    const api = publicApi();
    const created = await api(`${API_URL}/api/v2/dags/only_dag/dagRuns`, {
      method: 'POST',
      headers: { authorization: 'Bearer first-api-token-0123456789', 'content-type': 'application/json' },
      body: JSON.stringify({ dag_run_id: 'triggered' }),
    });
    expect(created.status).toBe(201);
    const requests = await queues.queues.scheduler.receive({ maxMessages: 10, waitTimeMs: 0 });
    expect(requests.map((message) => JSON.parse(message.body))).toContainEqual(
      expect.objectContaining({ type: 'schedule_run', dag_id: 'only_dag', run_id: 'triggered' }),
    );
  });

  it('does not serve the Execution API', async () => {
    const response = await publicApi()(`${API_URL}/execution/task-instances/x/run`, { method: 'PATCH' });
    expect(response.status).toBe(404);
    expect(((await response.json()) as { detail: string }).detail).toContain('serves /api/v2/*');
  });
});

describe('the Execution API handler', () => {
  const key = { dagId: 'only_dag', runId: 'no_such_run', taskId: 'only', mapIndex: -1 };
  const path = `/execution/task-instances/${encodeTaskInstanceId(key)}/heartbeat`;

  it('reads the task token from beside the SigV4 signature', async () => {
    const token = await new TaskTokenSigner(KEYS, 600).issue({ ...key, tryNumber: 1 }, Date.now());
    const signed = createSignedFetch({
      region: 'us-east-1',
      credentials: async () => ({ accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' }),
      fetch: executionApi(),
    });
    const response = await signed(`${EXECUTION_API_URL}${path}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{}',
    });
    // Past authentication: the TI is unknown, which only a valid token gets to learn.
    expect(response.status).toBe(404);
  });

  it('answers 401 to a signed call without a task token, and to a token of another keyring', async () => {
    const api = executionApi();
    const signatureOnly = await api(`${EXECUTION_API_URL}${path}`, {
      method: 'PUT',
      headers: {
        authorization: 'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261202/us-east-1/lambda/aws4_request',
        'content-type': 'application/json',
      },
      body: '{}',
    });
    expect(signatureOnly.status).toBe(401);
    const foreign = await new TaskTokenSigner({ other: 'x'.repeat(40) }, 600).issue(
      { ...key, tryNumber: 1 },
      Date.now(),
    );
    const forged = await api(`${EXECUTION_API_URL}${path}`, {
      method: 'PUT',
      headers: { [TASK_TOKEN_HEADER]: foreign, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(forged.status).toBe(401);
  });

  it('does not serve the public API, even to its token', async () => {
    const response = await executionApi()(`${API_URL}/api/v2/dags`, {
      headers: { authorization: 'Bearer first-api-token-0123456789' },
    });
    expect(response.status).toBe(404);
  });
});
