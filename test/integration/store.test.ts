import { randomBytes } from 'node:crypto';
import { PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_VALUE_BYTES } from '#store/dag-store.ts';
import {
  AlreadyExistsError,
  ConditionFailedError,
  InvalidCursorError,
  InvalidKeyError,
  NotFoundError,
  StoreError,
} from '#store/errors.ts';
import { serializedDagKey } from '#store/keys.ts';
import type { ImportError } from '#store/port.ts';
import {
  dagRecord,
  dagRun,
  type StoreHarness,
  serializedDag,
  startStoreHarness,
  taskInstance,
} from './store-fixtures.ts';

let harness: StoreHarness;

beforeAll(async () => {
  harness = await startStoreHarness();
});

afterAll(async () => {
  await harness.close();
});

describe('DynamoStore serialized DAGs', () => {
  it('gives back a stored version equal to what was put', async () => {
    const store = await harness.newStore();
    const dag = serializedDag('etl', ['extract', 'load']);
    await store.putSerializedDag('hash-1', dag);
    expect(await store.getSerializedDag('etl', 'hash-1')).toEqual(dag);
  });

  it('keeps the first content when a version is put again', async () => {
    const store = await harness.newStore();
    const dag = serializedDag('etl', ['extract']);
    await store.putSerializedDag('hash-1', dag);
    await store.putSerializedDag('hash-1', { ...dag, description: 'changed' });
    expect((await store.getSerializedDag('etl', 'hash-1'))?.description).toBe('a test DAG');
  });

  it('returns undefined for an unknown version', async () => {
    const store = await harness.newStore();
    expect(await store.getSerializedDag('etl', 'nope')).toBeUndefined();
  });

  it('stores a DAG of 5,000 tasks (gzip-compressed) and gives it back equal', async () => {
    const store = await harness.newStore();
    const taskIds = Array.from({ length: 5_000 }, (_, index) => `task_${String(index).padStart(5, '0')}`);
    const dag = serializedDag('wide', taskIds);
    expect(Buffer.byteLength(JSON.stringify(dag))).toBeGreaterThan(MAX_VALUE_BYTES);
    await store.putSerializedDag('hash-1', dag);
    expect(await store.getSerializedDag('wide', 'hash-1')).toEqual(dag);
  });

  it('refuses a DAG over 350,000 bytes compressed, naming it, its sizes and the limit, and stores nothing', async () => {
    const store = await harness.newStore();
    const dag = { ...serializedDag('huge', ['only']), description: randomBytes(400_000).toString('base64') };
    await expect(store.putSerializedDag('hash-1', dag)).rejects.toThrow(
      /^serialized DAG huge \(version hash-1, 1 tasks\) is \d+ bytes gzip-compressed \(\d+ bytes of JSON\), over the store limit of 350000 bytes$/,
    );
    expect(await store.getSerializedDag('huge', 'hash-1')).toBeUndefined();
  });

  it('reads a version stored as JSON text before versions were compressed', async () => {
    const tableName = await harness.newTable();
    const store = harness.storeOn(tableName);
    const dag = serializedDag('old', ['extract']);
    await harness.documentClient.send(
      new PutCommand({
        TableName: tableName,
        Item: {
          ...serializedDagKey('old', 'hash-0'),
          dagId: 'old',
          versionHash: 'hash-0',
          serialized: JSON.stringify(dag),
        },
      }),
    );
    expect(await store.getSerializedDag('old', 'hash-0')).toEqual(dag);
  });
});

