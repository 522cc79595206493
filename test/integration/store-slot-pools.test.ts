import { GetCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DynamoStore } from '#store/dynamodb.ts';
import { createDynamoClient, toDocumentClient } from '#store/embedded.ts';
import { ConditionFailedError, InvalidKeyError, ItemTooLargeError } from '#store/errors.ts';
import { runTag } from '#store/holder-keys.ts';
import { instrumentClient, RequestCounter } from '#store/instrument.ts';
import { slotPoolKey } from '#store/keys.ts';
import type { SlotHolder, SlotPoolRef } from '#store/port.ts';
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

/** A store whose requests are counted from now on. */
async function countedStore(): Promise<DynamoStore> {
  const store = harness.storeOn(await harness.newTable(), counted);
  counter.reset();
  return store;
}

const pool: SlotPoolRef = { kind: 'pool', pool: 'default_pool' };

function holder(id: string, overrides: Partial<SlotHolder> = {}): SlotHolder {
  return { id, slots: 1, tryNumber: 1, passId: 'pass-1', at: '2026-01-01T00:00:00.000Z', ...overrides };
}

/** A slot-pool item as stored, keys and all. */
async function rawPool(table: string, ref: SlotPoolRef = pool) {
  return (await counted.send(new GetCommand({ TableName: table, Key: slotPoolKey(ref) }))).Item;
}

/** Writes a pool item as it stands (an earlier version's, a damaged one). */
async function putRawPool(table: string, fields: Record<string, unknown>): Promise<void> {
  await counted.send(new PutCommand({ TableName: table, Item: { ...slotPoolKey(pool), ...fields } }));
}

async function acquire(store: DynamoStore, size: number, ...holders: SlotHolder[]) {
  return store.updateSlotPool(pool, { size, acquire: holders, release: [] });
}

describe('DynamoStore slot pools: acquire', () => {
  it('reads a pool that was never written as empty', async () => {
    const store = await harness.newStore();
    expect(await store.getSlotPool(pool)).toEqual({ used: 0, holders: {}, waiting: {} });
  });

  it('acquires up to the size and returns the new state', async () => {
    const store = await harness.newStore();
    await acquire(store, 2, holder('a'));
    const state = await acquire(store, 2, holder('b'));
    expect(state).toEqual({ used: 2, holders: { a: holder('a'), b: holder('b') }, waiting: {} });
    expect(await store.getSlotPool(pool)).toEqual(state);
  });

  it('refuses an acquire beyond the size with ConditionFailedError and writes nothing', async () => {
    const store = await harness.newStore();
    const full = await acquire(store, 1, holder('a'));
    await expect(acquire(store, 1, holder('b'))).rejects.toThrow(ConditionFailedError);
    expect(await store.getSlotPool(pool)).toEqual(full);
  });

  it('names the pool and the shortage when refusing', async () => {
    const store = await harness.newStore();
    await acquire(store, 1, holder('a'));
    await expect(acquire(store, 1, holder('b'))).rejects.toThrow(
      "pool 'default_pool' was not updated: 1 of 1 slots are used: acquiring 1 would exceed the size",
    );
  });

  it('accepts an acquire that fills the pool exactly', async () => {
    const store = await harness.newStore();
    await acquire(store, 5, holder('a', { slots: 3 }));
    expect((await acquire(store, 5, holder('b', { slots: 2 }))).used).toBe(5);
  });

  it('refuses a second acquire of the same holder and keeps the first', async () => {
    const store = await harness.newStore();
    const first = await acquire(store, 5, holder('a'));
    await expect(acquire(store, 5, holder('a', { passId: 'pass-2' }))).rejects.toThrow(
      "holder 'a' already holds slots",
    );
    expect(await store.getSlotPool(pool)).toEqual(first);
  });

  it('counts weighted holders by their slots', async () => {
    const store = await harness.newStore();
    await acquire(store, 4, holder('heavy', { slots: 3 }));
    await expect(acquire(store, 4, holder('two', { slots: 2 }))).rejects.toThrow(ConditionFailedError);
    expect((await acquire(store, 4, holder('one'))).used).toBe(4);
  });

  it('lets exactly one of two concurrent acquirers take the last slot', async () => {
    const store = await harness.newStore();
    await acquire(store, 2, holder('a'));
    const results = await Promise.allSettled([
      acquire(store, 2, holder('b')),
      acquire(store, 2, holder('c')),
    ]);
    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.filter((result) => result.status === 'rejected');
    expect((rejected[0] as PromiseRejectedResult).reason).toBeInstanceOf(ConditionFailedError);
    expect((await store.getSlotPool(pool)).used).toBe(2);
  });

  it('lets two first acquirers of a pool that does not exist yet both create and join it', async () => {
    const store = await harness.newStore();
    await Promise.all([acquire(store, 2, holder('a')), acquire(store, 2, holder('b'))]);
    const state = await store.getSlotPool(pool);
    expect(state.used).toBe(2);
    expect(Object.keys(state.holders).sort()).toEqual(['a', 'b']);
  });

  it('keeps holder ids with dots, brackets, hashes and spaces as one map key each', async () => {
    const store = await harness.newStore();
    const ids = ['etl#r1#extract#-1', 'a.b', 'x[0]', 'with space'];
    const state = await acquire(store, 10, ...ids.map((id) => holder(id)));
    expect(Object.keys(state.holders).sort()).toEqual([...ids].sort());
    expect(state.used).toBe(4);
  });

  it('stores the pool a run_tasks holder also holds', async () => {
    const store = await harness.newStore();
    const ref: SlotPoolRef = { kind: 'run_tasks', dagId: 'etl', runId: 'r1' };
    const state = await store.updateSlotPool(ref, {
      size: 16,
      acquire: [holder('extract', { pool: 'db' })],
      release: [],
    });
    expect(state.holders.extract).toEqual(holder('extract', { pool: 'db' }));
  });
});

