import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import type {
  APIGatewayProxyEventV2,
  APIGatewayProxyStructuredResultV2,
  CloudFormationCustomResourceCreateEvent,
  SQSBatchResponse,
  SQSEvent,
} from 'aws-lambda';
import type { HandlerDeps } from '#aws/handler-deps.ts';
import { createSignedFetch } from '#aws/handler-signed-fetch.ts';
import { S3LogStore } from '#aws/s3-log-store.ts';
import { SqsQueue } from '#aws/sqs-queue.ts';
import { AwsWakeTimers } from '#aws/wake-timers.ts';
import { loadSettings, SETTING_ENV_VARS, type Settings } from '#config/settings.ts';
import type { DagRunKey } from '#core/models.ts';
import { createInMemoryQueues } from '#queue/memory.ts';
import { QUEUE_NAMES, type Queue, type QueueName } from '#queue/port.ts';
import { collectDags } from '#sdk/loader.ts';
import { versionDag } from '#sdk/serialize.ts';
import { DynamoStore } from '#store/dynamodb.ts';
import {
  createDynamoClient,
  ensureTable,
  startEmbeddedDynamoProcess,
  toDocumentClient,
} from '#store/embedded.ts';
import { GSI1_PARTITION_KEY, GSI2_PARTITION_KEY, RUN_SORT_KEY } from '#store/keys.ts';
import { makeHandler as makeApiHandler } from '../functions/api.ts';
import { makeHandler as makeExecutionApiHandler } from '../functions/execution-api.ts';
import { makeHandler as makeRegisterHandler } from '../functions/register-dags.ts';
import { makeHandler as makeSchedulerHandler } from '../functions/scheduler.ts';
import { makeHandler as makeWorkerHandler } from '../functions/worker.ts';
import type { UpdraftFunctionName } from '../lib/functions.ts';
import {
  type CapturedMetrics,
  fetchThrough,
  type LambdaHandler,
  lambdaContext,
  quietObservability,
  scheduledEvent,
} from '../test/support/lambda-events.ts';
import type { DeploymentDefaults } from './aws-deployment.ts';
import { FakeAws, type RequestTally } from './aws-fakes.ts';
import { EventSources, instancePool, LambdaMeter } from './aws-lambda.ts';
import { DynamoCapacityMeter, type DynamoTally } from './aws-meters.ts';

const TABLE = 'updraft';
const DAGS_FOLDER = fileURLToPath(new URL('./dags', import.meta.url));
const API_URL = 'https://abc123.execute-api.us-east-1.amazonaws.com';
const EXECUTION_API_URL = 'https://xyz789.lambda-url.us-east-1.on.aws';
const API_TOKEN = 'bench-aws-api-token-0123456789abcdef';
const EXECUTION_KEYS = { k1: 'bench-aws-execution-secret-0123456789abcdef' };

type HttpHandler = LambdaHandler<APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2>;
type SqsHandler = LambdaHandler<SQSEvent, SQSBatchResponse>;

export interface RunOptions {
  dagId: string;
  tasksPerRun: number;
  runs: number;
  /** Concurrent invocations per event source here, at most the deployment's maximum concurrency. */
  workerConcurrency: number;
  schedulerConcurrency: number;
  /** The periodic tick, compressed from the deployment's minute; its usage is reported apart, as a fixed cost. */
  tickIntervalMs: number;
}

/** One phase's measurements: what the handlers sent and how long each invocation took. */
export interface PhaseCounts {
  seconds: number;
  dynamodb: Record<string, DynamoTally>;
  aws: RequestTally;
  durationsMs: Record<string, number[]>;
  /** Bytes of the CloudWatch EMF documents the functions published (not priced). */
  emfBytes: number;
}

export interface HandlerRunResult {
  options: RunOptions;
  eventSources: DeploymentDefaults['eventSources'];
  tasks: number;
  runs: PhaseCounts;
  /** One periodic tick with nothing to do: a fixed cost per tick, not per task. */
  tick: PhaseCounts;
  /** Runs of the metered phase that only a tick finished (no scheduling pass did). */
  runsFinishedByTick: number;
  batchItemFailures: number;
  warnings: string[];
}

