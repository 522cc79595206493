import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutCommand } from '@aws-sdk/lib-dynamodb';
import { createApiStack, createFreshEngineApi } from '#api/stack.ts';
import { type Settings, settingsSchema } from '#config/settings.ts';
import type { ErrorBody } from '#contracts/common.ts';
import { encodeTaskInstanceId, type StartedTask } from '#contracts/execution-api.ts';
import type {
  DagCollection,
  DagDetail,
  DagRun,
  DagRunCollection,
  TaskInstance,
  TaskInstanceCollection,
} from '#contracts/public-api.ts';
import type { TaskInstanceKey } from '#core/models.ts';
import type { CallbackService } from '#engine/callbacks.ts';
import { type ParsedDagsFolder, registerDags } from '#engine/dag-registry.ts';
import { silentLogger } from '#engine/logger.ts';
import type { ExecutionKeyring, TaskTokenSigner } from '#engine/tokens.ts';
import { closeServer, listenOn, localUrlOf } from '#http/server.ts';
import { FileLogStore } from '#logs/file-store.ts';
import { MetricsRegistry } from '#metrics/registry.ts';
import { createInMemoryQueues } from '#queue/memory.ts';
import type { Queues } from '#queue/port.ts';
import type { Dag } from '#sdk/dag.ts';
import { versionDag } from '#sdk/serialize.ts';
import { DynamoStore } from '#store/dynamodb.ts';
import { createDynamoClient, ensureTable, startEmbeddedDynamo, toDocumentClient } from '#store/embedded.ts';

export const API_TOKEN = 'test-api-token-0123456789abcdef';
/** The keyring the harness signs task tokens with unless a test passes its own. */
export const EXECUTION_KEYS: ExecutionKeyring = { k1: 'test-execution-secret-0123456789abcdef' };

/** Limits small enough that a test can exceed them with a few hundred bytes. */
export const TEST_LIMITS = {
  confMaxBytes: 256,
  xcomMaxBytes: 256,
  requestMaxBytes: 8192,
  logChunkMaxBytes: 1024,
  /** Four chunks per try. */
  logMaxBytes: 4096,
  executionTokenTtlSeconds: 3600,
} as const;

export type { ErrorBody };
export type DagCollectionBody = DagCollection;
export type DagDetailBody = DagDetail;
export type DagRunBody = DagRun;
export type DagRunCollectionBody = DagRunCollection;
export type TaskInstanceBody = TaskInstance;
export type TaskInstanceCollectionBody = TaskInstanceCollection;
export type StartedTaskBody = StartedTask;

/** A response; `T` is the wire shape the test expects (it is not checked at run time). */
export interface ApiResponse<T = Record<string, unknown>> {
  status: number;
  body: T;
  headers: Headers;
}

/** A clock the tests move by hand, so durations, heartbeats and retry times are exact. */
export interface ManualClock {
  nowMs: number;
  advance(ms: number): void;
  iso(): string;
}

export interface ApiHarness {
  baseUrl: string;
  store: DynamoStore;
  tokens: TaskTokenSigner;
  /** The API's callback service (the tick calls its `sweep`). */
  callbacks: CallbackService;
  metrics: MetricsRegistry;
  queues: Queues;
  settings: Settings;
  clock: ManualClock;
  /**
   * A request over real HTTP. `token` undefined sends the public API token, null sends none.
   * An object body is sent as JSON; a string body is sent as is (with a JSON content type).
   */
  request<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
    token?: string | null,
    headers?: Record<string, string>,
  ): Promise<ApiResponse<T>>;
  /** Registers DAGs (and import errors) as the DAG processor would after parsing a folder. */
  registerDags(dags: Dag[], errors?: ParsedDagsFolder['errors']): Promise<void>;
  /**
   * Does what the scheduler does when it queues a TI: the next try (from whatever state and try
   * it is in now) in `queued`, and the token of its workload.
   */
  queueTaskInstance(key: TaskInstanceKey): Promise<string>;
  /** Puts an item as it is, bypassing the store (to set up a state a crash would leave). */
  rawPut(item: Record<string, unknown>): Promise<void>;
  close(): Promise<void>;
}

/**
 * The API wired exactly like `startStandalone` wires it, on 127.0.0.1 port 0, but without the
 * scheduler loop and the worker pool: tests drive the state themselves.
 */
