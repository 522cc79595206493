import { GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TaskInstanceKey } from '#core/models.ts';
import { createDynamoClient, toDocumentClient } from '#store/embedded.ts';
import { ConditionFailedError, ItemTooLargeError, NotFoundError } from '#store/errors.ts';
import { runSummaryKey } from '#store/keys.ts';
import { dagRecord, dagRun, type StoreHarness, startStoreHarness, taskInstance } from './store-fixtures.ts';

let harness: StoreHarness;

beforeAll(async () => {
  harness = await startStoreHarness();
});

afterAll(async () => {
  await harness.close();
});

const key = { dagId: 'etl', runId: 'r1' };
const extract: TaskInstanceKey = { ...key, taskId: 'extract', mapIndex: -1 };

async function storeWithDag() {
  const store = await harness.newStore();
  const { revision: _, runCount: __, ...record } = dagRecord('etl');
  await store.upsertDag(record);
  return store;
}

describe('DynamoStore run clear count', () => {
  it('adds one to the clear count and to the clears in progress when a clear begins, in any state', async () => {
    const store = await harness.newStore();
    await store.createDagRun(dagRun('etl', 'r1', { state: 'success' }), []);
    const cleared = await store.markRunCleared(key, 'begin');
    expect(cleared).toEqual(
      dagRun('etl', 'r1', {
        state: 'success',
        clearCount: 1,
        clearsInProgress: 1,
        clearBegunAt: expect.any(String),
        revision: 1,
      }),
    );
  });

  it('adds one to the clear count and takes one from the clears in progress when a clear ends', async () => {
    const store = await harness.newStore();
    await store.createDagRun(dagRun('etl', 'r1', { state: 'success' }), []);
    await store.markRunCleared(key, 'begin');
    const ended = await store.markRunCleared(key, 'end');
    expect(ended).toEqual(
      dagRun('etl', 'r1', {
        state: 'success',
        clearCount: 2,
        clearsInProgress: 0,
        clearBegunAt: expect.any(String),
        revision: 2,
      }),
    );
  });

  it('refuses to mark a run that does not exist as cleared', async () => {
    const store = await harness.newStore();
    await expect(store.markRunCleared(key, 'begin')).rejects.toThrow(NotFoundError);
    expect(await store.getDagRun(key)).toBeUndefined();
  });

  it('finishes a run at the clear count it was read with', async () => {
    const store = await harness.newStore();
    await store.createDagRun(dagRun('etl', 'r1', { state: 'running' }), []);
    const finished = await store.transitionDagRun(
      key,
      { state: 'running', clearCount: 0 },
      { state: 'success' },
      { owed: [] },
    );
    expect(finished.state).toBe('success');
  });

  it('refuses to finish a run cleared since it was read, and leaves it running', async () => {
    const store = await harness.newStore();
    await store.createDagRun(dagRun('etl', 'r1', { state: 'running' }), []);
    const cleared = await store.markRunCleared(key, 'begin');
    await expect(
      store.transitionDagRun(key, { state: 'running', clearCount: 0 }, { state: 'success' }, { owed: [] }),
    ).rejects.toThrow(ConditionFailedError);
    expect(await store.getDagRun(key)).toEqual(cleared);
  });

  it('ignores a clear count smuggled into the changes', async () => {
    const store = await harness.newStore();
    await store.createDagRun(dagRun('etl', 'r1'), []);
    const changes = { state: 'running', clearCount: 9 } as const;
    expect((await store.transitionDagRun(key, 'queued', changes)).clearCount).toBe(0);
  });
});

describe('DynamoStore run count', () => {
  it('counts each created run on the DAG record', async () => {
    const store = await storeWithDag();
    await store.createDagRun(dagRun('etl', 'r1'), []);
    await store.createDagRun(dagRun('etl', 'r2'), []);
    expect((await store.getDag('etl'))?.runCount).toBe(2);
    expect(await store.countDagRuns('etl')).toBe(2);
  });

  it('does not count a run refused as a duplicate', async () => {
    const store = await storeWithDag();
    await store.createDagRun(dagRun('etl', 'r1'), []);
    await expect(store.createDagRun(dagRun('etl', 'r1'), [])).rejects.toThrow('already exists');
    expect(await store.countDagRuns('etl')).toBe(1);
  });

  it('keeps the run count when the DAG is parsed again', async () => {
    const store = await storeWithDag();
    await store.createDagRun(dagRun('etl', 'r1'), []);
    const { revision: _, runCount: __, ...record } = dagRecord('etl', { versionHash: 'hash-2' });
    expect((await store.upsertDag(record)).runCount).toBe(1);
  });

  it('creates a run of a DAG without a record and does not create the record', async () => {
    const store = await harness.newStore();
    await store.createDagRun(dagRun('etl', 'r1'), []);
    expect(await store.getDagRun(key)).toEqual(dagRun('etl', 'r1'));
    expect(await store.getDag('etl')).toBeUndefined();
    expect(await store.countDagRuns('etl')).toBe(0);
  });
});

