import { fileURLToPath } from 'node:url';
import type {
  APIGatewayProxyEventV2,
  APIGatewayProxyStructuredResultV2,
  CloudFormationCustomResourceCreateEvent,
  SQSBatchResponse,
  SQSEvent,
} from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { awsDefaultsLoaded, type HandlerDeps } from '#aws/handler-deps.ts';
import { createSignedFetch } from '#aws/handler-signed-fetch.ts';
import { type Settings, settingsSchema } from '#config/settings.ts';
import { decodeTaskInstanceId } from '#contracts/execution-api.ts';
import { taskWorkloadSchema } from '#contracts/messages.ts';
import type { DagRun, TaskInstance } from '#contracts/public-api.ts';
import type { TaskInstanceKey } from '#core/models.ts';
import { createInMemoryQueues, type InMemoryQueues } from '#queue/memory.ts';
import { QUEUE_NAMES, type QueueName, type ReceivedMessage } from '#queue/port.ts';
import { collectDags } from '#sdk/loader.ts';
import { versionDag } from '#sdk/serialize.ts';
import { DynamoStore } from '#store/dynamodb.ts';
import { createDynamoClient, ensureTable, startEmbeddedDynamo, toDocumentClient } from '#store/embedded.ts';
import type { Store } from '#store/port.ts';
import { makeHandler as makeApiHandler } from '../../functions/api.ts';
import { makeHandler as makeExecutionApiHandler } from '../../functions/execution-api.ts';
import { makeHandler as makeRegisterHandler } from '../../functions/register-dags.ts';
import { makeHandler as makeSchedulerHandler, type TickResult } from '../../functions/scheduler.ts';
import { makeHandler as makeWorkerHandler } from '../../functions/worker.ts';
import { sendNotingStarts } from '../support/execution-calls.ts';
import {
  type CapturedMetrics,
  EventSourceMappings,
  fetchThrough,
  type LambdaHandler,
  lambdaContext,
  MemoryLogStore,
  QueueWakeTimers,
  quietObservability,
  scheduledEvent,
  waitFor,
} from '../support/lambda-events.ts';

/**
 * What a deploy does, minus AWS: the real handlers of functions/, invoked in-process with the
 * events Lambda sends, over the embedded DynamoDB, with in-memory queues and timers standing in
 * for SQS and the wake timers. The DAGs are registered by the custom resource handler, runs are
 * triggered through the public API handler (HTTP API v2 events), the scheduler handler takes the
 * scheduling queue's SQS batches and the EventBridge tick, and the worker handlers take the task
 * queues' batches and reach the Execution API handler through SigV4-signed function URL events.
 * Along the way a worker record is refused once (the function URL answers 403), a scheduler
 * record fails once (the store throws), and some records are delivered twice.
 */

const DAGS_FOLDER = fileURLToPath(new URL('../../dags', import.meta.url));
const API_TOKEN = 'handlers-local-api-token-0123456789';
const EXECUTION_KEYS = { k1: 'handlers-local-execution-secret-0123456789abcdef' };
const API_URL = 'https://abc123.execute-api.us-east-1.amazonaws.com';
const EXECUTION_API_URL = 'https://xyz789.lambda-url.us-east-1.on.aws';

type HttpHandler = LambdaHandler<APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2>;
type SqsHandler = LambdaHandler<SQSEvent, SQSBatchResponse>;

interface World {
  settings: Settings;
  store: DynamoStore;
  queues: InMemoryQueues;
  logs: MemoryLogStore;
  timers: QueueWakeTimers;
  apiFetch: typeof fetch;
  mappings: EventSourceMappings;
  metrics: CapturedMetrics[];
  tickHandler: LambdaHandler<unknown, unknown>;
  ticks: TickResult[];
  refusedStarts: TaskInstanceKey[];
  /** Every start the Execution API accepted: `dag/task#try`. */
  starts: string[];
  failedPasses: string[];
  registration: { status: string; body: Record<string, unknown> }[];
  close(): Promise<void>;
}

