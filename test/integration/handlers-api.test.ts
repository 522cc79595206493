import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { HandlerDeps } from '#aws/handler-deps.ts';
import { KEYRING_REFRESH_INTERVAL_MS } from '#aws/handler-http.ts';
import { executionKeysOf } from '#aws/handler-secrets.ts';
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
  httpEventOf,
  type IamCaller,
  type LambdaHandler,
  lambdaContext,
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
const API_TOKEN = 'first-api-token-0123456789';
/** What Lambda returns at most from a synchronous invocation: the handler's result, JSON-serialized. */
const LAMBDA_RESPONSE_MAX_BYTES = 6_291_456;
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

function executionApi(overrides: Partial<HandlerDeps> = {}, caller?: IamCaller): typeof fetch {
  return fetchThrough(
    makeExecutionApiHandler(deps(overrides)) as unknown as HttpHandler,
    'function-url',
    'updraft-execution-api',
    caller,
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

  it('answers 401 without echoing a presented token, and serves only health and the OpenAPI document openly', async () => {
    const handler = makeApiHandler(deps()) as unknown as HttpHandler;
    const call = async (path: string, authorization?: string) => {
      const request = new Request(`${API_URL}${path}`, authorization ? { headers: { authorization } } : {});
      return handler(await httpEventOf(request, 'http-api'), lambdaContext('updraft-api'));
    };
    const guess = 'Bearer guessed-token-SECRETSECRET-0123456789';
    for (const authorization of [undefined, guess, 'Basic dXNlcjpwYXNz', `Bearer ${API_TOKEN}x`]) {
      const result = await call('/api/v2/dags', authorization);
      expect(result.statusCode, String(authorization)).toBe(401);
      expect(JSON.stringify(result)).not.toContain('SECRETSECRET');
      expect(JSON.stringify(result)).not.toContain(API_TOKEN);
    }
    expect((await call('/api/v2/monitor/health')).statusCode).toBe(200);
    expect((await call('/api/v2/openapi.json')).statusCode).toBe(200);
  });

  it('does not serve the Execution API', async () => {
    const response = await publicApi()(`${API_URL}/execution/task-instances/x/run`, { method: 'PATCH' });
    expect(response.status).toBe(404);
    expect(((await response.json()) as { detail: string }).detail).toContain('serves /api/v2/*');
  });
});