describe('DynamoStore slot pools: release', () => {
  it('releases a holder and frees its slots', async () => {
    const store = await harness.newStore();
    await acquire(store, 5, holder('a', { slots: 2 }), holder('b'));
    const state = await store.updateSlotPool(pool, { size: 5, acquire: [], release: [{ id: 'a' }] });
    expect(state).toEqual({ used: 1, holders: { b: holder('b') }, waiting: {} });
  });

  it('refuses a second release of the same holder with ConditionFailedError', async () => {
    const store = await harness.newStore();
    await acquire(store, 5, holder('a'), holder('b'));
    const release = { size: 5, acquire: [], release: [{ id: 'a', slots: 1 }] };
    const once = await store.updateSlotPool(pool, release);
    await expect(store.updateSlotPool(pool, release)).rejects.toThrow(ConditionFailedError);
    expect(await store.getSlotPool(pool)).toEqual(once);
  });

  it('refuses a release of a holder in a pool that does not exist, and creates nothing', async () => {
    const store = await harness.newStore();
    await expect(
      store.updateSlotPool(pool, { size: 5, acquire: [], release: [{ id: 'a', slots: 1 }] }),
    ).rejects.toThrow(ConditionFailedError);
    expect(await store.getSlotPool(pool)).toEqual({ used: 0, holders: {}, waiting: {} });
  });

  it('refuses a release guarded by another pass and keeps the holder', async () => {
    const store = await harness.newStore();
    const held = await acquire(store, 5, holder('a'));
    await expect(
      store.updateSlotPool(pool, { size: 5, acquire: [], release: [{ id: 'a', passId: 'pass-2' }] }),
    ).rejects.toThrow("holder 'a' was reserved by pass pass-1, not pass-2");
    expect(await store.getSlotPool(pool)).toEqual(held);
  });

  it('releases a holder guarded by the pass that reserved it', async () => {
    const store = await harness.newStore();
    await acquire(store, 5, holder('a'));
    const state = await store.updateSlotPool(pool, {
      size: 5,
      acquire: [],
      release: [{ id: 'a', passId: 'pass-1', slots: 1 }],
    });
    expect(state.used).toBe(0);
  });

  it('refuses a release that states other slots than the holder has', async () => {
    const store = await harness.newStore();
    const held = await acquire(store, 5, holder('a', { slots: 3 }));
    await expect(
      store.updateSlotPool(pool, { size: 5, acquire: [], release: [{ id: 'a', slots: 1 }] }),
    ).rejects.toThrow("holder 'a' holds 3 slots, not 1");
    expect(await store.getSlotPool(pool)).toEqual(held);
  });

  it('acquires the slots another holder releases in the same write', async () => {
    const store = await harness.newStore();
    await acquire(store, 2, holder('a'), holder('b'));
    const state = await store.updateSlotPool(pool, {
      size: 2,
      acquire: [holder('c')],
      release: [{ id: 'a', slots: 1 }],
    });
    expect(Object.keys(state.holders).sort()).toEqual(['b', 'c']);
    expect(state.used).toBe(2);
  });
});

