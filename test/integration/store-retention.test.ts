import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoStore } from '#store/dynamodb.ts';
import {
  dagKey,
  dagRunKey,
  runSummaryKey,
  slotPoolKey,
  TTL_ATTRIBUTE,
  taskInstanceKey,
  xcomKey,
} from '#store/keys.ts';
import { dagRecord, dagRun, type StoreHarness, startStoreHarness, taskInstance } from './store-fixtures.ts';

let harness: StoreHarness;
beforeAll(async () => {
  harness = await startStoreHarness();
});
afterAll(async () => {
  await harness.close();
});

const NOW_MS = Date.parse('2026-03-01T00:00:00.000Z');
const run = { dagId: 'etl', runId: 'r1' };
const ti = { ...run, taskId: 'extract', mapIndex: -1 };

async function storeWith(retentionDays: number | undefined) {
  const tableName = await harness.newTable();
  let now = NOW_MS;
  const store = new DynamoStore({
    client: harness.documentClient,
    tableName,
    ...(retentionDays === undefined ? {} : { retentionDays }),
    now: () => now,
  });
  const expiresAt = async (key: { pk: string; sk: string }) =>
    (await harness.documentClient.send(new GetCommand({ TableName: tableName, Key: key }))).Item?.[
      TTL_ATTRIBUTE
    ];
  return { store, expiresAt, advance: (ms: number) => (now += ms) };
}

/** Writes one of each item a run has, and a DAG record and a named pool beside it. */
async function writeRunItems(store: DynamoStore) {
  const { revision: _, runCount: __, ...record } = dagRecord('etl');
  await store.upsertDag(record);
  await store.createDagRun(dagRun('etl', 'r1', { state: 'running' }), [taskInstance(ti)]);
  await store.updateSlotPool(
    { kind: 'run_tasks', ...run },
    {
      size: 4,
      acquire: [{ id: 'h', slots: 1, tryNumber: 1, passId: 'p', at: new Date(NOW_MS).toISOString() }],
      release: [],
    },
  );
  await store.updateSlotPool(
    { kind: 'pool', pool: 'default_pool' },
    {
      size: 4,
      acquire: [{ id: 'h', slots: 1, tryNumber: 1, passId: 'p', at: new Date(NOW_MS).toISOString() }],
      release: [],
    },
  );
  await store.putXCom({ ...ti, key: 'return_value' }, '1', 1);
}

describe('DynamoStore retention', () => {
  it('stamps every item of a run, and its XComs, with the time to live `retentionDays` ahead', async () => {
    const { store, expiresAt } = await storeWith(30);
    await writeRunItems(store);
    const expected = NOW_MS / 1000 + 30 * 86_400;
    expect({
      run: await expiresAt(dagRunKey(run)),
      ti: await expiresAt(taskInstanceKey(ti)),
      summary: await expiresAt(runSummaryKey(run)),
      taskSlots: await expiresAt(slotPoolKey({ kind: 'run_tasks', ...run })),
      xcom: await expiresAt(xcomKey({ ...ti, key: 'return_value' })),
    }).toEqual({ run: expected, ti: expected, summary: expected, taskSlots: expected, xcom: expected });
  });

  it('moves the stamp forward on each later write', async () => {
    const { store, expiresAt, advance } = await storeWith(30);
    await writeRunItems(store);
    advance(86_400_000);
    await store.transitionTaskInstance(ti, { state: 'none' }, { state: 'queued', tryNumber: 1 });
    await store.transitionDagRun(run, 'running', { state: 'success' }, { owed: [] });
    await store.markRunCleared(run, 'begin');
    await store.updateRunSummary(
      run,
      { clearCount: 0, version: 0 },
      { extract: { state: 'queued', tryNumber: 1 } },
    );
    const expected = NOW_MS / 1000 + 31 * 86_400;
    expect({
      ti: await expiresAt(taskInstanceKey(ti)),
      run: await expiresAt(dagRunKey(run)),
      summary: await expiresAt(runSummaryKey(run)),
    }).toEqual({ ti: expected, run: expected, summary: expected });
  });

  it('never stamps a DAG record or a named pool', async () => {
    const { store, expiresAt } = await storeWith(30);
    await writeRunItems(store);
    expect(await expiresAt(dagKey('etl'))).toBeUndefined();
    expect(await expiresAt(slotPoolKey({ kind: 'pool', pool: 'default_pool' }))).toBeUndefined();
  });

  it('stamps nothing without a retention', async () => {
    const { store, expiresAt } = await storeWith(undefined);
    await writeRunItems(store);
    expect(await expiresAt(dagRunKey(run))).toBeUndefined();
    expect(await expiresAt(taskInstanceKey(ti))).toBeUndefined();
  });
});