let world: World;

beforeAll(async () => {
  world = await startWorld();
}, 60_000);

afterAll(async () => {
  await world?.close();
});

describe('the handlers, run in-process as Lambda would run them', () => {
  it('registers the bundled DAGs through the custom resource and answers CloudFormation', async () => {
    expect(world.registration).toEqual([expect.objectContaining({ status: 'SUCCESS' })]);
    const dags = await api<{ dags: { dag_id: string }[] }>('GET', '/api/v2/dags');
    expect(dags.body.dags.map((dag) => dag.dag_id)).toEqual(
      expect.arrayContaining(['example_branching', 'example_etl']),
    );
  });

  it('runs example_etl and example_branching to success through every handler, despite refused and duplicated deliveries', async () => {
    world.mappings.start();
    const ticker = startTicker(500);
    const etl = await api<DagRun>('POST', '/api/v2/dags/example_etl/dagRuns', {});
    const branching = await api<DagRun>('POST', '/api/v2/dags/example_branching/dagRuns', {});
    expect([etl.status, branching.status]).toEqual([201, 201]);

    const finished = await Promise.all(
      [etl.body, branching.body].map((run) =>
        waitFor(
          `run ${run.dag_id}/${run.dag_run_id} to finish`,
          async () => {
            const current = await api<DagRun>('GET', `/api/v2/dags/${run.dag_id}/dagRuns/${run.dag_run_id}`);
            return ['success', 'failed'].includes(current.body.state) ? current.body : undefined;
          },
          45_000,
        ),
      ),
    );
    // The tick also created the due run of the scheduled example DAG (catchup off: the latest interval).
    const scheduled = await waitFor('the scheduled run of example_schedule to finish', async () => {
      const { body } = await api<{ dag_runs: DagRun[] }>('GET', '/api/v2/dags/example_schedule/dagRuns');
      const done =
        body.dag_runs.length > 0 && body.dag_runs.every((run) => ['success', 'failed'].includes(run.state));
      return done ? body.dag_runs : undefined;
    });
    await ticker.stop();
    expect(finished.map((run) => run.state)).toEqual(['success', 'success']);
    expect(scheduled.map((run) => [run.run_type, run.state])).toContainEqual(['scheduled', 'success']);

    const etlStates = await taskStates('example_etl', etl.body.dag_run_id);
    expect(etlStates).toEqual({
      extract: { state: 'success', try: 1 },
      transform_a: { state: 'success', try: 1 },
      // Fails its first try on purpose; the retry was woken by the timer through the scheduler queue.
      transform_b: { state: 'success', try: 2 },
      transform_c: { state: 'success', try: 1 },
      load: { state: 'success', try: 1 },
    });
    const load = await api<{ value: unknown }>(
      'GET',
      `/api/v2/dags/example_etl/dagRuns/${etl.body.dag_run_id}/taskInstances/load/xcomEntries/return_value`,
    );
    expect(load.body.value).toEqual({ rows: 12, total: 134 });

    const branchingStates = await taskStates('example_branching', branching.body.dag_run_id);
    expect(branchingStates).toEqual({
      start: { state: 'success', try: 1 },
      choose_path: { state: 'success', try: 1 },
      fast_path: { state: 'success', try: 1 },
      slow_a: { state: 'skipped', try: 0 },
      slow_b: { state: 'skipped', try: 0 },
      join: { state: 'success', try: 1 },
      publish: { state: 'skipped', try: 1 },
      cleanup: { state: 'success', try: 1 },
    });

    const log = await api<{ content: string }>(
      'GET',
      `/api/v2/dags/example_etl/dagRuns/${etl.body.dag_run_id}/taskInstances/extract/logs/1`,
    );
    expect(log.body.content).toContain('extracted rows');
    const flaky = await api<{ content: string }>(
      'GET',
      `/api/v2/dags/example_etl/dagRuns/${etl.body.dag_run_id}/taskInstances/transform_b/logs/1`,
    );
    expect(flaky.body.content).toContain('simulated flaky source');
  }, 60_000);

  it('reported the refused start as a batch item failure and ran the workload on its redelivery', () => {
    expect(world.refusedStarts).toEqual([
      expect.objectContaining({ dagId: 'example_etl', taskId: 'extract' }),
    ]);
    const failed = world.mappings.invocations.filter(
      (invocation) => invocation.queue.startsWith('tasks_') && invocation.failed.length > 0,
    );
    expect(failed).toHaveLength(1);
    const [messageId] = failed[0]?.failed ?? [];
    const deliveries = deliveriesOf(messageId);
    expect(deliveries.map((delivery) => delivery.receiveCount)).toEqual([1, 2]);
    expect(deliveries.map((delivery) => delivery.failed)).toEqual([true, false]);
  });

  it('reported the failed scheduling pass as a batch item failure and passed the run on its redelivery', () => {
    expect(world.failedPasses).toEqual(['example_branching']);
    const failed = world.mappings.invocations.filter(
      (invocation) => invocation.queue === 'scheduler' && invocation.failed.length > 0,
    );
    expect(failed).toHaveLength(1);
    const deliveries = deliveriesOf(failed[0]?.failed[0]);
    expect(deliveries[0]?.failed).toBe(true);
    expect(deliveries.at(-1)?.failed).toBe(false);
  });

  it('handled the duplicated deliveries without running a task twice', () => {
    const duplicated = [...world.mappings.duplicated];
    expect(duplicated.length).toBeGreaterThanOrEqual(3);
    for (const messageId of duplicated) {
      // Handled with success, delivered again (its delete was lost), handled with success again.
      const handled = deliveriesOf(messageId).filter((delivery) => !delivery.failed);
      expect(handled.length, `successful deliveries of ${messageId}`).toBe(2);
    }
    // Every try started once, the duplicated workloads' included: their second delivery was refused.
    const started = world.starts.filter((start) => !start.startsWith('example_schedule/')).sort();
    expect(started).toEqual(
      [
        'example_etl/extract#1',
        'example_etl/transform_a#1',
        'example_etl/transform_b#1',
        'example_etl/transform_b#2',
        'example_etl/transform_c#1',
        'example_etl/load#1',
        'example_branching/start#1',
        'example_branching/choose_path#1',
        'example_branching/fast_path#1',
        'example_branching/join#1',
        'example_branching/publish#1',
        'example_branching/cleanup#1',
      ].sort(),
    );
    const triesRun = world.metrics.reduce((sum, metrics) => sum + metrics.total('worker.tries_run'), 0);
    expect(triesRun).toBe(world.starts.length);
  });

  it('left nothing behind: no dead letters, and every queue drained', async () => {
    for (const name of QUEUE_NAMES) {
      const dead = await world.queues.deadLetters[name].stats();
      expect(dead.visible + dead.inFlight + dead.delayed, `dead letters of ${name}`).toBe(0);
    }
    await world.mappings.stop();
    for (const name of QUEUE_NAMES) {
      const stats = await world.queues.queues[name].stats();
      expect(stats.visible + stats.inFlight, `messages left on ${name}`).toBe(0);
    }
  });

  it('needed no AWS client: every AWS-backed dep was the local stand-in', () => {
    expect(awsDefaultsLoaded()).toBe(false);
  });

  it('ran the periodic tick through the EventBridge event and published EMF metrics', () => {
    expect(world.ticks.length).toBeGreaterThan(0);
    expect(world.ticks.every((tick) => typeof tick.wrapped === 'boolean')).toBe(true);
    const total = (name: string) => world.metrics.reduce((sum, metrics) => sum + metrics.total(name), 0);
    expect(total('scheduler.ticks')).toBe(world.ticks.length);
    expect(total('scheduler.passes')).toBeGreaterThan(0);
    expect(total('api.requests')).toBeGreaterThan(0);
    expect(total('execution_api.requests')).toBeGreaterThan(0);
  });
});