describe('DynamoStore slot pools: waiting runs and requests', () => {
  it('sets and removes waiting entries', async () => {
    const store = await harness.newStore();
    const ref: SlotPoolRef = { kind: 'dag_runs', dagId: 'etl' };
    const t = '2026-01-01T00:00:00.000Z';
    await store.updateSlotPool(ref, {
      size: 1,
      acquire: [],
      release: [],
      setWaiting: { 'etl#r1': t, 'etl#r2': t },
    });
    const state = await store.updateSlotPool(ref, {
      size: 1,
      acquire: [],
      release: [],
      removeWaiting: ['etl#r1'],
    });
    expect(state).toEqual({ used: 0, holders: {}, waiting: { 'etl#r2': t } });
  });

  it('sends nothing for an empty change and returns the stored state', async () => {
    const store = await countedStore();
    const state = await store.updateSlotPool(pool, { size: 1, acquire: [], release: [], setWaiting: {} });
    expect(state).toEqual({ used: 0, holders: {}, waiting: {} });
    expect(counter.snapshot().writes).toBe(0);
  });

  it('applies an acquire on an existing pool with one UpdateItem', async () => {
    const store = await countedStore();
    await acquire(store, 5, holder('a'));
    counter.reset();
    await acquire(store, 5, holder('b'));
    expect(counter.snapshot().byOperation).toEqual({ UpdateItem: 1 });
  });

  it('refuses an empty holder id with InvalidKeyError before any request', async () => {
    const store = await countedStore();
    await expect(acquire(store, 5, holder(''))).rejects.toThrow(InvalidKeyError);
    expect(counter.snapshot().byOperation).toEqual({});
  });

  it('keeps the run_tasks item in the run snapshot as its task slots, not as a task instance', async () => {
    const store = await harness.newStore();
    const ti = taskInstance({ dagId: 'etl', runId: 'r1', taskId: 'extract', mapIndex: -1 });
    await store.createDagRun(dagRun('etl', 'r1'), [ti]);
    const ref: SlotPoolRef = { kind: 'run_tasks', dagId: 'etl', runId: 'r1' };
    const taskSlots = await store.updateSlotPool(ref, { size: 4, acquire: [holder('extract')], release: [] });
    const snapshot = await store.getRunSnapshot(ref);
    expect(snapshot?.taskInstances).toEqual([ti]);
    expect(snapshot?.taskSlots).toEqual(taskSlots);
  });

  it('keeps the three kinds of pool apart', async () => {
    const store = await harness.newStore();
    await acquire(store, 5, holder('a'));
    expect((await store.getSlotPool({ kind: 'dag_runs', dagId: 'default_pool' })).used).toBe(0);
    expect((await store.getSlotPool({ kind: 'run_tasks', dagId: 'etl', runId: 'default_pool' })).used).toBe(
      0,
    );
  });
});

