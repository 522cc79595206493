import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDynamoClient, ensureTable, startEmbeddedDynamo } from '#store/embedded.ts';
import { serializeDagsFolder } from '../../lib/dags.ts';
import { FUNCTION_ENTRIES, functionBuildOptions, type UpdraftFunctionName } from '../../lib/functions.ts';
import { type FakeAws, startFakeAws } from '../support/fake-aws-http.ts';
import {
  httpEventOf,
  lambdaContext,
  responseOf,
  scheduledEvent,
  sqsEvent,
} from '../support/lambda-events.ts';

/**
 * The deployed bundles, not the sources: each function built as `lib/functions.ts` builds it (its
 * AWS SDK bundled or left to the runtime, its aliases, names kept or not), imported and driven
 * with the events Lambda sends, its SDK clients talking to the embedded DynamoDB and to a fake of
 * Secrets Manager, SQS and S3 on 127.0.0.1 (test/support/fake-aws-http.ts). What the sources'
 * handler tests cannot see: a bundle that fails to load, an alias or shim that breaks a code path,
 * a bundled SDK that signs without the environment's credentials.
 */
const root = join(import.meta.dirname, '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'updraft-bundles-e2e-'));
const TOKEN = 'bundles-e2e-api-token-0123456789abcdef';
const QUEUES = ['scheduler', 'callbacks', 'tasks_high', 'tasks_default', 'tasks_low'] as const;
type Handler = (event: unknown, context: unknown) => Promise<unknown>;

let aws: FakeAws;
let dynamo: Awaited<ReturnType<typeof startEmbeddedDynamo>>;
let xray: Socket;
const segments: string[] = [];
const savedEnv = { ...process.env };
const bundles: Partial<Record<UpdraftFunctionName, Record<string, unknown>>> = {};

async function bundle(name: UpdraftFunctionName): Promise<void> {
  await build({
    ...functionBuildOptions(name),
    entryPoints: [join(root, FUNCTION_ENTRIES[name])],
    outfile: join(dir, name, 'index.mjs'),
    absWorkingDir: root,
    logLevel: 'silent',
  });
}

beforeAll(async () => {
  const names = Object.keys(FUNCTION_ENTRIES) as UpdraftFunctionName[];
  await Promise.all(names.map(bundle));
  // What the runtime provides: the AWS SDK the bundles leave out.
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir');
  dynamo = await startEmbeddedDynamo();
  const client = createDynamoClient({ endpoint: dynamo.endpoint, embedded: true });
  await ensureTable(client, 'updraft');
  client.destroy();
  aws = await startFakeAws({
    secrets: {
      'arn:api-token': TOKEN,
      'arn:signing-keys': JSON.stringify({ k1: 'bundles-e2e-signing-secret-0123456789abcdef' }),
    },
  });
  xray = createSocket('udp4');
  xray.on('message', (message) => segments.push(message.toString()));
  await new Promise<void>((resolve) => xray.bind(0, '127.0.0.1', () => resolve()));
  Object.assign(process.env, {
    AWS_REGION: 'us-east-1',
    AWS_DEFAULT_REGION: 'us-east-1',
    // As Lambda sets them: the only credentials the bundled SDK may use.
    AWS_ACCESS_KEY_ID: 'ASIABUNDLESE2E',
    AWS_SECRET_ACCESS_KEY: 'bundles-e2e-secret',
    AWS_SESSION_TOKEN: 'bundles-e2e-session-token',
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_ENDPOINT_URL: aws.endpoint,
    AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
    AWS_LAMBDA_FUNCTION_NAME: 'updraft-bundles-e2e',
    AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x',
    LAMBDA_TASK_ROOT: dir,
    _X_AMZN_TRACE_ID: 'Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1',
    AWS_XRAY_DAEMON_ADDRESS: `127.0.0.1:${(xray.address() as AddressInfo).port}`,
    POWERTOOLS_LOG_LEVEL: 'ERROR',
    POWERTOOLS_METRICS_DISABLED: 'true',
    UPDRAFT_TABLE_NAME: 'updraft',
    UPDRAFT_LOG_BUCKET: 'logs',
    UPDRAFT_API_TOKEN_SECRET_ARN: 'arn:api-token',
    UPDRAFT_SIGNING_KEY_SECRET_ARN: 'arn:signing-keys',
    UPDRAFT_TIMER_TARGET_ARN: 'arn:aws:sqs:us-east-1:123456789012:updraft-scheduler',
    UPDRAFT_TIMER_ROLE_ARN: 'arn:aws:iam::123456789012:role/timers',
    UPDRAFT_TIMER_GROUP_NAME: 'updraft',
    UPDRAFT_EXECUTION_API_URL: 'https://execution.lambda-url.us-east-1.on.aws',
    // No triggerer here: example_callbacks' async callbacks run on the worker, as its sync ones do.
    UPDRAFT_ASYNC_CALLBACKS_RUN_ON: 'worker',
    UPDRAFT_EXAMPLE_WEBHOOK_URL: `${aws.endpoint}/hooks`,
    ...Object.fromEntries(
      QUEUES.map((queue) => [
        `UPDRAFT_QUEUE_URL_${queue.toUpperCase()}`,
        `${aws.endpoint}/123456789012/updraft-${queue}`,
      ]),
    ),
  });
  // Loaded by Node itself (vitest.config.ts externalizes this folder), as Lambda loads them: through
  // vitest's module runner a bundle would get a `require` of its own and load without its banner.
  for (const name of names) bundles[name] = await import(pathToFileURL(join(dir, name, 'index.mjs')).href);
}, 120_000);

afterAll(async () => {
  for (const key of Object.keys(process.env)) if (!(key in savedEnv)) delete process.env[key];
  Object.assign(process.env, savedEnv);
  await aws?.close();
  await dynamo?.close();
  xray?.close();
  rmSync(dir, { recursive: true, force: true });
});

function handlerOf(name: UpdraftFunctionName): Handler {
  return bundles[name]?.handler as Handler;
}

async function api(method: string, path: string, body?: unknown) {
  const request = new Request(`https://api.execute-api.us-east-1.amazonaws.com${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const result = await handlerOf('api')(await httpEventOf(request, 'http-api'), lambdaContext('updraft-api'));
  const response = responseOf(result as Parameters<typeof responseOf>[0]);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** Hands the messages sent to `queue` to `handler` in batches, as an event source mapping would. */
async function drain(queue: (typeof QUEUES)[number], handler: Handler, batchSize: number): Promise<number> {
  const messages = aws.queues.get(`/123456789012/updraft-${queue}`) ?? [];
  let handed = 0;
  while (messages.length > 0) {
    const batch = messages.splice(0, batchSize);
    handed += batch.length;
    const answer = (await handler(sqsEvent(queue, batch), lambdaContext(`updraft-${queue}`, 120_000))) as {
      batchItemFailures?: unknown[];
    };
    expect(answer?.batchItemFailures ?? [], queue).toEqual([]);
  }
  return handed;
}

/** The worker's handler, reaching the Execution API's function through its URL: here, its handler. */
function workerHandler(): Handler {
  const executionApi = handlerOf('executionApi');
  const executionFetch = (async (input: Parameters<typeof fetch>[0], init?: RequestInit) => {
    const event = await httpEventOf(new Request(input, init), 'function-url');
    return responseOf((await executionApi(event, lambdaContext('updraft-execution-api'))) as never);
  }) as typeof fetch;
  const makeWorker = bundles.worker?.makeHandler as (deps: { executionFetch: typeof fetch }) => Handler;
  return makeWorker({ executionFetch });
}

/**
 * Delivers what the functions send until the run has ended: scheduling requests to the scheduler,
 * workloads and callbacks to the worker, and, when nothing is left to deliver, the periodic tick
 * (a retry waits for its delay of 1 s). Returns the run's final state.
 */
async function runToEnd(dagId: string, runId: string, worker: Handler): Promise<string> {
  const scheduler = handlerOf('scheduler');
  let state = 'queued';
  for (let round = 0; round < 60 && (state === 'queued' || state === 'running'); round += 1) {
    let handed = await drain('scheduler', scheduler, 10);
    for (const queue of ['tasks_high', 'tasks_default', 'tasks_low', 'callbacks'] as const) {
      handed += await drain(queue, worker, 10);
    }
    if (handed > 0) continue;
    state = (await api('GET', `/api/v2/dags/${dagId}/dagRuns/${runId}`)).body.state as string;
    if (state === 'queued' || state === 'running') {
      await new Promise((resolve) => setTimeout(resolve, 500));
      await scheduler(scheduledEvent(), lambdaContext('updraft-scheduler'));
    }
  }
  // Callbacks owed at the run's end are still on their way: deliver them too.
  for (let round = 0; round < 5; round += 1) {
    await drain('scheduler', scheduler, 10);
    if ((await drain('callbacks', worker, 10)) === 0) break;
  }
  return state;
}

describe('the deployed bundles', () => {
  it('register the DAGs, run example_etl to success with its retry, and serve its logs from S3', async () => {
    const serialized = serializeDagsFolder(join(root, 'dags'), { timeoutMs: 30_000 });
    await handlerOf('registerDags')(
      {
        RequestType: 'Create',
        ServiceToken: 'arn:aws:lambda:us-east-1:123456789012:function:provider',
        ResponseURL: `${aws.endpoint}/cloudformation-response`,
        StackId: 'arn:aws:cloudformation:us-east-1:123456789012:stack/updraft/1',
        RequestId: 'bundles-e2e',
        LogicalResourceId: 'DagRegistration',
        ResourceType: 'Custom::UpdraftDags',
        ResourceProperties: { ServiceToken: 'provider', SerializedDags: JSON.stringify(serialized) },
      },
      lambdaContext('updraft-register-dags'),
    );
    expect((await api('PATCH', '/api/v2/dags/example_etl', { is_paused: false })).status).toBe(200);
    expect((await api('POST', '/api/v2/dags/example_etl/dagRuns', { dag_run_id: 'e2e' })).status).toBe(201);

    const worker = workerHandler();
    const state = await runToEnd('example_etl', 'e2e', worker);
    expect(state).toBe('success');
    const instances = (await api('GET', '/api/v2/dags/example_etl/dagRuns/e2e/taskInstances')).body
      .task_instances as { task_id: string; state: string; try_number: number }[];
    expect(Object.fromEntries(instances.map((ti) => [ti.task_id, `${ti.state}@${ti.try_number}`]))).toEqual({
      extract: 'success@1',
      transform_a: 'success@1',
      transform_b: 'success@2',
      transform_c: 'success@1',
      load: 'success@1',
    });

    // The failed first try's log, written and read through the runtime's S3 client.
    const log = await api('GET', '/api/v2/dags/example_etl/dagRuns/e2e/taskInstances/transform_b/logs/1');
    expect(log.status).toBe(200);
    expect(log.body.content).toContain('simulated flaky source');
    expect(aws.objects.size).toBeGreaterThan(0);

    // Every AWS call the bundles made was signed with the environment's credentials.
    const signed = aws.requests.map((request) => request.headers['x-amz-security-token']);
    expect(new Set(signed)).toEqual(new Set(['bundles-e2e-session-token']));
    expect(aws.requests.some((request) => request.target === 'secretsmanager.GetSecretValue')).toBe(true);
    // The tracer wraps the bundled and the runtime's clients alike.
    expect(segments.some((segment) => segment.includes('"DynamoDB"'))).toBe(true);
    expect(segments.some((segment) => segment.includes('"S3"'))).toBe(true);

    // zod without its locales still says what is wrong, in English.
    const invalid = await api('POST', '/api/v2/dags/example_etl/dagRuns', { conf: 5 });
    expect(invalid).toEqual({
      status: 422,
      body: { status: 422, detail: 'Invalid request: conf: Invalid input: expected record, received number' },
    });
  }, 120_000);

  it("run example_callbacks' callbacks on the worker, found by their names in the worker's bundle", async () => {
    expect((await api('PATCH', '/api/v2/dags/example_callbacks', { is_paused: false })).status).toBe(200);
    expect((await api('POST', '/api/v2/dags/example_callbacks/dagRuns', { dag_run_id: 'cb' })).status).toBe(
      201,
    );
    expect(await runToEnd('example_callbacks', 'cb', workerHandler())).toBe('success');
    const callbacks = (await api('GET', '/api/v2/dags/example_callbacks/dagRuns/cb/callbacks')).body
      .callbacks as { name: string; state: string; place: string }[];
    expect(
      callbacks.map((callback) => `${callback.name}:${callback.state}:${callback.place}`).sort(),
    ).toEqual(['noteRetry:success:worker', 'runDone:success:worker', 'webhookNotifier:success:worker']);
    expect(aws.requests.filter((request) => request.path === '/hooks')).toHaveLength(1);
  }, 120_000);
});
