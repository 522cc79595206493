import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerDags } from '#engine/dag-registry.ts';
import { silentLogger } from '#engine/logger.ts';
import { dag } from '#sdk/index.ts';
import { versionDag } from '#sdk/serialize.ts';
import type { Store } from '#store/port.ts';
import { type StoreHarness, startStoreHarness } from './store-fixtures.ts';

let h: StoreHarness;
let store: Store;
beforeAll(async () => {
  h = await startStoreHarness();
  store = await h.newStore();
});
afterAll(async () => {
  await h.close();
});

const deps = () => ({
  store: store,
  log: silentLogger,
  now: () => Date.parse('2026-01-01T00:00:00Z'),
  pausedAtCreation: false,
});
const small = dag({ id: 'small_dag' }, (d) => {
  d.task('only', async () => 1);
});
// Random text: the store keeps serialized DAGs gzip-compressed, and this does not compress under the limit.
const huge = dag({ id: 'huge_dag', params: { blob: randomBytes(400_000).toString('base64') } }, (d) => {
  d.task('only', async () => 1);
});

describe('registerDags', () => {
  it('reports a DAG too large for the store as an import error and still registers the others', async () => {
    await registerDags(deps(), {
      dags: [versionDag(huge, 'huge.ts'), versionDag(small, 'small.ts')],
      errors: [],
    });

    expect((await store.getDag('small_dag'))?.isActive).toBe(true);
    expect(await store.getDag('huge_dag')).toBeUndefined();
    const errors = await store.listImportErrors();
    expect(errors.map((error) => error.fileloc)).toEqual(['huge.ts']);
    expect(errors[0]?.message).toContain('DAG huge_dag cannot be stored');
    expect(errors[0]?.message).toContain('350000 bytes');
  });

  it('marks a DAG inactive once its file no longer defines it, and keeps DAGs of a broken file', async () => {
    await registerDags(deps(), {
      dags: [versionDag(small, 'small.ts')],
      errors: [{ fileloc: 'other.ts', message: 'SyntaxError' }],
    });
    const other = dag({ id: 'other_dag' }, (d) => {
      d.task('only', async () => 1);
    });
    await registerDags(deps(), {
      dags: [versionDag(other, 'other.ts')],
      errors: [{ fileloc: 'small.ts', message: 'boom' }],
    });
    expect((await store.getDag('small_dag'))?.isActive).toBe(true);
    await registerDags(deps(), { dags: [versionDag(other, 'other.ts')], errors: [] });
    expect((await store.getDag('small_dag'))?.isActive).toBe(false);
    expect(await store.listImportErrors()).toEqual([]);
  });
});