describe('DynamoStore slot pools: how holders are stored', () => {
  it("stores each holder as a compact list under its run's tag, the tag's run once, and reads it back whole", async () => {
    const table = await harness.newTable();
    const store = harness.storeOn(table, counted);
    const weighted = holder('etl#run-1#extract#-1#1', { slots: 3, pool: 'db', passId: 'p9' });
    const other = holder('etl#run-1#load#-1#1');
    await acquire(store, 5, weighted, other);
    const raw = await rawPool(table);
    const tag = runTag('etl#run-1');
    expect(tag).toMatch(/^~[A-Za-z0-9_-]{11}$/);
    expect(raw?.holders).toEqual({
      [`${tag}#extract#-1#1`]: [3, 1, 'p9', Date.parse('2026-01-01T00:00:00.000Z'), 'db'],
      [`${tag}#load#-1#1`]: [1, 1, 'pass-1', Date.parse('2026-01-01T00:00:00.000Z')],
    });
    expect(raw?.runs).toEqual({ [tag]: 'etl#run-1' });
    expect((await store.getSlotPool(pool)).holders).toEqual({
      'etl#run-1#extract#-1#1': weighted,
      'etl#run-1#load#-1#1': other,
    });
  });

  it("keys a run's task-slot holders relative to the run, in its snapshot too", async () => {
    const table = await harness.newTable();
    const store = harness.storeOn(table, counted);
    await store.createDagRun(dagRun('etl', 'r1'), [
      taskInstance({ dagId: 'etl', runId: 'r1', taskId: 'extract', mapIndex: -1 }),
    ]);
    const ref: SlotPoolRef = { kind: 'run_tasks', dagId: 'etl', runId: 'r1' };
    const held = holder('etl#r1#extract#-1#1', { pool: 'default_pool' });
    await store.updateSlotPool(ref, { size: 4, acquire: [held], release: [] });
    const raw = await rawPool(table, ref);
    expect(Object.keys(raw?.holders ?? {})).toEqual(['~#extract#-1#1']);
    expect((await store.getSlotPool(ref)).holders).toEqual({ 'etl#r1#extract#-1#1': held });
    expect((await store.getRunSnapshot(ref))?.taskSlots.holders).toEqual({ 'etl#r1#extract#-1#1': held });
    const after = await store.updateSlotPool(ref, {
      size: 4,
      acquire: [],
      release: [{ id: held.id, slots: 1 }],
    });
    expect(after.used).toBe(0);
  });

  it('reads, releases and acquires beside holders stored under their whole id by earlier versions', async () => {
    const table = await harness.newTable();
    const store = harness.storeOn(table, counted);
    const at = Date.parse('2026-01-01T00:00:00.000Z');
    // A pool item as written before run tags: whole ids, no `runs` map, no revision.
    await putRawPool(table, {
      used: 2,
      holders: { 'etl#r0#a#-1#1': [1, 1, 'pass-1', at], 'etl#r0#b#-1#1': [1, 1, 'pass-1', at] },
      waiting: {},
    });
    expect(Object.keys((await store.getSlotPool(pool)).holders).sort()).toEqual([
      'etl#r0#a#-1#1',
      'etl#r0#b#-1#1',
    ]);
    await expect(
      store.updateSlotPool(pool, {
        size: 3,
        acquire: [],
        release: [{ id: 'etl#r0#a#-1#1', passId: 'other', slots: 1 }],
      }),
    ).rejects.toThrow("holder 'etl#r0#a#-1#1' was reserved by pass pass-1, not other");
    const after = await store.updateSlotPool(pool, {
      size: 3,
      acquire: [holder('etl#r1#c#-1#1')],
      release: [{ id: 'etl#r0#a#-1#1', passId: 'pass-1', slots: 1 }],
    });
    expect(after).toEqual({
      used: 2,
      holders: { 'etl#r0#b#-1#1': holder('etl#r0#b#-1#1'), 'etl#r1#c#-1#1': holder('etl#r1#c#-1#1') },
      waiting: {},
    });
    const raw = await rawPool(table);
    expect(Object.keys(raw?.holders ?? {}).sort()).toEqual(
      ['etl#r0#b#-1#1', `${runTag('etl#r1')}#c#-1#1`].sort(),
    );
  });

  it('forgets the tags of runs that hold nothing any more, a few at a time', async () => {
    const table = await harness.newTable();
    const store = harness.storeOn(table, counted);
    const runs = ['r1', 'r2', 'r3', 'r4', 'r5'];
    await acquire(store, 10, ...runs.map((run) => holder(`etl#${run}#t#-1#1`)));
    const tags = async () => {
      const raw = await rawPool(table);
      return Object.values(raw?.runs ?? {}).sort();
    };
    for (const run of runs.slice(0, 3)) {
      await store.updateSlotPool(pool, {
        size: 10,
        acquire: [],
        release: [{ id: `etl#${run}#t#-1#1`, slots: 1 }],
      });
    }
    // Three unused: kept (each removal rewrites the whole item).
    expect(await tags()).toEqual(runs.map((run) => `etl#${run}`));
    await store.updateSlotPool(pool, { size: 10, acquire: [], release: [{ id: 'etl#r4#t#-1#1', slots: 1 }] });
    expect(await tags()).toEqual(['etl#r5']);
    expect(Object.keys((await store.getSlotPool(pool)).holders)).toEqual(['etl#r5#t#-1#1']);
  });

  it('takes acquires of 17 runs in one change within the 4 KB expression limit, and refuses 18 before any request', async () => {
    const table = await harness.newTable();
    const store = harness.storeOn(table, counted);
    const ofRuns = (count: number, prefix: string) =>
      Array.from({ length: count }, (_, index) =>
        holder(
          `a_dag_with_a_longer_id#manual__2026-12-03T15:${String(index).padStart(2, '0')}:00.000Z#${prefix}_task_with_a_long_id#-1#1`,
        ),
      );
    const state = await acquire(store, 100, ...ofRuns(17, 'first'));
    expect(Object.keys(state.holders)).toHaveLength(17);
    counter.reset();
    await expect(acquire(store, 100, ...ofRuns(18, 'second'))).rejects.toThrow(
      /names 52 holders and waiting runs \(each run acquiring beyond the first counting 2 more for its tag\): over the limit of 50/,
    );
    expect(counter.snapshot().byOperation).toEqual({});
  });

  it('keeps ids that start with ~ apart from tagged keys', async () => {
    const store = await harness.newStore();
    const tag = runTag('etl#r1');
    const ids = ['etl#r1#a#-1#1', `${tag}#x`, '~', '~~y', `${tag}`];
    const state = await acquire(store, 10, ...ids.map((id) => holder(id)));
    expect(Object.keys(state.holders).sort()).toEqual([...ids].sort());
    const runTasks: SlotPoolRef = { kind: 'run_tasks', dagId: 'etl', runId: 'r1' };
    const relative = await store.updateSlotPool(runTasks, {
      size: 10,
      acquire: [holder('etl#r1#a#-1#1'), holder('~#a#-1#1')],
      release: [],
    });
    expect(Object.keys(relative.holders).sort()).toEqual(['etl#r1#a#-1#1', '~#a#-1#1']);
  });

  it('refuses a holder whose run tag already names another run, saying so', async () => {
    const table = await harness.newTable();
    const store = harness.storeOn(table, counted);
    await acquire(store, 5, holder('etl#r1#a#-1#1'));
    // Two runs whose tags collide (66 bits of SHA-256: made here by hand).
    const tag = runTag('etl#r2');
    await counted.send(
      new UpdateCommand({
        TableName: table,
        Key: slotPoolKey(pool),
        UpdateExpression: 'SET #runs.#tag = :other',
        ExpressionAttributeNames: { '#runs': 'runs', '#tag': tag },
        ExpressionAttributeValues: { ':other': 'etl#elsewhere' },
      }),
    );
    await expect(acquire(store, 5, holder('etl#r2#a#-1#1'))).rejects.toThrow(
      `run tag ${tag} of holder 'etl#r2#a#-1#1' names run etl#elsewhere already`,
    );
    expect(Object.keys((await store.getSlotPool(pool)).holders)).toEqual(['etl#r1#a#-1#1']);
  });

  it('reads and releases holders written as maps by earlier versions, on the same conditions', async () => {
    const table = await harness.newTable();
    const store = harness.storeOn(table, counted);
    const legacy = (id: string) => ({
      id,
      slots: 1,
      tryNumber: 1,
      passId: 'pass-1',
      at: '2026-01-01T00:00:00.000Z',
    });
    await putRawPool(table, { used: 2, holders: { a: legacy('a'), b: legacy('b') }, waiting: {} });
    expect((await store.getSlotPool(pool)).holders).toEqual({ a: holder('a'), b: holder('b') });
    await expect(
      store.updateSlotPool(pool, { size: 2, acquire: [], release: [{ id: 'a', passId: 'other', slots: 1 }] }),
    ).rejects.toThrow(ConditionFailedError);
    const after = await store.updateSlotPool(pool, {
      size: 2,
      acquire: [holder('c')],
      release: [{ id: 'a', passId: 'pass-1', slots: 1 }],
    });
    expect(after).toEqual({ used: 2, holders: { b: holder('b'), c: holder('c') }, waiting: {} });
  });
});