describe('the public API handler, reading a log of the largest size (UPDRAFT_LOG_MAX_BYTES)', () => {
  /** A run of only_dag whose try 1 has written `text` as the worker writes it, in full chunks. */
  async function runWithLog(runId: string, logs: MemoryLogStore, text: string): Promise<string> {
    const created = await publicApi({ logs })(`${API_URL}/api/v2/dags/only_dag/dagRuns`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ dag_run_id: runId }),
    });
    expect(created.status).toBe(201);
    const key = { dagId: 'only_dag', runId, taskId: 'only', mapIndex: -1 };
    for (let start = 0, seq = 1; start < text.length; start += settings.logChunkMaxBytes, seq += 1) {
      await logs.appendChunk(
        key,
        1,
        String(seq).padStart(6, '0'),
        text.slice(start, start + settings.logChunkMaxBytes),
      );
    }
    return `${API_URL}/api/v2/dags/only_dag/dagRuns/${runId}/taskInstances/only/logs/1`;
  }

  /** Every page of the log, as the Lambda results the runtime would send. */
  async function pagesOf(url: string, logs: MemoryLogStore): Promise<APIGatewayProxyStructuredResultV2[]> {
    const handler = makeApiHandler(deps({ logs })) as unknown as HttpHandler;
    const results: APIGatewayProxyStructuredResultV2[] = [];
    let token: string | undefined;
    do {
      const page = new URL(url);
      if (token !== undefined) page.searchParams.set('token', token);
      const request = new Request(page, { headers: { authorization: `Bearer ${API_TOKEN}` } });
      const result = await handler(await httpEventOf(request, 'http-api'), lambdaContext('updraft-api'));
      expect(result.statusCode).toBe(200);
      results.push(result);
      token = (JSON.parse(result.body ?? '{}') as { continuation_token?: string }).continuation_token;
    } while (token !== undefined && results.length < 100);
    return results;
  }

  it('answers structured log lines in pages that each fit a Lambda response and join up to the whole log', async () => {
    const logs = new MemoryLogStore();
    const line = '{"level":"info","message":"row loaded","table":"orders","row":123456}\n';
    const text = line.repeat(Math.floor(settings.logMaxBytes / line.length));
    const pages = await pagesOf(await runWithLog('log_lines', logs, text), logs);
    for (const result of pages) {
      expect(Buffer.byteLength(JSON.stringify(result))).toBeLessThanOrEqual(LAMBDA_RESPONSE_MAX_BYTES);
    }
    expect(
      pages.map((result) => (JSON.parse(result.body ?? '{}') as { content: string }).content).join(''),
    ).toBe(text);
  });

  it('keeps a page of control characters, the costliest text to escape, within a Lambda response', async () => {
    const logs = new MemoryLogStore();
    const [first] = await pagesOf(
      await runWithLog('log_controls', logs, '\u0001'.repeat(settings.logMaxBytes)),
      logs,
    );
    expect(Buffer.byteLength(JSON.stringify(first))).toBeLessThanOrEqual(LAMBDA_RESPONSE_MAX_BYTES);
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
  const heartbeat = (api: typeof fetch, token: string) =>
    api(`${EXECUTION_API_URL}${path}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{}',
    });

  it('reads the keyring again at once for a token signed with a key id it does not hold, at most once per interval', async () => {
    let now = 1_000_000;
    // The secret, and the copy cached until its time to live (read again only when asked to refresh).
    let secret: Record<string, string> = KEYS;
    let cached = secret;
    const reads: boolean[] = [];
    const api = executionApi({
      now: () => now,
      executionKeys: async (options) => {
        reads.push(options?.refresh === true);
        if (options?.refresh) cached = secret;
        return cached;
      },
    });
    const signedWith = (kid: string) =>
      new TaskTokenSigner({ [kid]: `${kid}-execution-secret-0123456789abcdef` }, 600).issue(
        { ...key, tryNumber: 1 },
        now,
      );
    expect((await heartbeat(api, await signedWith('k1'))).status).toBe(401); // k1 of another secret
    expect(reads).toEqual([false]);
    secret = { k2: 'k2-execution-secret-0123456789abcdef', ...KEYS };
    expect((await heartbeat(api, await signedWith('k2'))).status).toBe(404);
    expect(reads).toEqual([false, false, true]);
    // Another unknown key id within the interval: no read.
    expect((await heartbeat(api, await signedWith('k3'))).status).toBe(401);
    expect(reads.filter(Boolean)).toHaveLength(1);
    now += KEYRING_REFRESH_INTERVAL_MS;
    expect((await heartbeat(api, await signedWith('k3'))).status).toBe(401);
    expect(reads.filter(Boolean)).toHaveLength(2);
  });
});

describe('the Execution API handler, a triggerer registering with its task role', () => {
  const TRIGGERER: IamCaller = {
    roleId: 'AROATRIGGERER',
    roleName: 'updraft-triggerer',
    session: 'ecs-task-1',
  };
  const register = (api: typeof fetch, headers: Record<string, string> = {}) =>
    api(`${EXECUTION_API_URL}/execution/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ hostname: 'ip-10-0-0-1', capacity: 1000 }),
    });

  it('registers a job for a call signed by the triggerer role that carries no credential', async () => {
    const response = await register(executionApi({ triggererRoleId: TRIGGERER.roleId }, TRIGGERER));
    expect(response.status).toBe(201);
    const job = (await response.json()) as { job_id: string; token: string };
    // The job token works on the job's routes, like one registered with a triggerer token.
    const heartbeat = await executionApi({ triggererRoleId: TRIGGERER.roleId }, TRIGGERER)(
      `${EXECUTION_API_URL}/execution/jobs/${job.job_id}/heartbeat`,
      {
        method: 'POST',
        headers: { [TASK_TOKEN_HEADER]: job.token, 'content-type': 'application/json' },
        body: JSON.stringify({ running: 0 }),
      },
    );
    expect(heartbeat.status).toBe(200);
  });

  it('gives no credential to another role, to a deployment without a triggerer role, or on another route', async () => {
    const worker = await register(executionApi({ triggererRoleId: TRIGGERER.roleId }));
    const noRole = await register(executionApi({ triggererRoleId: null }, TRIGGERER));
    const otherRoute = await executionApi({ triggererRoleId: TRIGGERER.roleId }, TRIGGERER)(
      `${EXECUTION_API_URL}/execution/triggers/load`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ limit: 10 }),
      },
    );
    // A role id that only starts like the triggerer's is another role.
    const lookalike = await register(
      executionApi({ triggererRoleId: TRIGGERER.roleId }, { ...TRIGGERER, roleId: `${TRIGGERER.roleId}X` }),
    );
    expect([worker.status, noRole.status, otherRoute.status, lookalike.status]).toEqual([401, 401, 401, 401]);
  });

  it('serves a registration that brings its own token as it came (a wrong one is refused)', async () => {
    const response = await register(executionApi({ triggererRoleId: TRIGGERER.roleId }, TRIGGERER), {
      [TASK_TOKEN_HEADER]: 'not-a-token',
    });
    expect(response.status).toBe(401);
  });
});