describe('DynamoStore DAG records', () => {
  it('creates a DAG at revision 0 and reads it back equal', async () => {
    const store = await harness.newStore();
    const { revision: _, ...record } = dagRecord('etl');
    const created = await store.upsertDag(record);
    expect(created).toEqual(dagRecord('etl', { revision: 0 }));
    expect(await store.getDag('etl')).toEqual(dagRecord('etl', { revision: 0 }));
  });

  it('updates parse-time fields but keeps the stored pause state and next run', async () => {
    const store = await harness.newStore();
    const { revision: _, ...record } = dagRecord('etl', {
      isPaused: true,
      nextRunAt: '2026-02-01T00:00:00.000Z',
    });
    await store.upsertDag(record);
    const updated = await store.upsertDag({
      ...record,
      fileloc: 'dags/moved.ts',
      versionHash: 'hash-2',
      description: 'now documented',
      tags: [],
      scheduleExpression: null,
      isActive: false,
      lastParsedAt: '2026-01-02T00:00:00.000Z',
      isPaused: false,
      nextRunAt: null,
    });
    const expected = dagRecord('etl', {
      fileloc: 'dags/moved.ts',
      versionHash: 'hash-2',
      description: 'now documented',
      tags: [],
      scheduleExpression: null,
      isActive: false,
      lastParsedAt: '2026-01-02T00:00:00.000Z',
      isPaused: true,
      nextRunAt: '2026-02-01T00:00:00.000Z',
      revision: 1,
    });
    expect(updated).toEqual(expected);
    expect(await store.getDag('etl')).toEqual(expected);
  });

  it('keeps a stored null next run instead of the default', async () => {
    const store = await harness.newStore();
    const { revision: _, ...record } = dagRecord('etl', { nextRunAt: null });
    await store.upsertDag(record);
    const updated = await store.upsertDag({ ...record, nextRunAt: '2026-05-01T00:00:00.000Z' });
    expect(updated.nextRunAt).toBeNull();
  });

  it('applies updateDag when the expected revision matches and bumps the revision', async () => {
    const store = await harness.newStore();
    const { revision: _, ...record } = dagRecord('etl');
    await store.upsertDag(record);
    const updated = await store.updateDag('etl', { isPaused: true, nextRunAt: null }, 0);
    expect(updated).toEqual(dagRecord('etl', { isPaused: true, nextRunAt: null, revision: 1 }));
  });

  it('refuses updateDag on a stale revision and changes nothing', async () => {
    const store = await harness.newStore();
    const { revision: _, ...record } = dagRecord('etl');
    await store.upsertDag(record);
    await expect(store.updateDag('etl', { isPaused: true }, 7)).rejects.toThrow(ConditionFailedError);
    expect(await store.getDag('etl')).toEqual(dagRecord('etl', { revision: 0 }));
  });

  it('refuses updateDag of a DAG that does not exist', async () => {
    const store = await harness.newStore();
    await expect(store.updateDag('ghost', { isPaused: true })).rejects.toThrow(NotFoundError);
    expect(await store.getDag('ghost')).toBeUndefined();
  });

  it('lists every DAG exactly once across pages of 2', async () => {
    const store = await harness.newStore();
    const dagIds = ['a', 'b', 'c', 'd', 'e'];
    for (const dagId of dagIds) {
      const { revision: _, ...record } = dagRecord(dagId);
      await store.upsertDag(record);
    }
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await store.listDags({ limit: 2, ...(cursor === undefined ? {} : { cursor }) });
      expect(page.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.items.map((dag) => dag.dagId));
      cursor = page.nextCursor;
      pages++;
    } while (cursor !== undefined);
    expect(seen).toEqual(dagIds);
    expect(pages).toBe(3);
    expect(await store.countDags()).toBe(5);
  });

  it('rejects a cursor it did not issue', async () => {
    const store = await harness.newStore();
    const forged = Buffer.from(JSON.stringify({ secret: 'x' })).toString('base64url');
    await expect(store.listDags({ limit: 2, cursor: forged })).rejects.toThrow(InvalidCursorError);
  });

  it('rejects a cursor that is not base64url JSON with InvalidCursorError, a StoreError', async () => {
    const store = await harness.newStore();
    const attempt = store.listDagRuns('etl', { limit: 2, cursor: '%%%not-a-cursor' });
    await expect(attempt).rejects.toThrow(InvalidCursorError);
    await expect(attempt).rejects.toThrow(StoreError);
  });

  it('refuses an empty run id with InvalidKeyError, a StoreError', async () => {
    const store = await harness.newStore();
    const attempt = store.getDagRun({ dagId: 'etl', runId: '' });
    await expect(attempt).rejects.toThrow(InvalidKeyError);
    await expect(attempt).rejects.toThrow(StoreError);
  });

  it('rejects a DAG id containing the key separator', async () => {
    const store = await harness.newStore();
    const attempt = store.getDag('a#b');
    await expect(attempt).rejects.toThrow(InvalidKeyError);
    await expect(attempt).rejects.toThrow("DAG id 'a#b' cannot be stored");
  });
});

