import { randomUUID } from 'node:crypto';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { Tracer } from '@aws-lambda-powertools/tracer';
import type {
  APIGatewayProxyEventV2,
  APIGatewayProxyStructuredResultV2,
  Context,
  ScheduledEvent,
  SQSBatchResponse,
  SQSEvent,
  SQSRecord,
} from 'aws-lambda';
import type { Observability } from '#aws/handler-observability.ts';
import type { SchedulingRequest } from '#contracts/messages.ts';
import type { DagRunKey, TaskInstanceKey } from '#core/models.ts';
import type { WakeTimers } from '#engine/ports.ts';
import type { LogStore } from '#logs/port.ts';
import type { InMemoryQueue } from '#queue/memory.ts';
import type { Queue, QueueName, ReceivedMessage } from '#queue/port.ts';

/**
 * Lambda as the handlers meet it, in-process: the events AWS sends (SQS batches, the EventBridge
 * tick, API Gateway HTTP API v2 and function URL requests), a context, and a driver that plays the
 * SQS event source mappings over in-memory queues (receive a batch, invoke, delete what the
 * partial batch response does not name).
 */

const REGION = 'us-east-1';
const ACCOUNT = '123456789012';

export type LambdaHandler<E, R> = (event: E, context: Context) => Promise<R>;