export async function startApiHarness(
  overrides: Partial<Settings> = {},
  options: {
    executionKeys?: ExecutionKeyring;
    /** Serve every request with a fresh engine instance (`createFreshEngineApi`), as the Lambda shape does. */
    freshEngine?: boolean;
  } = {},
): Promise<ApiHarness> {
  const home = await mkdtemp(join(tmpdir(), 'updraft-api-'));
  const settings = settingsSchema.parse({ home, port: 0, ...TEST_LIMITS, ...overrides });
  const dynamo = await startEmbeddedDynamo();
  const dynamoClient = createDynamoClient({ endpoint: dynamo.endpoint });
  await ensureTable(dynamoClient, 'updraft');
  const store = new DynamoStore({ client: toDocumentClient(dynamoClient), tableName: 'updraft' });

  const { queues, close: closeQueues } = createInMemoryQueues(settings);
  const metrics = new MetricsRegistry();
  const clock: ManualClock = {
    nowMs: Date.now(),
    advance(ms) {
      this.nowMs += ms;
    },
    iso() {
      return new Date(this.nowMs).toISOString();
    },
  };
  const now = () => clock.nowMs;
  const stackDeps = {
    store,
    queues,
    logs: new FileLogStore(join(home, 'logs')),
    metrics,
    settings,
    apiToken: API_TOKEN,
    executionKeys: options.executionKeys ?? EXECUTION_KEYS,
    log: silentLogger,
    now,
  };
  const { api, tokens, notifier, callbacks } = createApiStack(stackDeps);
  const serve = options.freshEngine ? createFreshEngineApi(stackDeps).fetch : api.fetch;
  const server = await listenOn(serve, 0, '127.0.0.1');
  const baseUrl = localUrlOf(server);

  return {
    baseUrl,
    store,
    tokens,
    callbacks,
    metrics,
    queues,
    settings,
    clock,
    async request<T>(
      method: string,
      path: string,
      body?: unknown,
      token?: string | null,
      headers: Record<string, string> = {},
    ): Promise<ApiResponse<T>> {
      const sent: Record<string, string> = { ...headers };
      const bearer = token === undefined ? API_TOKEN : token;
      if (bearer !== null) sent.authorization = `Bearer ${bearer}`;
      let payload: string | undefined;
      if (body !== undefined) {
        sent['content-type'] = 'application/json';
        payload = typeof body === 'string' ? body : JSON.stringify(body);
      }
      const response = await fetch(`${baseUrl}${path}`, { method, headers: sent, body: payload });
      const text = await response.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // Not JSON: the test sees the raw text.
      }
      return { status: response.status, body: parsed as T, headers: response.headers };
    },
    async registerDags(list, errors = []) {
      await registerDags(
        { store, log: silentLogger, now, pausedAtCreation: false },
        { dags: list.map((built) => versionDag(built, `dags/${built.dagId}.ts`)), errors },
      );
    },
    async queueTaskInstance(key) {
      const current = await store.getTaskInstance(key);
      if (!current) throw new Error(`No task instance ${key.dagId}/${key.runId}/${key.taskId}`);
      const tryNumber = current.tryNumber + 1;
      await store.transitionTaskInstance(
        key,
        { state: current.state, tryNumber: current.tryNumber },
        { state: 'queued', tryNumber, queuedAt: clock.iso() },
      );
      return tokens.issue({ ...key, tryNumber }, clock.nowMs);
    },
    async rawPut(item) {
      await toDocumentClient(dynamoClient).send(new PutCommand({ TableName: 'updraft', Item: item }));
    },
    async close() {
      await notifier.drain();
      closeQueues();
      await closeServer(server);
      dynamoClient.destroy();
      await dynamo.close();
      await rm(home, { recursive: true, force: true });
    },
  };
}

/** The key of an unmapped task instance. */
export function tiKey(dagId: string, runId: string, taskId: string): TaskInstanceKey {
  return { dagId, runId, taskId, mapIndex: -1 };
}

/** Execution API path of a task instance: `/execution/task-instances/<id>/<action>`. */
export function tiPath(key: TaskInstanceKey, action: 'run' | 'heartbeat' | 'state'): string {
  return `/execution/task-instances/${encodeTaskInstanceId(key)}/${action}`;
}

/** Public API path of a run (ids escaped). */
export function runPath(dagId: string, runId: string): string {
  return `/api/v2/dags/${encodeURIComponent(dagId)}/dagRuns/${encodeURIComponent(runId)}`;
}

/** What a worker sends to start a TI. */
export const WORKER = { hostname: 'test-host', worker_id: 'worker-1' } as const;