/**
 * The handler-level run: the real handlers of `functions/` with Lambda-shaped events over dynalite
 * (in its own process, as DynamoDB is remote), the real SQS, S3 and timer adapters over in-memory
 * stand-ins that count requests, SigV4-signed function URL calls from the workers to the
 * Execution API, and the event source mappings as the construct configures them. One run warms
 * the instances up unmetered; then `runs` runs of `dagId`, triggered together through the public
 * API, are metered from trigger to quiet (every run succeeded, queues empty, nothing running).
 */
export async function runHandlers(
  defaults: DeploymentDefaults,
  options: RunOptions,
): Promise<HandlerRunResult> {
  const warnings: string[] = [];
  const server = await startEmbeddedDynamoProcess();
  const imageClient = createDynamoClient({ endpoint: server.endpoint, embedded: true });
  await ensureTable(imageClient, TABLE);
  const meter = new DynamoCapacityMeter(imageClient, TABLE);
  const lambdas = new LambdaMeter();
  const settingsOf = (fn: UpdraftFunctionName): Settings =>
    loadSettings(
      Object.fromEntries(
        Object.values(SETTING_ENV_VARS)
          .filter((name) => defaults.settingsEnvironment[fn][name] !== undefined)
          .map((name) => [name, defaults.settingsEnvironment[fn][name]]),
      ),
    );
  const settings = settingsOf('scheduler');
  const memoryQueues = createInMemoryQueues(settings);
  const fake = new FakeAws(memoryQueues.queues);
  const sqsQueues = Object.fromEntries(
    QUEUE_NAMES.map((name) => [
      name,
      new SqsQueue({
        client: fake.sqs,
        queueUrl: fake.queueUrl(name),
        name,
        maxMessageBytes: settings.queueMaxMessageBytes,
      }),
    ]),
  ) as unknown as Record<QueueName, Queue>;
  const logs = new S3LogStore({ client: fake.s3, bucket: 'updraft-logs' });
  const timers = new AwsWakeTimers({
    queue: sqsQueues.scheduler,
    scheduler: fake.scheduler,
    targetArn: 'arn:aws:sqs:us-east-1:123456789012:updraft-scheduler',
    roleArn: 'arn:aws:iam::123456789012:role/updraft-timers',
    groupName: 'updraft-timers',
  });
  const clients = [imageClient];
  const captured: CapturedMetrics[] = [];
  const unmeteredStore = new DynamoStore({ client: toDocumentClient(imageClient), tableName: TABLE });

  /** One function instance's deps: its own DynamoDB client (metered under its name), the shared stand-ins. */
  const instance = (
    fn: UpdraftFunctionName,
    withStore: boolean,
    owner: string = fn,
  ): Partial<HandlerDeps> & ReturnType<typeof quietObservability> => {
    const observability = quietObservability();
    captured.push(observability.metrics);
    const common = { ...observability, settings: settingsOf(fn), now: () => Date.now() };
    if (!withStore) return common;
    const client = createDynamoClient({ endpoint: server.endpoint, embedded: true });
    clients.push(client);
    meter.attach(client, owner);
    const store = new DynamoStore({
      client: toDocumentClient(client),
      tableName: TABLE,
      retentionDays: common.settings.retentionDays,
    });
    return {
      ...common,
      store,
      queues: sqsQueues,
      timers,
      logs,
      apiToken: async () => API_TOKEN,
      executionKeys: async () => EXECUTION_KEYS,
    };
  };

  // The deploy: the custom resource registers the DAG as the synth serialized it.
  const collected = await collectDags(DAGS_FOLDER);
  const dag = collected.dags.find((entry) => entry.dag.dagId === options.dagId);
  if (!dag) throw new Error(`bench/aws: no DAG ${options.dagId} in ${DAGS_FOLDER}`);
  const register = makeRegisterHandler({
    ...instance('registerDags', true),
    responseFetch: (async () => new Response('', { status: 200 })) as typeof fetch,
  });
  await register(
    registrationEvent(JSON.stringify({ dags: [versionDag(dag.dag, dag.fileloc)], errors: [] })),
    lambdaContext('updraft-register-dags'),
  );

  const apiFetch = fetchThrough(
    lambdas.wrap('api', makeApiHandler(instance('api', true)) as HttpHandler),
    'http-api',
    'updraft-api',
  );
  // The Execution API's instances, shared by every worker: concurrent calls get one each.
  const executionApi = fetchThrough(
    lambdas.wrap(
      'executionApi',
      instancePool(() => makeExecutionApiHandler(instance('executionApi', true)) as HttpHandler),
    ),
    'function-url',
    'updraft-execution-api',
  );
  const executionFetch = () =>
    createSignedFetch({
      region: 'us-east-1',
      credentials: async () => ({ accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'bench-secret' }),
      fetch: executionApi,
    });
  const loadDagModule = (fileloc: string) =>
    import(pathToFileURL(resolve(DAGS_FOLDER, fileloc)).href) as Promise<Record<string, unknown>>;
  const worker = () =>
    lambdas.wrap(
      'worker',
      makeWorkerHandler({
        ...instance('worker', false),
        executionApiUrl: EXECUTION_API_URL,
        executionFetch: executionFetch(),
        loadDagModule,
      }) as unknown as SqsHandler,
    );
  const scheduler = () =>
    lambdas.wrap('scheduler', makeSchedulerHandler(instance('scheduler', true)) as unknown as SqsHandler);

  // The EventBridge rule's tick: its own instance, metered as `tick` (a fixed cost per period).
  const tickDeps = instance('scheduler', true, 'tick');
  const tickHandler = lambdas.wrap('tick', makeSchedulerHandler(tickDeps) as LambdaHandler<unknown, unknown>);
  const tick = () => tickHandler(scheduledEvent(), lambdaContext('updraft-scheduler'));
  let ticking = true;
  let wakeTicker = () => {};
  const ticker = (async () => {
    while (ticking) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, options.tickIntervalMs);
        wakeTicker = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      if (ticking) await tick();
    }
  })();
  const stopTicking = async () => {
    ticking = false;
    wakeTicker();
    await ticker;
  };

  const sources = new EventSources(fake);
  const mappingOf = (queue: QueueName, handlers: SqsHandler[]) => {
    const config = defaults.eventSources[queue];
    if (!config) throw new Error(`bench/aws: the construct maps no function to the ${queue} queue`);
    return {
      queue: memoryQueues.queues[queue],
      functionName: `updraft-${config.function}`,
      handlers: handlers.slice(0, config.maxConcurrency),
      batchSize: config.batchSize,
      maxBatchingWindowMs: config.maxBatchingWindowSeconds * 1000,
    };
  };
  const times = <T>(count: number, make: () => T) => Array.from({ length: count }, make);
  sources.start([
    mappingOf('scheduler', times(options.schedulerConcurrency, scheduler)),
    ...(['tasks_default', 'tasks_high', 'tasks_low', 'callbacks'] as const).map((queue) =>
      mappingOf(queue, times(queue === 'tasks_default' ? options.workerConcurrency : 1, worker)),
    ),
  ]);

  const phase = async (work: () => Promise<void>): Promise<PhaseCounts> => {
    const published = captured.map((metrics) => metrics.published.length);
    meter.take();
    fake.take();
    lambdas.take();
    meter.active = fake.active = lambdas.active = true;
    const start = performance.now();
    await work();
    await quiet();
    const seconds = (performance.now() - start) / 1000;
    meter.active = fake.active = lambdas.active = false;
    const emfBytes = captured.reduce(
      (total, metrics, index) =>
        total +
        metrics.published
          .slice(published[index] ?? 0)
          .reduce((sum, doc) => sum + JSON.stringify(doc).length + 1, 0),
      0,
    );
    return { seconds, dynamodb: meter.take(), aws: fake.take(), durationsMs: lambdas.take(), emfBytes };
  };

  /** Quiet: no message anywhere and no invocation running, twice the scheduler's batching window in a row. */
  const quiet = async () => {
    const windowMs = (defaults.eventSources.scheduler?.maxBatchingWindowSeconds ?? 1) * 1000;
    let since = performance.now();
    for (;;) {
      const stats = await Promise.all(QUEUE_NAMES.map((name) => memoryQueues.queues[name].stats()));
      const busy = lambdas.inFlight > 0 || stats.some((s) => s.visible + s.inFlight + s.delayed > 0);
      if (busy) since = performance.now();
      else if (performance.now() - since > 2 * windowMs + 200) return;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  };

  const runAll = async (runIds: string[]) => {
    const keys: DagRunKey[] = [];
    await Promise.all(
      runIds.map(async (runId) => {
        const response = await apiFetch(`${API_URL}/api/v2/dags/${options.dagId}/dagRuns`, {
          method: 'POST',
          headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' },
          body: JSON.stringify({ dag_run_id: runId }),
        });
        if (response.status !== 201)
          throw new Error(`bench/aws: trigger ${runId}: ${response.status} ${await response.text()}`);
        keys.push({ dagId: options.dagId, runId });
      }),
    );
    const deadline = Date.now() + 300_000;
    for (const key of keys) {
      for (;;) {
        const run = await unmeteredStore.getDagRun(key);
        if (run?.state === 'success') break;
        if (run?.state === 'failed') throw new Error(`bench/aws: run ${key.runId} failed`);
        if (Date.now() > deadline)
          throw new Error(`bench/aws: run ${key.runId} still ${run?.state} after 300 s`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  };

  try {
    await runAll(['aws_warmup']);
    await quiet();
    // Run ids as the API makes them (`manual__<logical date>`): holder ids in pool items include them.
    const runIds = Array.from(
      { length: options.runs },
      (_, index) => `manual__${new Date(Date.UTC(2026, 11, 3, 15, index)).toISOString()}`,
    );
    const finishedByTicks = tickDeps.metrics.total('dag_runs.success');
    const runs = await phase(() => runAll(runIds));
    const runsFinishedByTick = tickDeps.metrics.total('dag_runs.success') - finishedByTicks;
    for (const runId of runIds) {
      const snapshot = await unmeteredStore.getRunSnapshot({ dagId: options.dagId, runId });
      const notDone = (snapshot?.taskInstances ?? []).filter((ti) => ti.state !== 'success');
      if (snapshot?.taskInstances.length !== options.tasksPerRun || notDone.length > 0)
        warnings.push(
          `run ${runId}: ${snapshot?.taskInstances.length} TIs, ${notDone.length} not successful`,
        );
    }
    await stopTicking();
    // One tick alone, with nothing to do: what every period costs at idle.
    const idleTick = await phase(async () => {
      await tick();
    });
    for (const name of QUEUE_NAMES) {
      const dead = await memoryQueues.deadLetters[name].stats();
      if (dead.visible + dead.inFlight + dead.delayed > 0) warnings.push(`dead letters on ${name}`);
    }
    warnings.push(...(await indexedItemsOutsideRuns(imageClient)));
    return {
      options,
      eventSources: defaults.eventSources,
      tasks: options.runs * options.tasksPerRun,
      runs,
      tick: idleTick,
      runsFinishedByTick,
      batchItemFailures: sources.batchItemFailures,
      warnings,
    };
  } finally {
    await stopTicking();
    await sources.stop();
    memoryQueues.close();
    for (const client of clients) client.destroy();
    await server.close();
  }
}

/** The meter reads index entries aside only for run items: any other item with index keys is named here. */
async function indexedItemsOutsideRuns(client: ReturnType<typeof createDynamoClient>): Promise<string[]> {
  const found = new Set<string>();
  let start: Record<string, unknown> | undefined;
  do {
    const page = await client.send(
      new ScanCommand({ TableName: TABLE, ...(start ? { ExclusiveStartKey: start as never } : {}) }),
    );
    for (const item of page.Items ?? []) {
      if ((item[GSI1_PARTITION_KEY] || item[GSI2_PARTITION_KEY]) && item.sk?.S !== RUN_SORT_KEY)
        found.add(item.sk?.S?.split('#')[0] ?? '?');
    }
    start = page.LastEvaluatedKey;
  } while (start);
  return [...found].map(
    (kind) => `items of kind ${kind} carry index keys: their index writes were not counted`,
  );
}

function registrationEvent(serializedDags: string): CloudFormationCustomResourceCreateEvent {
  const serviceToken = 'arn:aws:lambda:us-east-1:123456789012:function:updraft-register-dags';
  return {
    RequestType: 'Create',
    ServiceToken: serviceToken,
    ResponseURL: 'https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/signed',
    StackId: 'arn:aws:cloudformation:us-east-1:123456789012:stack/updraft/1',
    RequestId: 'request-1',
    LogicalResourceId: 'DagRegistration',
    ResourceType: 'Custom::UpdraftDagRegistration',
    ResourceProperties: { ServiceToken: serviceToken, SerializedDags: serializedDags },
  };
}