/** A context whose deadline is `timeoutMs` from now (a worker hands tries back before it). */
export function lambdaContext(functionName: string, timeoutMs = 900_000): Context {
  const deadline = Date.now() + timeoutMs;
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${REGION}:${ACCOUNT}:function:${functionName}`,
    memoryLimitInMB: '1024',
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: `2026/12/02/[$LATEST]${randomUUID().replaceAll('-', '')}`,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

/** One SQS record as the event source mapping delivers it. */
export function sqsRecord(queue: QueueName, message: ReceivedMessage): SQSRecord {
  const now = String(Date.now());
  return {
    messageId: message.messageId,
    receiptHandle: message.receiptHandle,
    body: message.body,
    attributes: {
      ApproximateReceiveCount: String(message.receiveCount),
      SentTimestamp: now,
      SenderId: 'AROAEXAMPLE',
      ApproximateFirstReceiveTimestamp: now,
    },
    messageAttributes: {},
    md5OfBody: 'ignored-by-the-handlers',
    eventSource: 'aws:sqs',
    eventSourceARN: `arn:aws:sqs:${REGION}:${ACCOUNT}:updraft-${queue}`,
    awsRegion: REGION,
  };
}

export function sqsEvent(queue: QueueName, messages: readonly ReceivedMessage[]): SQSEvent {
  return { Records: messages.map((message) => sqsRecord(queue, message)) };
}

/** What the EventBridge rule of the periodic tick sends. */
export function scheduledEvent(at = new Date()): ScheduledEvent {
  return {
    version: '0',
    id: randomUUID(),
    'detail-type': 'Scheduled Event',
    source: 'aws.events',
    account: ACCOUNT,
    time: at.toISOString(),
    region: REGION,
    resources: [`arn:aws:events:${REGION}:${ACCOUNT}:rule/updraft-scheduler-tick`],
    detail: {},
  };
}

/** The IAM role session that signed a function URL call (the function URL verified the signature). */
export interface IamCaller {
  roleId: string;
  roleName: string;
  session: string;
}

export const WORKER_CALLER: IamCaller = {
  roleId: 'AROAEXAMPLE',
  roleName: 'updraft-worker',
  session: 'updraft-worker',
};

/**
 * A request as API Gateway's HTTP API (payload 2.0) or a function URL delivers it. Both use the
 * v2 shape; a function URL with IAM auth adds the caller's identity to the request context.
 */
export async function httpEventOf(
  request: Request,
  via: 'http-api' | 'function-url',
  caller: IamCaller = WORKER_CALLER,
): Promise<APIGatewayProxyEventV2> {
  const url = new URL(request.url);
  const headers: Record<string, string> = {};
  request.headers.forEach((value, name) => {
    headers[name] = value;
  });
  headers.host = url.host;
  const body = request.body === null ? undefined : await request.text();
  const query: Record<string, string> = {};
  url.searchParams.forEach((value, name) => {
    query[name] = name in query ? `${query[name]},${value}` : value;
  });
  const now = Date.now();
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    headers,
    ...(Object.keys(query).length > 0 ? { queryStringParameters: query } : {}),
    requestContext: {
      accountId: via === 'function-url' ? 'anonymous' : ACCOUNT,
      apiId: url.hostname.split('.')[0] ?? 'api',
      domainName: url.host,
      domainPrefix: url.hostname.split('.')[0] ?? 'api',
      http: {
        method: request.method,
        path: url.pathname,
        protocol: 'HTTP/1.1',
        sourceIp: '127.0.0.1',
        userAgent: headers['user-agent'] ?? 'test',
      },
      requestId: randomUUID(),
      routeKey: '$default',
      stage: '$default',
      time: new Date(now).toUTCString(),
      timeEpoch: now,
      ...(via === 'function-url'
        ? {
            authorizer: {
              iam: {
                accessKey: 'ASIAEXAMPLE',
                accountId: ACCOUNT,
                callerId: `${caller.roleId}:${caller.session}`,
                cognitoIdentity: null,
                principalOrgId: null,
                userArn: `arn:aws:sts::${ACCOUNT}:assumed-role/${caller.roleName}/${caller.session}`,
                userId: `${caller.roleId}:${caller.session}`,
              },
            },
          }
        : {}),
    },
    ...(body === undefined ? {} : { body }),
    isBase64Encoded: false,
  } as APIGatewayProxyEventV2;
}

/** The handler's answer as the client receives it. */
export function responseOf(result: APIGatewayProxyStructuredResultV2): Response {
  const status = result.statusCode ?? 200;
  const body =
    result.body === undefined
      ? null
      : result.isBase64Encoded
        ? Buffer.from(result.body, 'base64')
        : result.body;
  const headers = new Headers();
  for (const [name, value] of Object.entries(result.headers ?? {})) headers.set(name, String(value));
  return new Response(status === 204 || status === 304 ? null : body, { status, headers });
}

/** A `fetch` served by an HTTP handler: the request becomes its event, its result the response. */
export function fetchThrough(
  handler: LambdaHandler<APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2>,
  via: 'http-api' | 'function-url',
  functionName: string,
  caller?: IamCaller,
): typeof fetch {
  const served = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const request = new Request(input, init);
    return responseOf(await handler(await httpEventOf(request, via, caller), lambdaContext(functionName)));
  };
  return served as typeof fetch;
}

/**
 * Powertools utilities that write nothing: a silent logger, a disabled tracer, and metrics whose
 * EMF documents are kept in `published` instead of printed.
 */
export class CapturedMetrics extends Metrics {
  readonly published: ReturnType<Metrics['serializeMetrics']>[] = [];

  constructor() {
    super({ namespace: 'Updraft', serviceName: 'test' });
  }

  override publishStoredMetrics(): this {
    if (this.hasStoredMetrics()) this.published.push(this.serializeMetrics());
    this.clearMetrics();
    return this;
  }

  override captureColdStartMetric(): void {}

  /** Sum of every published value of a metric. */
  total(name: string): number {
    let sum = 0;
    for (const document of this.published) {
      const value = (document as unknown as Record<string, unknown>)[name];
      if (typeof value === 'number') sum += value;
      else if (Array.isArray(value)) sum += value.reduce((a: number, b: number) => a + b, 0);
    }
    return sum;
  }
}

export function quietObservability(): Observability & { metrics: CapturedMetrics } {
  return {
    logger: new Logger({ logLevel: 'SILENT' }),
    metrics: new CapturedMetrics(),
    tracer: new Tracer({ enabled: false }),
  };
}

/**
 * Wake timers over the in-memory scheduler queue: a delayed scheduling request, as the AWS adapter
 * sends for waits up to SQS's 15 minutes (the tests' retry delays are seconds).
 */
export class QueueWakeTimers implements WakeTimers {
  readonly calls: { run: DagRunKey; atMs: number }[] = [];
  readonly #queue: Queue;

  constructor(queue: Queue) {
    this.#queue = queue;
  }

  async wakeAt(run: DagRunKey, atMs: number): Promise<void> {
    this.calls.push({ run: { dagId: run.dagId, runId: run.runId }, atMs });
    const body: SchedulingRequest = { type: 'schedule_run', dag_id: run.dagId, run_id: run.runId };
    const delaySeconds = Math.min(900, Math.max(0, Math.ceil((atMs - Date.now()) / 1000)));
    const { failed } = await this.#queue.send([{ body: JSON.stringify(body), delaySeconds }]);
    if (failed.length > 0) throw new Error(`The wake of ${run.dagId}/${run.runId} was not sent`);
  }
}

/** Task logs in memory, by TI and try, read back in chunk id order. */
export class MemoryLogStore implements LogStore {
  readonly #chunks = new Map<string, Map<string, string>>();

  async appendChunk(key: TaskInstanceKey, tryNumber: number, chunkId: string, text: string): Promise<void> {
    const id = JSON.stringify([key.dagId, key.runId, key.taskId, key.mapIndex, tryNumber]);
    const chunks = this.#chunks.get(id) ?? new Map<string, string>();
    chunks.set(chunkId, text);
    this.#chunks.set(id, chunks);
  }

  async read(key: TaskInstanceKey, tryNumber: number): Promise<string | undefined> {
    const chunks = this.#chunks.get(
      JSON.stringify([key.dagId, key.runId, key.taskId, key.mapIndex, tryNumber]),
    );
    if (!chunks) return undefined;
    return [...chunks.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, text]) => text)
      .join('');
  }
}

/** One invocation of an SQS-triggered handler, as the driver saw it. */
export interface Invocation {
  queue: QueueName;
  records: { messageId: string; receiveCount: number; body: string }[];
  failed: string[];
  /** Set when the handler threw: the whole batch comes back, as Lambda retries it. */
  error?: unknown;
}

export interface MappingOptions {
  queue: InMemoryQueue;
  /** One per concurrent poller: each is its own function instance, as Lambda scales out. */
  handlers: LambdaHandler<SQSEvent, SQSBatchResponse>[];
  batchSize?: number;
  functionName?: string;
}

/**
 * The SQS event source mappings: per queue, pollers that receive a batch, invoke their handler
 * with the SQS event, and delete the records the partial batch response does not name. A failed
 * record is made visible again at once rather than after its visibility timeout (time compressed,
 * same order of events). `duplicate` picks records to deliver twice: their first successful
 * delivery is not deleted (as when SQS loses a delete), so they arrive again with a higher count.
 */
export class EventSourceMappings {
  readonly invocations: Invocation[] = [];
  readonly #mappings: MappingOptions[];
  readonly #duplicate: (queue: QueueName, message: ReceivedMessage) => boolean;
  readonly #duplicated = new Set<string>();
  readonly #stop = new AbortController();
  #loops: Promise<void>[] = [];

  constructor(
    mappings: MappingOptions[],
    options: { duplicate?: (queue: QueueName, message: ReceivedMessage) => boolean } = {},
  ) {
    this.#mappings = mappings;
    this.#duplicate = options.duplicate ?? (() => false);
  }

  start(): void {
    for (const mapping of this.#mappings) {
      for (const handler of mapping.handlers) this.#loops.push(this.#poll(mapping, handler));
    }
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await Promise.all(this.#loops);
    this.#loops = [];
  }

  /** Message ids delivered twice on purpose. */
  get duplicated(): ReadonlySet<string> {
    return this.#duplicated;
  }

  async #poll(mapping: MappingOptions, handler: LambdaHandler<SQSEvent, SQSBatchResponse>): Promise<void> {
    const { queue } = mapping;
    while (!this.#stop.signal.aborted) {
      const messages = await queue.receive({
        maxMessages: mapping.batchSize ?? 10,
        waitTimeMs: 200,
        // Longer than any invocation here: a record is never redelivered while it is being handled.
        visibilityTimeoutSeconds: 120,
        signal: this.#stop.signal,
      });
      if (messages.length === 0) continue;
      const invocation: Invocation = {
        queue: queue.name,
        records: messages.map(({ messageId, receiveCount, body }) => ({ messageId, receiveCount, body })),
        failed: [],
      };
      this.invocations.push(invocation);
      let failed: Set<string>;
      try {
        const response = await handler(
          sqsEvent(queue.name, messages),
          lambdaContext(mapping.functionName ?? `updraft-${queue.name}`),
        );
        failed = new Set(response.batchItemFailures.map((failure) => failure.itemIdentifier));
      } catch (error) {
        invocation.error = error;
        failed = new Set(messages.map((message) => message.messageId));
      }
      invocation.failed = [...failed];
      const done: string[] = [];
      for (const message of messages) {
        if (failed.has(message.messageId)) {
          await queue.changeVisibility(message.receiptHandle, 0);
        } else if (!this.#duplicated.has(message.messageId) && this.#duplicate(queue.name, message)) {
          this.#duplicated.add(message.messageId);
          await queue.changeVisibility(message.receiptHandle, 0);
        } else {
          done.push(message.receiptHandle);
        }
      }
      await queue.delete(done);
    }
  }
}

/** Polls `check` until it returns a value, or fails after `timeoutMs` naming `what`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