describe('DynamoStore createDagRun limits and races', () => {
  it('refuses a conf that makes the run item too large, naming the conf, its size and the limit', async () => {
    const store = await harness.newStore();
    // 2 bytes of JSON per element, 3 bytes stored: under a 350,000-byte conf limit, over 400 KB stored.
    const conf = { values: Array.from({ length: 170_000 }, () => 1) };
    const attempt = store.createDagRun(dagRun('etl', 'r1', { conf }), []);
    await expect(attempt).rejects.toThrow(ItemTooLargeError);
    await expect(attempt).rejects.toThrow(
      /the conf of DAG run etl\/r1 \(340012 bytes of JSON\) makes the run item \d+ bytes, over DynamoDB's item limit of 409600 bytes/,
    );
    expect(await store.getDagRun(key)).toBeUndefined();
  });

  it('leaves a task instance a scheduler queued alone when the run creation writes it late', async () => {
    const tableName = await harness.newTable();
    const scheduler = harness.storeOn(tableName);
    // A client whose task instance writes (put or batch) wait until released: a slow run creation.
    let delayed = 0;
    let release = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const slowClient = toDocumentClient(createDynamoClient({ endpoint: harness.endpoint, embedded: true }));
    slowClient.middlewareStack.add(
      (next, context) => async (args) => {
        const write = ['PutItemCommand', 'BatchWriteItemCommand'].includes(context.commandName ?? '');
        if (write && JSON.stringify(args.input).includes('TI#')) {
          delayed++;
          await released;
        }
        return next(args);
      },
      { step: 'initialize', name: 'slowTaskInstancePuts' },
    );
    const creating = harness
      .storeOn(tableName, slowClient)
      .createDagRun(dagRun('etl', 'r1'), [taskInstance(extract)]);
    while ((await scheduler.getDagRun(key)) === undefined)
      await new Promise((resolve) => setTimeout(resolve, 5));
    // The scheduler repairs the run's missing TI and queues it before the creation's put lands.
    await scheduler.createMissingTaskInstances([taskInstance(extract)]);
    const queued = await scheduler.transitionTaskInstance(
      extract,
      { state: 'none' },
      { state: 'queued', tryNumber: 1 },
    );
    release();
    await creating;
    slowClient.destroy();
    expect(delayed).toBe(1);
    expect(await scheduler.getTaskInstance(extract)).toEqual(queued);
  });
});

describe('DynamoStore run summary item', () => {
  it('stores each entry as a short string, or a list when it carries a retry time or followed branches', async () => {
    const tableName = await harness.newTable();
    const store = harness.storeOn(tableName);
    await store.createDagRun(dagRun('etl', 'r1', { state: 'running' }), []);
    const tasks = {
      extract: { state: 'success' as const, tryNumber: 1 },
      transform: { state: 'up_for_retry' as const, tryNumber: 12, nextRetryAt: '2026-01-01T00:00:00.000Z' },
      branch: { state: 'success' as const, tryNumber: 1, followTaskIds: ['load', 'notify'] },
      load: { state: 'none' as const, tryNumber: 0 },
    };
    // The run's creation wrote an empty summary (version 0): the entries go in by updates.
    expect(await store.updateRunSummary(key, { clearCount: 0, version: 0 }, tasks)).toBe(true);
    expect(
      await store.updateRunSummary(
        key,
        { clearCount: 0, version: 1 },
        { load: { state: 'queued', tryNumber: 1 } },
      ),
    ).toBe(true);
    const item = await harness.documentClient.send(
      new GetCommand({ TableName: tableName, Key: runSummaryKey(key) }),
    );
    expect(item.Item?.tasks).toEqual({
      extract: 'S1',
      transform: ['R12', '2026-01-01T00:00:00.000Z'],
      branch: ['S1', null, ['load', 'notify']],
      load: 'q1',
    });
    expect((await store.getRunSnapshot(key))?.summary).toEqual({
      clearCount: 0,
      version: 2,
      tasks: { ...tasks, load: { state: 'queued', tryNumber: 1 } },
    });
    // A rebuild (after a clear) writes the whole item the same way.
    expect(await store.putRunSummary(key, { clearCount: 1, version: 0, tasks })).toBe(true);
    const rebuilt = await harness.documentClient.send(
      new GetCommand({ TableName: tableName, Key: runSummaryKey(key) }),
    );
    expect(rebuilt.Item?.tasks).toMatchObject({ extract: 'S1', load: 'n0' });
    expect((await store.getRunSnapshot(key))?.summary?.tasks).toEqual(tasks);
  });

  it('reads entries written as maps by earlier versions, and leaves out the ones it cannot read', async () => {
    const tableName = await harness.newTable();
    const store = harness.storeOn(tableName);
    await store.createDagRun(dagRun('etl', 'r1', { state: 'running' }), []);
    await harness.documentClient.send(
      new PutCommand({
        TableName: tableName,
        Item: {
          ...runSummaryKey(key),
          clearCount: 0,
          version: 3,
          tasks: {
            extract: { state: 'success', tryNumber: 2 },
            transform: { state: 'up_for_retry', tryNumber: 1, nextRetryAt: '2026-01-01T00:00:00.000Z' },
            branch: { state: 'skipped', tryNumber: 0, followTaskIds: ['load'] },
            odd: { state: 'toString', tryNumber: 1 },
            garbled: 'Z1',
            empty: 'S',
            exponent: 'S1e3',
            negative: 'S-1',
            padded: 'S01',
            spaced: 'S 1',
            notATry: { state: 'success', tryNumber: 'x' },
            oddFollows: ['S1', null, ['load', 1]],
            longList: ['S1', null, ['load'], 'more'],
            oddRetry: ['R1', 5],
          },
        },
      }),
    );
    expect((await store.getRunSnapshot(key))?.summary?.tasks).toEqual({
      extract: { state: 'success', tryNumber: 2 },
      transform: { state: 'up_for_retry', tryNumber: 1, nextRetryAt: '2026-01-01T00:00:00.000Z' },
      branch: { state: 'skipped', tryNumber: 0, followTaskIds: ['load'] },
    });
  });
});