describe('DynamoStore slot pools: damaged holders', () => {
  it('reads a pool whose holders are damaged, each as an old one-slot holder of no pass', async () => {
    const table = await harness.newTable();
    const store = harness.storeOn(table, counted);
    await putRawPool(table, {
      used: 3,
      holders: { short: [2, 1, 'p'], gone: null, ok: [1, 1, 'p', 0] },
      waiting: {},
    });
    const state = await store.getSlotPool(pool);
    expect(state.holders.short).toEqual({
      id: 'short',
      slots: 2,
      tryNumber: 1,
      passId: 'p',
      at: '1970-01-01T00:00:00.000Z',
    });
    expect(state.holders.gone).toEqual({
      id: 'gone',
      slots: 1,
      tryNumber: 0,
      passId: '',
      at: '1970-01-01T00:00:00.000Z',
    });
    expect(state.holders.ok?.passId).toBe('p');
  });

  it('refuses to store a holder without a valid time', async () => {
    const store = await harness.newStore();
    await expect(acquire(store, 5, holder('a', { at: 'yesterday' }))).rejects.toThrow(
      /holder 'a' has no valid time/,
    );
    expect(await store.getSlotPool(pool)).toEqual({ used: 0, holders: {}, waiting: {} });
  });
});

describe('DynamoStore slot pools: a full item', () => {
  it('refuses an acquire that would pass the 400 KB item limit with ItemTooLargeError, changing nothing', async () => {
    const store = await harness.newStore();
    const long = (i: number) => `${String(i).padStart(4, '0')}${'x'.repeat(9_000)}`;
    let held = 0;
    let refused: unknown;
    while (refused === undefined && held < 100) {
      const batch = [0, 1, 2, 3].map((i) => holder(long(held + i)));
      try {
        await acquire(store, 1_000, ...batch);
        held += batch.length;
      } catch (error) {
        refused = error;
      }
    }
    expect(refused).toBeInstanceOf(ItemTooLargeError);
    expect((refused as Error).message).toMatch(/pool 'default_pool' cannot take 4 more holders: .*400 KB/);
    const state = await store.getSlotPool(pool);
    expect(state.used).toBe(held);
    expect(Object.keys(state.holders)).toHaveLength(held);
    // Releases still go through: the item only shrinks.
    const after = await store.updateSlotPool(pool, {
      size: 1_000,
      acquire: [],
      release: [{ id: long(0), slots: 1 }],
    });
    expect(after.used).toBe(held - 1);
  });
});

