import { describe, expect, it } from 'vitest';
import { bundleDirName, bundleVersionHash, isVersionHash } from '#bundles/version.ts';

const files = [
  { path: 'etl.ts', sha256: 'a'.repeat(64) },
  { path: '_lib/helper.ts', sha256: 'b'.repeat(64) },
];

describe('bundleVersionHash', () => {
  it('names a version with 16 hex digits, the same for the same DAG and files in any order', () => {
    const hash = bundleVersionHash('0123456789abcdef', files);
    expect(isVersionHash(hash)).toBe(true);
    expect(bundleVersionHash('0123456789abcdef', [...files].reverse())).toBe(hash);
  });

  it('changes when a helper module changes, with the same serialized DAG', () => {
    const changed = [files[0]!, { path: '_lib/helper.ts', sha256: 'c'.repeat(64) }];
    expect(bundleVersionHash('0123456789abcdef', changed)).not.toBe(
      bundleVersionHash('0123456789abcdef', files),
    );
  });

  it('changes when the serialized DAG changes, with the same files', () => {
    expect(bundleVersionHash('fedcba9876543210', files)).not.toBe(
      bundleVersionHash('0123456789abcdef', files),
    );
  });
});

describe('bundleDirName', () => {
  it('uses a plain DAG id as it is', () => {
    expect(bundleDirName('example_etl')).toBe('example_etl');
  });

  it('hashes ids that are not safe folder names, so they cannot climb out or collide', () => {
    expect(bundleDirName('..')).toMatch(/^~[0-9a-f]{32}$/);
    expect(bundleDirName('.')).not.toBe(bundleDirName('..'));
    expect(bundleDirName('x'.repeat(250))).toMatch(/^~[0-9a-f]{32}$/);
  });
});
