import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TaskInstanceKey } from '#core/models.ts';
import { createDynamoClient, toDocumentClient } from '#store/embedded.ts';
import { ConditionFailedError, InvalidKeyError, StoreError } from '#store/errors.ts';
import { instrumentClient, RequestCounter } from '#store/instrument.ts';
import { dagRun, type StoreHarness, startStoreHarness, taskInstance } from './store-fixtures.ts';

let harness: StoreHarness;
const counter = new RequestCounter();
let counted: ReturnType<typeof toDocumentClient>;

beforeAll(async () => {
  harness = await startStoreHarness();
  counted = toDocumentClient(createDynamoClient({ endpoint: harness.endpoint, embedded: true }));
  instrumentClient(counted, counter);
});

afterAll(async () => {
  counted.destroy();
  await harness.close();
});

const run = dagRun('etl', 'r1');
const extract: TaskInstanceKey = { dagId: 'etl', runId: 'r1', taskId: 'extract', mapIndex: -1 };
const load: TaskInstanceKey = { dagId: 'etl', runId: 'r1', taskId: 'load', mapIndex: -1 };

async function storeWithRun() {
  const store = await harness.newStore();
  await store.createDagRun(run, [taskInstance(extract), taskInstance(load)]);
  return store;
}

describe('DynamoStore task instances', () => {
  it('reads back a task instance equal to the one created, nulls included', async () => {
    const store = await storeWithRun();
    const ti = await store.getTaskInstance(extract);
    expect(ti).toEqual(taskInstance(extract));
    expect(ti?.queuedAt).toBeNull();
  });

  it('returns undefined for a task instance that does not exist', async () => {
    const store = await storeWithRun();
    expect(await store.getTaskInstance({ ...extract, taskId: 'ghost' })).toBeUndefined();
  });

  it('applies a transition from one of several expected states and returns the new item', async () => {
    const store = await storeWithRun();
    const updated = await store.transitionTaskInstance(
      extract,
      { state: ['none', 'scheduled'], tryNumber: 0 },
      { state: 'queued', tryNumber: 1, queuedAt: '2026-01-01T00:00:02.000Z' },
    );
    const expected = taskInstance(extract, {
      state: 'queued',
      tryNumber: 1,
      queuedAt: '2026-01-01T00:00:02.000Z',
      revision: 1,
    });
    expect(updated).toEqual(expected);
    expect(await store.getTaskInstance(extract)).toEqual(expected);
  });

  it('can set a field back to null', async () => {
    const store = await storeWithRun();
    await store.transitionTaskInstance(extract, { state: 'none' }, { state: 'scheduled', hostname: 'h1' });
    const updated = await store.transitionTaskInstance(extract, { state: 'scheduled' }, { hostname: null });
    expect(updated.hostname).toBeNull();
    expect(updated.revision).toBe(2);
  });

  it('refuses a transition from the wrong state, names the TI and leaves it unchanged', async () => {
    const store = await storeWithRun();
    const attempt = store.transitionTaskInstance(
      extract,
      { state: 'running' },
      { state: 'success' },
      { owed: [] },
    );
    await expect(attempt).rejects.toThrow(ConditionFailedError);
    await expect(attempt).rejects.toThrow(
      'task instance etl/r1/extract was not updated: it does not exist or is not in state running',
    );
    expect(await store.getTaskInstance(extract)).toEqual(taskInstance(extract));
  });

  it('refuses a transition at the wrong try number and leaves the TI unchanged', async () => {
    const store = await storeWithRun();
    const attempt = store.transitionTaskInstance(
      extract,
      { state: 'none', tryNumber: 3 },
      { state: 'queued' },
    );
    await expect(attempt).rejects.toThrow('is not in state none at try 3');
    expect(await store.getTaskInstance(extract)).toEqual(taskInstance(extract));
  });

  it('lets exactly one of two concurrent schedulers queue a task instance', async () => {
    const store = await storeWithRun();
    const queue = () =>
      store.transitionTaskInstance(
        extract,
        { state: 'none', tryNumber: 0 },
        { state: 'queued', tryNumber: 1 },
      );
    const results = await Promise.allSettled([queue(), queue()]);
    const fulfilled = results.filter((result) => result.status === 'fulfilled');
    const rejected = results.filter((result) => result.status === 'rejected');
    expect(fulfilled).toHaveLength(1);
    expect(rejected).toHaveLength(1);
    expect((rejected[0] as PromiseRejectedResult).reason).toBeInstanceOf(ConditionFailedError);
    const stored = await store.getTaskInstance(extract);
    expect(stored?.tryNumber).toBe(1);
    expect(stored?.revision).toBe(1);
  });

  it('refuses a transition of a task instance that does not exist and creates nothing', async () => {
    const store = await storeWithRun();
    const ghost = { ...extract, taskId: 'ghost' };
    await expect(store.transitionTaskInstance(ghost, { state: 'none' }, { state: 'queued' })).rejects.toThrow(
      ConditionFailedError,
    );
    expect(await store.getTaskInstance(ghost)).toBeUndefined();
  });

  it('refuses an empty list of expected states', async () => {
    const store = await storeWithRun();
    await expect(store.transitionTaskInstance(extract, { state: [] }, { state: 'queued' })).rejects.toThrow(
      StoreError,
    );
  });

  it('ignores identity fields and revision smuggled into the changes', async () => {
    const store = await storeWithRun();
    const changes = { state: 'scheduled', taskId: 'other', revision: 99 } as const;
    const updated = await store.transitionTaskInstance(extract, { state: 'none' }, changes);
    expect(updated).toEqual(taskInstance(extract, { state: 'scheduled', revision: 1 }));
  });
});