describe('the embedded server clients', () => {
  it('refuse an expression over 4 KB as DynamoDB does, although dynalite would take it', async () => {
    const table = await harness.newTable();
    const names: Record<string, string> = {};
    const clauses: string[] = [];
    for (let i = 0; i < 400; i += 1) {
      names[`#attribute${i}`] = `a${i}`;
      clauses.push(`attribute_not_exists(#attribute${i})`);
    }
    const write = counted.send(
      new PutCommand({
        TableName: table,
        Item: { pk: 'x', sk: 'y' },
        ConditionExpression: clauses.join(' AND '),
        ExpressionAttributeNames: names,
      }),
    );
    await expect(write).rejects.toMatchObject({ name: 'ValidationException' });
    await expect(write).rejects.toThrow(
      /ConditionExpression: Expression size has exceeded the maximum allowed size/,
    );
  });
});

describe('DynamoStore reconcile cursor', () => {
  it('starts with no cursor at version 0', async () => {
    const store = await harness.newStore();
    expect(await store.getReconcileCursor()).toEqual({ cursor: undefined, version: 0 });
  });

  it('moves the cursor at the version read and bumps the version', async () => {
    const store = await harness.newStore();
    expect(await store.putReconcileCursor('abc', 0)).toBe(true);
    expect(await store.putReconcileCursor(undefined, 1)).toBe(true);
    expect(await store.getReconcileCursor()).toEqual({ cursor: undefined, version: 2 });
  });

  it('refuses a move at a version another tick already moved past', async () => {
    const store = await harness.newStore();
    await store.putReconcileCursor('first', 0);
    expect(await store.putReconcileCursor('second', 0)).toBe(false);
    expect(await store.getReconcileCursor()).toEqual({ cursor: 'first', version: 1 });
  });
});
