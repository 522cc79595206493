import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { DagRun, TaskInstance, TaskInstanceKey } from '#core/models.ts';
import { newTaskInstance } from '#core/models.ts';
import type { SerializedDag } from '#core/serialized-dag.ts';
import { DynamoStore } from '#store/dynamodb.ts';
import { createDynamoClient, ensureTable, startEmbeddedDynamo, toDocumentClient } from '#store/embedded.ts';
import type { DagRecord } from '#store/port.ts';
import { task } from '../unit/helpers/factories.ts';

/** One in-memory dynalite per test file; every `newStore()` gets a table of its own. */
export interface StoreHarness {
  endpoint: string;
  client: DynamoDBClient;
  documentClient: DynamoDBDocumentClient;
  newStore(): Promise<DynamoStore>;
  /** A fresh table's name, for stores built over other clients (`storeOn`). */
  newTable(): Promise<string>;
  storeOn(tableName: string, documentClient?: DynamoDBDocumentClient): DynamoStore;
  close(): Promise<void>;
}

export async function startStoreHarness(): Promise<StoreHarness> {
  const server = await startEmbeddedDynamo();
  const client = createDynamoClient({ endpoint: server.endpoint, embedded: true });
  const documentClient = toDocumentClient(client);
  let tables = 0;
  const newTable = async () => {
    const tableName = `updraft-test-${++tables}`;
    await ensureTable(client, tableName);
    return tableName;
  };
  return {
    endpoint: server.endpoint,
    client,
    documentClient,
    newTable,
    storeOn: (tableName, other = documentClient) => new DynamoStore({ client: other, tableName }),
    async newStore() {
      return new DynamoStore({ client: documentClient, tableName: await newTable() });
    },
    async close() {
      client.destroy();
      await server.close();
    },
  };
}

export function dagRecord(dagId: string, overrides: Partial<DagRecord> = {}): DagRecord {
  return {
    dagId,
    fileloc: `dags/${dagId}.ts`,
    versionHash: 'hash-1',
    isPaused: false,
    isActive: true,
    description: null,
    tags: ['team-a', 'nightly'],
    scheduleExpression: 'rate(1 hour)',
    nextRunAt: '2026-01-01T01:00:00.000Z',
    lastParsedAt: '2026-01-01T00:00:00.000Z',
    runCount: 0,
    revision: 0,
    ...overrides,
  };
}

export function dagRun(dagId: string, runId: string, overrides: Partial<DagRun> = {}): DagRun {
  return {
    dagId,
    runId,
    runType: 'manual',
    state: 'queued',
    logicalDate: '2026-01-01T00:00:00.000Z',
    dataIntervalStart: null,
    dataIntervalEnd: null,
    conf: { region: 'eu-west-1', nested: { depth: 2, list: [1, 'two', null] } },
    dagVersion: 'hash-1',
    queuedAt: '2026-01-01T00:00:01.000Z',
    startDate: null,
    endDate: null,
    clearCount: 0,
    revision: 0,
    ...overrides,
  };
}

export function taskInstance(key: TaskInstanceKey, overrides: Partial<TaskInstance> = {}): TaskInstance {
  const ti = newTaskInstance(key, {
    operator: 'task',
    pool: 'default_pool',
    poolSlots: 1,
    priorityWeight: 1,
    queue: 'default',
    retries: 2,
  });
  return { ...ti, ...overrides };
}

export function serializedDag(dagId: string, taskIds: string[]): SerializedDag {
  return {
    formatVersion: 1,
    dagId,
    description: 'a test DAG',
    fileloc: `dags/${dagId}.ts`,
    schedule: { type: 'cron', expression: '0 * * * *', timezone: 'UTC' },
    startDate: '2026-01-01T00:00:00.000Z',
    endDate: null,
    catchup: false,
    maxActiveRuns: 16,
    maxActiveTasks: 32,
    params: { threshold: 3 },
    tags: ['example'],
    tasks: taskIds.map((taskId, index) =>
      task(taskId, {
        upstream: index === 0 ? [] : [taskIds[index - 1] as string],
        retries: 1,
        retryDelayMs: 1000,
      }),
    ),
  };
}
