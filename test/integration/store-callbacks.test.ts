import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Callback } from '#core/callbacks.ts';
import type { DynamoStore } from '#store/dynamodb.ts';
import { type StoreHarness, startStoreHarness } from './store-fixtures.ts';

/** Callback items on dynalite: listings that span DynamoDB's 1 MB pages, and list cursors. */
describe('callback store', () => {
  let harness: StoreHarness;
  let store: DynamoStore;
  beforeAll(async () => {
    harness = await startStoreHarness();
    store = await harness.newStore();
  });
  afterAll(async () => {
    await harness?.close();
  });

  const callback = (runId: string, id: string, errorMessage: string | null): Callback => ({
    callbackId: id,
    kind: 'task_success',
    dagId: 'd',
    runId,
    dagVersion: 'v',
    fileloc: 'd.ts',
    taskId: 't',
    mapIndex: -1,
    tryNumber: 1,
    clearCount: null,
    index: 0,
    name: 'notify',
    place: 'worker',
    state: 'queued',
    attempt: 2,
    maxAttempts: 3,
    retryDelayMs: 0,
    timeoutMs: 60_000,
    ownerError: null,
    ownerErrorType: null,
    owedAt: '2026-01-01T00:00:00.000Z',
    queuedAt: '2026-01-01T00:00:00.000Z',
    queuedSends: 1,
    notBefore: null,
    startDate: null,
    endDate: null,
    hostname: null,
    workerId: null,
    startId: null,
    reportId: null,
    errorMessage,
    revision: 0,
  });

  it('lists due callbacks up to the limit across 1 MB pages', async () => {
    // 150 items of about 10 KB (the longest error kept): over 1 MB, more than one page.
    for (let index = 0; index < 150; index += 1) {
      const id = `big${String(index).padStart(3, '0')}`;
      await store.putCallback(callback('big', id, 'E'.repeat(10_000)), '2026-01-01T00:02:00.000Z');
    }
    expect(await store.listDueCallbacks('2026-01-01T00:05:00.000Z', 1_000)).toHaveLength(150);
    expect(await store.listDueCallbacks('2026-01-01T00:05:00.000Z', 120)).toHaveLength(120);
  }, 60_000);

  it("resumes a run's list right after a callback with the cursor made for it", async () => {
    for (const id of ['a', 'b', 'c', 'd']) await store.putCallback(callback('cursor', id, null), null);
    const after = store.callbacksCursorAfter({ dagId: 'd', runId: 'cursor', callbackId: 'b' });
    const page = await store.listCallbacks({ dagId: 'd', runId: 'cursor' }, { limit: 10, cursor: after });
    expect(page.items.map((item) => item.callbackId)).toEqual(['c', 'd']);
  });
});
