import type {
  APIGatewayProxyEventV2,
  APIGatewayProxyStructuredResultV2,
  CloudFormationCustomResourceCreateEvent,
  SQSBatchResponse,
  SQSEvent,
} from 'aws-lambda';
import type { HandlerDeps } from '#aws/handler-deps.ts';
import type { Settings } from '#config/settings.ts';
import type { TaskInstance } from '#contracts/public-api.ts';
import { createInMemoryQueues, type InMemoryQueues } from '#queue/memory.ts';
import type { QueueName, ReceivedMessage } from '#queue/port.ts';
import type { Dag } from '#sdk/dag.ts';
import { versionDag } from '#sdk/serialize.ts';
import { DynamoStore } from '#store/dynamodb.ts';
import { createDynamoClient, ensureTable, startEmbeddedDynamo, toDocumentClient } from '#store/embedded.ts';
import { makeHandler as makeApiHandler } from '../../functions/api.ts';
import { makeHandler as makeExecutionApiHandler } from '../../functions/execution-api.ts';
import { makeHandler as makeRegisterHandler } from '../../functions/register-dags.ts';
import { makeHandler as makeSchedulerHandler } from '../../functions/scheduler.ts';
import { makeHandler as makeWorkerHandler } from '../../functions/worker.ts';
import { sendNotingStarts } from './execution-calls.ts';
import {
  fetchThrough,
  type LambdaHandler,
  lambdaContext,
  MemoryLogStore,
  QueueWakeTimers,
  quietObservability,
  sqsEvent,
} from './lambda-events.ts';

/**
 * A deployment of the real handlers of functions/, in-process over the embedded DynamoDB and the
 * in-memory queues, for scenarios a test steps through one invocation at a time: register the
 * given DAGs, trigger through the public API, drain the scheduler queue, invoke a worker with a
 * chosen time left. (`handlers-local.test.ts` runs the bundled DAGs with the event source mappings
 * running by themselves.)
 */

export const WORLD_API_URL = 'https://world.execute-api.us-east-1.amazonaws.com';
export const WORLD_EXECUTION_API_URL = 'https://world.lambda-url.us-east-1.on.aws';
export const WORLD_API_TOKEN = 'handler-world-api-token-0123456789';
const WORLD_KEYS = { default: 'handler-world-signing-secret-0123456789abcdef' };
const FILELOC = 'world_dags.ts';
const TASK_QUEUES: QueueName[] = ['callbacks', 'tasks_high', 'tasks_default', 'tasks_low'];

type HttpHandler = LambdaHandler<APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2>;
type SqsHandler = LambdaHandler<SQSEvent, SQSBatchResponse>;

export interface HandlerWorld {
  settings: Settings;
  store: DynamoStore;
  queues: InMemoryQueues;
  logs: MemoryLogStore;
  api<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  taskInstance(dagId: string, runId: string, taskId: string): Promise<TaskInstance>;
  /** The scheduler queue's event source mapping, until the queue has nothing visible. */
  drainScheduler(): Promise<void>;
  /** The next workload on any worker queue, as one worker event source mapping receives it. */
  nextWorkload(): Promise<{ queue: QueueName; message: ReceivedMessage } | undefined>;
  /** One worker invocation with `timeoutMs` left, and what the event source mapping does after it. */
  invokeWorker(workload: { queue: QueueName; message: ReceivedMessage }, timeoutMs: number): Promise<void>;
  /** Every start the Execution API accepted: `task#try`. */
  starts: string[];
  close(): Promise<void>;
}

