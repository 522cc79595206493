import { describe, expect, it } from 'vitest';
import type { SerializedDag } from '#core/serialized-dag.ts';
import { DagVersionCache } from '#engine/dag-cache.ts';
import { NotFoundError } from '#engine/errors.ts';
import type { Store } from '#store/port.ts';

/** A store whose serialized-DAG reads are counted and answered when the test says so. */
function slowStore() {
  const reads: string[] = [];
  const pending: { resolve(dag: SerializedDag | undefined): void; reject(error: Error): void }[] = [];
  const store = {
    getSerializedDag: (dagId: string, version: string) => {
      reads.push(`${dagId}@${version}`);
      return new Promise<SerializedDag | undefined>((resolve, reject) => pending.push({ resolve, reject }));
    },
  } as unknown as Store;
  return { store, reads, pending };
}

const dag = { dagId: 'd' } as SerializedDag;

describe('DagVersionCache', () => {
  it('reads a version once for callers that ask while it is being read, then serves it from memory', async () => {
    const { store, reads, pending } = slowStore();
    const cache = new DagVersionCache(store);
    const waiting = Promise.all([cache.get('d', 'v1'), cache.get('d', 'v1'), cache.get('d', 'v1')]);
    expect(reads).toEqual(['d@v1']);
    pending[0]?.resolve(dag);
    expect(await waiting).toEqual([dag, dag, dag]);
    expect(await cache.get('d', 'v1')).toBe(dag);
    expect(reads).toEqual(['d@v1']);
  });

  it('keeps no failed read: each waiter gets the error, and the next call reads again', async () => {
    const { store, reads, pending } = slowStore();
    const cache = new DagVersionCache(store);
    const first = Promise.allSettled([cache.get('d', 'v1'), cache.get('d', 'v1')]);
    pending[0]?.reject(new Error('store down'));
    expect((await first).map((result) => result.status)).toEqual(['rejected', 'rejected']);
    const missing = cache.get('d', 'v1');
    pending[1]?.resolve(undefined);
    await expect(missing).rejects.toBeInstanceOf(NotFoundError);
    const found = cache.get('d', 'v1');
    pending[2]?.resolve(dag);
    expect(await found).toBe(dag);
    expect(reads).toEqual(['d@v1', 'd@v1', 'd@v1']);
  });

  it('reads through the given reader when the version is neither kept nor being read, and says what it holds', async () => {
    const { store, reads, pending } = slowStore();
    const cache = new DagVersionCache(store);
    expect(cache.holds('d', 'v1')).toBe(false);
    let given: (dag: SerializedDag | undefined) => void = () => {};
    const viaReader = cache.get('d', 'v1', () => new Promise((resolve) => (given = resolve)));
    expect(cache.holds('d', 'v1')).toBe(true);
    // A caller while it is being read shares it; the reader of a later caller is not used.
    const sharing = cache.get('d', 'v1', () => Promise.reject(new Error('not called')));
    given(dag);
    expect(await Promise.all([viaReader, sharing])).toEqual([dag, dag]);
    expect(reads).toEqual([]);
    expect(cache.holds('d', 'v1')).toBe(true);
    // A reader that finds nothing: the version does not exist, and nothing is kept.
    await expect(cache.get('d', 'v2', async () => undefined)).rejects.toBeInstanceOf(NotFoundError);
    expect(cache.holds('d', 'v2')).toBe(false);
    expect(pending).toEqual([]);
  });
});
