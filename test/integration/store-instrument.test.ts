import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoStore } from '#store/dynamodb.ts';
import { ensureTable } from '#store/embedded.ts';
import { instrumentClient, RequestCounter } from '#store/instrument.ts';
import { dagRecord, dagRun, type StoreHarness, startStoreHarness, taskInstance } from './store-fixtures.ts';

let harness: StoreHarness;
let counter: RequestCounter;
let tables = 0;

beforeAll(async () => {
  harness = await startStoreHarness();
  counter = new RequestCounter();
  instrumentClient(harness.documentClient, counter);
});

afterAll(async () => {
  await harness.close();
});

async function countedStore(): Promise<DynamoStore> {
  const tableName = `counted-${++tables}`;
  await ensureTable(harness.client, tableName);
  counter.reset();
  return new DynamoStore({ client: harness.documentClient, tableName });
}

const tiKey = (taskId: string) => ({ dagId: 'etl', runId: 'r1', taskId, mapIndex: -1 });

describe('instrumentClient', () => {
  it('counts each store request by its DynamoDB operation, reads apart from writes', async () => {
    const store = await countedStore();
    const tis = Array.from({ length: 30 }, (_, index) => taskInstance(tiKey(`t${index}`)));
    await store.createDagRun(dagRun('etl', 'r1'), tis);
    await store.getRunSnapshot({ dagId: 'etl', runId: 'r1' });
    await store.transitionTaskInstance(tiKey('t0'), { state: 'none' }, { state: 'queued', tryNumber: 1 });
    await store.getTaskInstance(tiKey('t0'));
    await store.putXCom({ ...tiKey('t0'), key: 'return_value' }, '1');
    // The run, 30 conditional TI puts, the run's summary, the DAG's run count, the transition and the XCom.
    expect(counter.snapshot()).toEqual({
      reads: 2,
      writes: 35,
      byOperation: { PutItem: 33, UpdateItem: 2, Query: 1, GetItem: 1 },
      batchItemsWritten: 0,
    });
  });

  it('counts a failed conditional write as the write it costs', async () => {
    const store = await countedStore();
    await store.createDagRun(dagRun('etl', 'r1'), []);
    counter.reset();
    await expect(store.createDagRun(dagRun('etl', 'r1'), [])).rejects.toThrow('already exists');
    expect(counter.snapshot()).toEqual({
      reads: 0,
      writes: 1,
      byOperation: { PutItem: 1 },
      batchItemsWritten: 0,
    });
  });

  it('counts table management by operation but neither as read nor write', async () => {
    counter.reset();
    await ensureTable(harness.client, `counted-${++tables}`);
    const snapshot = counter.snapshot();
    expect(snapshot.reads).toBe(0);
    expect(snapshot.writes).toBe(0);
    expect(snapshot.byOperation.CreateTable).toBe(1);
  });

  it('counts once when the client is instrumented again with the same counter', async () => {
    instrumentClient(harness.client, counter);
    const store = await countedStore();
    await store.getDag('etl');
    expect(counter.snapshot().byOperation).toEqual({ GetItem: 1 });
  });

  it('does not rewrite an import error whose message is unchanged, only its timestamp', async () => {
    const store = await countedStore();
    const error = { fileloc: 'dags/a.ts', message: 'SyntaxError', timestamp: '2026-01-01T00:00:00.000Z' };
    await store.replaceImportErrors([error]);
    counter.reset();
    await store.replaceImportErrors([{ ...error, timestamp: '2026-01-01T00:05:00.000Z' }]);
    expect(counter.snapshot()).toMatchObject({ writes: 0, byOperation: { Query: 1 } });
    expect(await store.listImportErrors()).toEqual([error]);
  });

  it('counts the runs of a DAG with one GetItem of its record', async () => {
    const store = await countedStore();
    const { revision: _, runCount: __, ...record } = dagRecord('etl');
    await store.upsertDag(record);
    for (const runId of ['r1', 'r2', 'r3']) await store.createDagRun(dagRun('etl', runId), []);
    counter.reset();
    expect(await store.countDagRuns('etl')).toBe(3);
    expect(counter.snapshot().byOperation).toEqual({ GetItem: 1 });
  });

  it('reads a run over 1 MB with one query request per page', async () => {
    const store = await countedStore();
    const tis = Array.from({ length: 300 }, (_, index) =>
      taskInstance(tiKey(`t${String(index).padStart(3, '0')}`), { errorMessage: 'x'.repeat(4_000) }),
    );
    await store.createDagRun(dagRun('etl', 'r1'), tis);
    counter.reset();
    const snapshot = await store.getRunSnapshot({ dagId: 'etl', runId: 'r1' });
    expect(snapshot?.taskInstances).toHaveLength(300);
    expect(counter.snapshot().byOperation).toEqual({ Query: 2 });
  });
});
