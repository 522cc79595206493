import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BundleStore, FILES_DIR, MANIFEST_NAME } from '#bundles/store.ts';

describe('BundleStore.locate', () => {
  const folders: string[] = [];
  afterAll(async () => {
    for (const folder of folders) await rm(folder, { recursive: true, force: true });
  });

  it('reads a bundle once: it never changes, so later tries of the version do not read its manifest again', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'updraft-bundles-'));
    folders.push(folder);
    const store = new BundleStore(folder);
    const version = '0123456789abcdef';
    expect(await store.locate('etl', version)).toBeUndefined();
    const dir = store.dirOf('etl', version);
    await mkdir(join(dir, FILES_DIR), { recursive: true });
    const manifest = {
      formatVersion: 1,
      dagId: 'etl',
      versionHash: version,
      sourceRoot: '/x',
      entry: 'etl.ts',
      files: [],
    };
    await writeFile(join(dir, MANIFEST_NAME), JSON.stringify(manifest));
    // Not found before, found now: a missing bundle is not remembered.
    const first = await store.locate('etl', version);
    expect(first?.entryFile).toBe(join(dir, FILES_DIR, 'etl.ts'));
    await rm(join(dir, MANIFEST_NAME));
    expect(await store.locate('etl', version)).toEqual(first);
  });
});