describe('DynamoStore task instance revisions and the transition table', () => {
  it('applies a write at the expected revision', async () => {
    const store = await storeWithRun();
    await store.transitionTaskInstance(extract, { state: 'none' }, { state: 'scheduled' });
    const updated = await store.transitionTaskInstance(
      extract,
      { state: 'scheduled', revision: 1 },
      { state: 'queued', tryNumber: 1 },
    );
    expect(updated.revision).toBe(2);
  });

  it('refuses a write at a stale revision, saying so, and leaves the TI unchanged', async () => {
    const store = await storeWithRun();
    const scheduled = await store.transitionTaskInstance(extract, { state: 'none' }, { state: 'scheduled' });
    await expect(
      store.transitionTaskInstance(extract, { state: 'scheduled', revision: 0 }, { state: 'queued' }),
    ).rejects.toThrow('is not in state scheduled at revision 0');
    expect(await store.getTaskInstance(extract)).toEqual(scheduled);
  });

  it('refuses a transition the table does not allow before sending any request', async () => {
    const store = harness.storeOn(await harness.newTable(), counted);
    counter.reset();
    await expect(
      store.transitionTaskInstance(extract, { state: ['running', 'success'] }, { state: 'running' }),
    ).rejects.toThrow('task instance etl/r1/extract cannot move from success to running');
    expect(counter.snapshot().byOperation).toEqual({});
  });

  it('refuses a finished task instance going back to none without a reset', async () => {
    const store = await storeWithRun();
    await expect(
      store.transitionTaskInstance(extract, { state: 'failed' }, { state: 'none' }),
    ).rejects.toThrow(StoreError);
  });

  it('resets a finished task instance to none when asked for a reset', async () => {
    const store = await storeWithRun();
    await store.transitionTaskInstance(extract, { state: 'none' }, { state: 'skipped' }, { owed: [] });
    const reset = await store.transitionTaskInstance(
      extract,
      { state: 'skipped' },
      { state: 'none' },
      { reset: true },
    );
    expect(reset.state).toBe('none');
  });

  it('lets a running task instance be handed back to scheduled', async () => {
    const store = await storeWithRun();
    await store.transitionTaskInstance(extract, { state: 'none' }, { state: 'queued', tryNumber: 1 });
    await store.transitionTaskInstance(extract, { state: 'queued' }, { state: 'running' }, { owed: [] });
    const handedBack = await store.transitionTaskInstance(
      extract,
      { state: 'running' },
      { state: 'scheduled' },
    );
    expect(handedBack.state).toBe('scheduled');
  });

  it('lets a queued task instance be queued again without a state change', async () => {
    const store = await storeWithRun();
    await store.transitionTaskInstance(extract, { state: 'none' }, { state: 'queued', tryNumber: 1 });
    const requeued = await store.transitionTaskInstance(
      extract,
      { state: 'queued', tryNumber: 1 },
      { queuedAt: '2026-01-01T00:05:00.000Z', queuedSends: 2 },
    );
    expect(requeued).toMatchObject({ state: 'queued', queuedSends: 2 });
  });

  it('creates task instances with no report id and no workload sent', async () => {
    const store = await storeWithRun();
    expect(await store.getTaskInstance(extract)).toMatchObject({ reportId: null, queuedSends: 0 });
  });
});

describe('DynamoStore mapped task instances', () => {
  const mapped: TaskInstanceKey = { dagId: 'etl', runId: 'r1', taskId: 'process', mapIndex: 5 };

  it('reads and transitions a mapped task instance by its key', async () => {
    const store = await storeWithRun();
    await store.createMissingTaskInstances([taskInstance(mapped)]);
    expect(await store.getTaskInstance(mapped)).toEqual(taskInstance(mapped));
    const updated = await store.transitionTaskInstance(mapped, { state: 'none' }, { state: 'scheduled' });
    expect(updated).toEqual(taskInstance(mapped, { state: 'scheduled', revision: 1 }));
    expect(await store.getTaskInstance({ ...mapped, mapIndex: 37 })).toBeUndefined();
  });

  it('keeps mapped task instances out of the run snapshot', async () => {
    const store = await storeWithRun();
    await store.createMissingTaskInstances([taskInstance(mapped)]);
    const snapshot = await store.getRunSnapshot(run);
    expect(snapshot?.taskInstances.map((ti) => ti.taskId)).toEqual(['extract', 'load']);
  });

  it('refuses a map index below -1', async () => {
    const store = await storeWithRun();
    const attempt = store.getTaskInstance({ ...mapped, mapIndex: -2 });
    await expect(attempt).rejects.toThrow(InvalidKeyError);
    await expect(attempt).rejects.toThrow(
      "map index -2 of task 'process' is not -1 or a non-negative integer",
    );
  });
});

describe('DynamoStore createMissingTaskInstances', () => {
  it('creates the missing task instances and keeps the existing ones as they are', async () => {
    const store = await storeWithRun();
    const queued = await store.transitionTaskInstance(
      extract,
      { state: 'none' },
      { state: 'queued', tryNumber: 1 },
    );
    const transform: TaskInstanceKey = { ...extract, taskId: 'transform' };
    await store.createMissingTaskInstances([
      taskInstance(extract),
      taskInstance(transform),
      taskInstance(load),
    ]);
    const snapshot = await store.getRunSnapshot(run);
    expect(snapshot?.taskInstances).toEqual([queued, taskInstance(load), taskInstance(transform)]);
  });

  it('refuses task instances of another run in createDagRun', async () => {
    const store = await harness.newStore();
    const foreign = taskInstance({ ...extract, runId: 'r2' });
    await expect(store.createDagRun(run, [foreign])).rejects.toThrow(
      'task instance etl/r2/extract does not belong to DAG run etl/r1',
    );
    expect(await store.getDagRun(run)).toBeUndefined();
  });
});