describe('DynamoStore import errors', () => {
  const error = (fileloc: string, message = 'SyntaxError'): ImportError => ({
    fileloc,
    message,
    timestamp: '2026-01-01T00:00:00.000Z',
  });

  it('replaces the whole set: stale errors go, changed ones are updated, new ones appear', async () => {
    const store = await harness.newStore();
    await store.replaceImportErrors([error('dags/a.ts'), error('dags/b.ts'), error('dags/c.ts')]);
    await store.replaceImportErrors([error('dags/b.ts', 'TypeError'), error('dags/d.ts')]);
    expect(await store.listImportErrors()).toEqual([error('dags/b.ts', 'TypeError'), error('dags/d.ts')]);
  });

  it('clears every error when given an empty set', async () => {
    const store = await harness.newStore();
    await store.replaceImportErrors([error('dags/a.ts')]);
    await store.replaceImportErrors([]);
    expect(await store.listImportErrors()).toEqual([]);
  });

  it('is not listed among DAGs', async () => {
    const store = await harness.newStore();
    await store.replaceImportErrors([error('dags/a.ts')]);
    expect((await store.listDags({ limit: 10 })).items).toEqual([]);
  });
});

describe('DynamoStore DAG runs', () => {
  it('creates a run that reads back equal', async () => {
    const store = await harness.newStore();
    const run = dagRun('etl', 'manual__1');
    await store.createDagRun(run, []);
    expect(await store.getDagRun({ dagId: 'etl', runId: 'manual__1' })).toEqual(run);
  });

  it('reads runs and versions of their DAGs together, leaving out those that do not exist', async () => {
    const store = await harness.newStore();
    const run = dagRun('etl', 'manual__1');
    const second = dagRun('etl', 'manual__2');
    const dag = serializedDag('etl', ['extract', 'load']);
    await store.createDagRun(run, []);
    await store.createDagRun(second, []);
    await store.putSerializedDag('hash-1', dag);
    const key = { dagId: 'etl', runId: 'manual__1' };
    const version = { dagId: 'etl', versionHash: 'hash-1' };
    expect(await store.getDagRunsWithDagVersions([key], [version])).toEqual({
      runs: [{ ...key, value: run }],
      versions: [{ ...version, value: dag }],
    });
    expect(
      await store.getDagRunsWithDagVersions(
        [key, { dagId: 'etl', runId: 'other' }, { dagId: 'etl', runId: 'manual__2' }],
        [{ dagId: 'etl', versionHash: 'nope' }],
      ),
    ).toEqual({
      runs: [
        { ...key, value: run },
        { dagId: 'etl', runId: 'manual__2', value: second },
      ],
      versions: [],
    });
    expect(await store.getDagRunsWithDagVersions([], [version])).toEqual({
      runs: [],
      versions: [{ ...version, value: dag }],
    });
  });

  it('gives back an item that cannot be decoded as its error, and the others as read', async () => {
    const tableName = await harness.newTable();
    const store = harness.storeOn(tableName);
    const run = dagRun('etl', 'manual__1');
    await store.createDagRun(run, []);
    await store.putSerializedDag('hash-1', serializedDag('etl', ['extract']));
    // A version item whose compressed body is not gzip.
    await harness.documentClient.send(
      new PutCommand({
        TableName: tableName,
        Item: { ...serializedDagKey('etl', 'hash-2'), serializedGzip: new Uint8Array([1, 2, 3]) },
      }),
    );
    const key = { dagId: 'etl', runId: 'manual__1' };
    const read = await store.getDagRunsWithDagVersions(
      [key],
      [
        { dagId: 'etl', versionHash: 'hash-1' },
        { dagId: 'etl', versionHash: 'hash-2' },
      ],
    );
    expect(read.runs).toEqual([{ ...key, value: run }]);
    expect(read.versions.map((version) => ('value' in version ? 'value' : 'error'))).toEqual([
      'value',
      'error',
    ]);
  });

  it('refuses a second run with the same id and leaves the first untouched', async () => {
    const store = await harness.newStore();
    const run = dagRun('etl', 'manual__1');
    const ti = taskInstance({ dagId: 'etl', runId: 'manual__1', taskId: 'extract', mapIndex: -1 });
    await store.createDagRun(run, [ti]);
    const second = dagRun('etl', 'manual__1', { state: 'running', conf: { other: true } });
    const secondTi = taskInstance({ dagId: 'etl', runId: 'manual__1', taskId: 'load', mapIndex: -1 });
    await expect(store.createDagRun(second, [secondTi])).rejects.toThrow(AlreadyExistsError);
    expect(await store.getRunSnapshot({ dagId: 'etl', runId: 'manual__1' })).toEqual({
      run,
      taskInstances: [ti],
      taskSlots: { used: 0, holders: {}, waiting: {} },
      summary: { clearCount: 0, version: 0, tasks: { extract: { state: 'none', tryNumber: 0 } } },
    });
  });

  it('returns the run and all 300 task instances in one snapshot, across query pages', async () => {
    const store = await harness.newStore();
    const run = dagRun('big', 'manual__1');
    // ~4 KB per TI makes the partition ~1.2 MB, over DynamoDB's 1 MB page.
    const tis = Array.from({ length: 300 }, (_, index) =>
      taskInstance(
        { dagId: 'big', runId: 'manual__1', taskId: `task_${String(index).padStart(3, '0')}`, mapIndex: -1 },
        { errorMessage: 'x'.repeat(4_000), followTaskIds: [`next_${index}`] },
      ),
    );
    await store.createDagRun(run, tis);
    const snapshot = await store.getRunSnapshot({ dagId: 'big', runId: 'manual__1' });
    expect(snapshot?.run).toEqual(run);
    expect(snapshot?.taskInstances).toHaveLength(300);
    expect(snapshot?.taskInstances).toEqual(tis);
  });

  it('returns undefined for the snapshot of an unknown run', async () => {
    const store = await harness.newStore();
    expect(await store.getRunSnapshot({ dagId: 'etl', runId: 'nope' })).toBeUndefined();
  });

  it('lists the runs of a DAG newest logical date first, page by page', async () => {
    const store = await harness.newStore();
    for (const day of ['03', '01', '04', '02']) {
      await store.createDagRun(
        dagRun('etl', `run_${day}`, { logicalDate: `2026-01-${day}T00:00:00.000Z` }),
        [],
      );
    }
    await store.createDagRun(dagRun('other', 'run_09', { logicalDate: '2026-01-09T00:00:00.000Z' }), []);
    const first = await store.listDagRuns('etl', { limit: 3 });
    expect(first.items.map((run) => run.runId)).toEqual(['run_04', 'run_03', 'run_02']);
    expect(first.items[0]).toEqual(dagRun('etl', 'run_04', { logicalDate: '2026-01-04T00:00:00.000Z' }));
    expect(first.nextCursor).toBeDefined();
    const second = await store.listDagRuns('etl', { limit: 3, cursor: first.nextCursor as string });
    expect(second.items.map((run) => run.runId)).toEqual(['run_01']);
    expect(second.nextCursor).toBeUndefined();
  });

  it('lists queued and running runs as active and drops a run once it succeeds', async () => {
    const store = await harness.newStore();
    await store.createDagRun(dagRun('etl', 'r1'), []);
    await store.createDagRun(dagRun('etl', 'r2', { state: 'running' }), []);
    await store.createDagRun(dagRun('load', 'r1'), []);
    await store.createDagRun(dagRun('etl', 'r0', { state: 'success' }), []);
    const finished = await store.transitionDagRun(
      { dagId: 'etl', runId: 'r1' },
      ['queued', 'running'],
      { state: 'success', endDate: '2026-01-01T00:10:00.000Z' },
      { owed: [] },
    );
    expect(finished).toEqual(
      dagRun('etl', 'r1', { state: 'success', endDate: '2026-01-01T00:10:00.000Z', revision: 1 }),
    );
    expect((await store.listActiveDagRuns({ limit: 10 })).items).toEqual([
      { dagId: 'etl', runId: 'r2', state: 'running' },
      { dagId: 'load', runId: 'r1', state: 'queued' },
    ]);
    expect((await store.listActiveDagRuns({ limit: 10, dagId: 'load' })).items).toEqual([
      { dagId: 'load', runId: 'r1', state: 'queued' },
    ]);
  });

  it('keeps a run active with its new state when it moves from queued to running', async () => {
    const store = await harness.newStore();
    await store.createDagRun(dagRun('etl', 'r1'), []);
    await store.transitionDagRun({ dagId: 'etl', runId: 'r1' }, 'queued', { state: 'running' });
    expect((await store.listActiveDagRuns({ limit: 10 })).items).toEqual([
      { dagId: 'etl', runId: 'r1', state: 'running' },
    ]);
  });

  it('refuses a run transition from an unexpected state and changes nothing', async () => {
    const store = await harness.newStore();
    const run = dagRun('etl', 'r1');
    await store.createDagRun(run, []);
    await expect(
      store.transitionDagRun({ dagId: 'etl', runId: 'r1' }, 'running', { state: 'failed' }, { owed: [] }),
    ).rejects.toThrow(ConditionFailedError);
    expect(await store.getDagRun({ dagId: 'etl', runId: 'r1' })).toEqual(run);
  });

  it('refuses a transition of a run that does not exist', async () => {
    const store = await harness.newStore();
    await expect(
      store.transitionDagRun({ dagId: 'etl', runId: 'ghost' }, 'queued', { state: 'running' }),
    ).rejects.toThrow('DAG run etl/ghost was not updated');
    expect(await store.getDagRun({ dagId: 'etl', runId: 'ghost' })).toBeUndefined();
  });
});