describe('a keyring rotation done as docs/deploy.md says (new key first, old key after)', () => {
  const SECRET_ARN = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:updraft-keyring-AbCdEf';
  const OLD = 'old-signing-secret-0123456789abcdef0123456789';
  const NEW = 'new-signing-secret-0123456789abcdef0123456789';
  const key = { dagId: 'only_dag', runId: 'manual__rotation', taskId: 'only', mapIndex: -1 };
  const secrets = mockClient(SecretsManagerClient);
  let previous: string | undefined;
  beforeAll(() => {
    previous = process.env.UPDRAFT_SIGNING_KEY_SECRET_ARN;
    process.env.UPDRAFT_SIGNING_KEY_SECRET_ARN = SECRET_ARN;
  });
  afterEach(() => {
    secrets.reset();
  });
  afterAll(() => {
    if (previous === undefined) delete process.env.UPDRAFT_SIGNING_KEY_SECRET_ARN;
    else process.env.UPDRAFT_SIGNING_KEY_SECRET_ARN = previous;
    secrets.restore();
  });

  it('does not refuse the tokens a scheduler signs with the new key while the instance holds the old keyring', async () => {
    secrets.on(GetSecretValueCommand).resolves({ SecretString: OLD });
    // The function with its real keyring default (Secrets Manager, cached per instance).
    const { executionKeys: _unused, ...given } = deps();
    const api = fetchThrough(
      makeExecutionApiHandler(given) as unknown as HttpHandler,
      'function-url',
      'updraft-execution-api',
    );
    const heartbeat = async (token: string) =>
      api(`${EXECUTION_API_URL}/execution/task-instances/${encodeTaskInstanceId(key)}/heartbeat`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: '{}',
      });
    const before = new TaskTokenSigner(executionKeysOf(OLD, SECRET_ARN), 600);
    // The instance is warm and has read the keyring (the TI does not exist: 404, not 401).
    expect((await heartbeat(await before.issue({ ...key, tryNumber: 1 }, Date.now()))).status).toBe(404);

    // The operator rotates: `k2=<new>` first, `default=<old>` after it.
    const rotated = `k2=${NEW}\ndefault=${OLD}`;
    secrets.on(GetSecretValueCommand).resolves({ SecretString: rotated });
    // A scheduler instance that started after the rotation signs its workloads with k2.
    const after = new TaskTokenSigner(executionKeysOf(rotated, SECRET_ARN), 600);
    expect((await heartbeat(await after.issue({ ...key, tryNumber: 1 }, Date.now()))).status).toBe(404);
  });
});