export async function startHandlerWorld(settings: Settings, dags: readonly Dag[]): Promise<HandlerWorld> {
  const server = await startEmbeddedDynamo();
  const client = createDynamoClient({ endpoint: server.endpoint, embedded: true });
  await ensureTable(client, 'updraft');
  const store = new DynamoStore({ client: toDocumentClient(client), tableName: 'updraft' });
  const queues = createInMemoryQueues(settings);
  const logs = new MemoryLogStore();
  const timers = new QueueWakeTimers(queues.queues.scheduler);
  const common = (): Partial<HandlerDeps> & ReturnType<typeof quietObservability> => ({
    ...quietObservability(),
    settings,
    now: Date.now,
    store,
    queues: queues.queues,
    timers,
    logs,
    apiToken: async () => WORLD_API_TOKEN,
    executionKeys: async () => WORLD_KEYS,
  });

  const register = makeRegisterHandler({
    ...common(),
    responseFetch: (async () => new Response('', { status: 200 })) as unknown as typeof fetch,
  });
  await register(registrationEvent(dags), lambdaContext('updraft-register-dags'));

  const apiFetch = fetchThrough(makeApiHandler(common()) as HttpHandler, 'http-api', 'updraft-api');
  const starts: string[] = [];
  const executionApi = fetchThrough(
    makeExecutionApiHandler(common()) as HttpHandler,
    'function-url',
    'updraft-execution-api',
  );
  const executionFetch = (async (input: string | URL | Request, init?: RequestInit) => {
    const request = new Request(input, init);
    const { response, started } = await sendNotingStarts(request, executionApi);
    for (const { key, tryNumber } of started) starts.push(`${key.taskId}#${tryNumber}`);
    return response;
  }) as typeof fetch;
  const byId = Object.fromEntries(dags.map((d) => [d.dagId, d]));
  const scheduler = makeSchedulerHandler(common()) as unknown as SqsHandler;
  const worker = makeWorkerHandler({
    ...common(),
    executionApiUrl: WORLD_EXECUTION_API_URL,
    executionFetch,
    loadDagModule: async (fileloc) => {
      if (fileloc !== FILELOC) throw new Error(`${fileloc} is not bundled`);
      return byId;
    },
  }) as unknown as SqsHandler;

  const api = async <T>(method: string, path: string, body?: unknown) => {
    const response = await apiFetch(`${WORLD_API_URL}${path}`, {
      method,
      headers: { authorization: `Bearer ${WORLD_API_TOKEN}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.status, body: (await response.json()) as T };
  };

  return {
    settings,
    store,
    queues,
    logs,
    api,
    async taskInstance(dagId, runId, taskId) {
      const path = `/api/v2/dags/${dagId}/dagRuns/${encodeURIComponent(runId)}/taskInstances/${taskId}`;
      return (await api<TaskInstance>('GET', path)).body;
    },
    async drainScheduler() {
      const queue = queues.queues.scheduler;
      for (let batch = 0; batch < 50; batch += 1) {
        const messages = await queue.receive({
          maxMessages: 10,
          waitTimeMs: 0,
          visibilityTimeoutSeconds: 120,
        });
        if (messages.length === 0) return;
        const response = await scheduler(
          sqsEvent('scheduler', messages),
          lambdaContext('updraft-scheduler', 60_000),
        );
        const failed = new Set(response.batchItemFailures.map((failure) => failure.itemIdentifier));
        await queue.delete(messages.filter((m) => !failed.has(m.messageId)).map((m) => m.receiptHandle));
        for (const message of messages) {
          if (failed.has(message.messageId)) await queue.changeVisibility(message.receiptHandle, 0);
        }
      }
    },
    async nextWorkload() {
      for (const name of TASK_QUEUES) {
        const [message] = await queues.queues[name].receive({
          maxMessages: 1,
          waitTimeMs: 0,
          visibilityTimeoutSeconds: 120,
        });
        if (message) return { queue: name, message };
      }
      return undefined;
    },
    async invokeWorker(workload, timeoutMs) {
      const queue = queues.queues[workload.queue];
      const response = await worker(
        sqsEvent(workload.queue, [workload.message]),
        lambdaContext('updraft-worker', timeoutMs),
      );
      if (response.batchItemFailures.length === 0) await queue.delete([workload.message.receiptHandle]);
      else await queue.changeVisibility(workload.message.receiptHandle, 0);
    },
    starts,
    async close() {
      queues.close();
      client.destroy();
      await server.close();
    },
  };
}

function registrationEvent(dags: readonly Dag[]): CloudFormationCustomResourceCreateEvent {
  const serialized = { dags: dags.map((d) => versionDag(d, FILELOC)), errors: [] };
  return {
    RequestType: 'Create',
    ServiceToken: 'arn:aws:lambda:us-east-1:123456789012:function:updraft-register-dags',
    ResponseURL: 'https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/signed',
    StackId: 'arn:aws:cloudformation:us-east-1:123456789012:stack/updraft/1',
    RequestId: 'world-1',
    LogicalResourceId: 'DagRegistration',
    ResourceType: 'Custom::UpdraftDagRegistration',
    ResourceProperties: {
      ServiceToken: 'arn:aws:lambda:us-east-1:123456789012:function:updraft-register-dags',
      SerializedDags: JSON.stringify(serialized),
    },
  };
}