describe('DynamoStore XCom', () => {
  const ti = { dagId: 'etl', runId: 'r1', taskId: 'extract', mapIndex: -1 };

  it('gives back the value put under a key and undefined for another key', async () => {
    const store = await harness.newStore();
    await store.putXCom({ ...ti, key: 'return_value' }, '{"rows":3}');
    expect(await store.getXCom({ ...ti, key: 'return_value' })).toBe('{"rows":3}');
    expect(await store.getXCom({ ...ti, key: 'other' })).toBeUndefined();
  });

  it('deletes every key of one task instance and only of that one', async () => {
    const store = await harness.newStore();
    const mapped1 = { ...ti, mapIndex: 1 };
    const mapped10 = { ...ti, mapIndex: 10 };
    await store.putXCom({ ...mapped1, key: 'a' }, '1');
    await store.putXCom({ ...mapped1, key: 'b' }, '2');
    await store.putXCom({ ...mapped10, key: 'a' }, '10');
    await store.putXCom({ ...ti, key: 'a' }, '-1');
    await store.deleteXComs(mapped1);
    expect(await store.getXCom({ ...mapped1, key: 'a' })).toBeUndefined();
    expect(await store.getXCom({ ...mapped1, key: 'b' })).toBeUndefined();
    expect(await store.getXCom({ ...mapped10, key: 'a' })).toBe('10');
    expect(await store.getXCom({ ...ti, key: 'a' })).toBe('-1');
  });

  it('refuses a value over 350,000 bytes, naming the XCom and the limit, and stores nothing', async () => {
    const store = await harness.newStore();
    const key = { ...ti, key: 'return_value' };
    await expect(store.putXCom(key, 'x'.repeat(350_001))).rejects.toThrow(
      "XCom 'return_value' of task instance etl/r1/extract is 350001 bytes, over the store limit of 350000 bytes",
    );
    expect(await store.getXCom(key)).toBeUndefined();
  });

  it('refuses an XCom key containing the key separator', async () => {
    const store = await harness.newStore();
    await expect(store.putXCom({ ...ti, key: 'a#PAGE#1' }, '1')).rejects.toThrow(
      "XCom key 'a#PAGE#1' cannot be stored",
    );
  });

  it('accepts a value of exactly 350,000 bytes', async () => {
    const store = await harness.newStore();
    const key = { ...ti, key: 'return_value' };
    await store.putXCom(key, 'x'.repeat(350_000));
    expect((await store.getXCom(key))?.length).toBe(350_000);
  });
});