async function api<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const response = await world.apiFetch(`${API_URL}${path}`, {
    method,
    headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as T };
}

async function taskStates(
  dagId: string,
  runId: string,
): Promise<Record<string, { state: string | null; try: number }>> {
  const { body } = await api<{ task_instances: TaskInstance[] }>(
    'GET',
    `/api/v2/dags/${dagId}/dagRuns/${runId}/taskInstances`,
  );
  return Object.fromEntries(
    body.task_instances.map((ti) => [ti.task_id, { state: ti.state, try: ti.try_number }]),
  );
}

/** The EventBridge rule, every `periodMs` (the deployment's is a minute; the passes run on requests). */
function startTicker(periodMs: number): { stop(): Promise<void> } {
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      world.ticks.push(
        (await world.tickHandler(scheduledEvent(), lambdaContext('updraft-scheduler'))) as TickResult,
      );
      await new Promise((resolve) => setTimeout(resolve, periodMs));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

/** Every delivery of one message, in order, and whether its invocation reported it failed. */
function deliveriesOf(messageId: string | undefined): { receiveCount: number; failed: boolean }[] {
  return world.mappings.invocations.flatMap((invocation) =>
    invocation.records
      .filter((record) => record.messageId === messageId)
      .map((record) => ({
        receiveCount: record.receiveCount,
        failed: invocation.failed.includes(record.messageId),
      })),
  );
}

async function startWorld(): Promise<World> {
  const server = await startEmbeddedDynamo();
  const client = createDynamoClient({ endpoint: server.endpoint, embedded: true });
  await ensureTable(client, 'updraft');
  const store = new DynamoStore({ client: toDocumentClient(client), tableName: 'updraft' });
  const settings = settingsSchema.parse({});
  const queues = createInMemoryQueues(settings);
  const logs = new MemoryLogStore();
  const timers = new QueueWakeTimers(queues.queues.scheduler);
  const metrics: CapturedMetrics[] = [];
  const common = (): Partial<HandlerDeps> & ReturnType<typeof quietObservability> => {
    const observability = quietObservability();
    metrics.push(observability.metrics);
    return {
      ...observability,
      settings,
      now: () => Date.now(),
      store,
      queues: queues.queues,
      timers,
      logs,
      apiToken: async () => API_TOKEN,
      executionKeys: async () => EXECUTION_KEYS,
    };
  };

  // The deploy: the custom resource registers what the synth serialized.
  const registration: World['registration'] = [];
  const register = makeRegisterHandler({
    ...common(),
    responseFetch: (async (_url: string | URL | Request, init?: RequestInit) => {
      const body = JSON.parse(String(init?.body)) as Record<string, unknown>;
      registration.push({ status: String(body.Status), body });
      return new Response('', { status: 200 });
    }) as typeof fetch,
  });
  await register(await registrationEvent(), lambdaContext('updraft-register-dags'));

  const apiFetch = fetchThrough(makeApiHandler(common()) as HttpHandler, 'http-api', 'updraft-api');

  // Workers reach the Execution API function through its URL: signed, and once refused by IAM.
  const refusedStarts: TaskInstanceKey[] = [];
  const starts: string[] = [];
  const executionApi = fetchThrough(
    makeExecutionApiHandler(common()) as HttpHandler,
    'function-url',
    'updraft-execution-api',
  );
  const functionUrl = (async (input: string | URL | Request, init?: RequestInit) => {
    const request = new Request(input, init);
    if (!request.headers.get('authorization')?.startsWith('AWS4-HMAC-SHA256 ')) {
      return Response.json({ Message: 'Forbidden' }, { status: 403 });
    }
    const run = /\/execution\/task-instances\/([^/]+)\/run$/.exec(new URL(request.url).pathname);
    const key = run?.[1] ? decodeTaskInstanceId(run[1]) : undefined;
    if (key?.taskId === 'extract' && refusedStarts.length === 0) {
      refusedStarts.push(key);
      return Response.json({ Message: 'Forbidden' }, { status: 403 });
    }
    const { response, started } = await sendNotingStarts(request, executionApi);
    for (const tried of started) starts.push(`${tried.key.dagId}/${tried.key.taskId}#${tried.tryNumber}`);
    return response;
  }) as typeof fetch;
  const executionFetch = createSignedFetch({
    region: 'us-east-1',
    credentials: async () => ({ accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'local-secret' }),
    fetch: functionUrl,
  });
  const worker = () =>
    makeWorkerHandler({
      ...common(),
      executionApiUrl: EXECUTION_API_URL,
      executionFetch,
    }) as unknown as SqsHandler;

  // The queue-fed schedulers' store fails once, on the first read of the branching run.
  const failedPasses: string[] = [];
  const schedulerStore = failingOnce(store, (argument) => {
    const key = argument as { dagId?: unknown; runId?: unknown } | undefined;
    if (key?.dagId !== 'example_branching' || typeof key.runId !== 'string' || failedPasses.length > 0)
      return false;
    failedPasses.push(key.dagId);
    return true;
  });
  const scheduler = () =>
    makeSchedulerHandler({ ...common(), store: schedulerStore }) as unknown as SqsHandler;

  let scheduledDuplicates = 0;
  const duplicate = (queue: QueueName, message: ReceivedMessage): boolean => {
    if (queue === 'scheduler') return scheduledDuplicates++ < 2;
    const workload = taskWorkloadSchema.safeParse(JSON.parse(message.body));
    return workload.success && ['transform_a', 'start'].includes(workload.data.ti.task_id);
  };
  const mappings = new EventSourceMappings(
    [
      { queue: queues.queues.scheduler, handlers: [scheduler(), scheduler()] },
      { queue: queues.queues.tasks_default, handlers: [worker(), worker(), worker()], batchSize: 2 },
      { queue: queues.queues.tasks_high, handlers: [worker()] },
      { queue: queues.queues.tasks_low, handlers: [worker()] },
      { queue: queues.queues.callbacks, handlers: [worker()] },
    ],
    { duplicate },
  );

  return {
    settings,
    store,
    queues,
    logs,
    timers,
    apiFetch,
    mappings,
    metrics,
    // The tick's own instance: a failure there is logged and retried by the next tick, not a batch item.
    tickHandler: makeSchedulerHandler(common()) as LambdaHandler<unknown, unknown>,
    ticks: [],
    refusedStarts,
    starts,
    failedPasses,
    registration,
    async close() {
      await mappings.stop();
      queues.close();
      client.destroy();
      await server.close();
    },
  };
}

/** The CloudFormation Create of the registration, its DAGs serialized as the synth does. */
async function registrationEvent(): Promise<CloudFormationCustomResourceCreateEvent> {
  const collected = await collectDags(DAGS_FOLDER);
  const serialized = {
    dags: collected.dags.map(({ dag, fileloc }) => versionDag(dag, fileloc)),
    errors: collected.errors,
  };
  return {
    RequestType: 'Create',
    ServiceToken: 'arn:aws:lambda:us-east-1:123456789012:function:updraft-register-dags',
    ResponseURL: 'https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/signed',
    StackId: 'arn:aws:cloudformation:us-east-1:123456789012:stack/updraft/1',
    RequestId: 'request-1',
    LogicalResourceId: 'DagRegistration',
    ResourceType: 'Custom::UpdraftDagRegistration',
    ResourceProperties: {
      ServiceToken: 'arn:aws:lambda:us-east-1:123456789012:function:updraft-register-dags',
      SerializedDags: JSON.stringify(serialized),
    },
  };
}

/**
 * The store, except that a call throws when `fails(its first argument)` says so, as a throttled
 * request would. Keyed on the argument, not the method, so it does not depend on which read the
 * engine's pass makes first.
 */
function failingOnce(store: Store, fails: (argument: unknown) => boolean): Store {
  return new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return async (...args: unknown[]) => {
        if (fails(args[0])) throw new Error(`Simulated ${String(property)} failure (throttled)`);
        return (value as (...inner: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}
