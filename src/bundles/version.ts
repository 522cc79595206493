import { createHash } from 'node:crypto';

/** A file of a DAG's code bundle: its path (relative to the DAGs folder, '/' separators) and content hash. */
export interface BundleFile {
  path: string;
  sha256: string;
}

/**
 * Names a DAG version: the first 16 hex digits of the sha256 of the serialized DAG's own hash and
 * of every file of its code bundle (the DAG file and the local modules it imports), by path. So
 * an edit to a task's code or to a helper module is a new version, as a change of structure is.
 */
export function bundleVersionHash(serializedHash: string, files: readonly BundleFile[]): string {
  const hash = createHash('sha256').update(`dag ${serializedHash}\n`);
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (const file of sorted) hash.update(`file ${file.path} ${file.sha256}\n`);
  return hash.digest('hex').slice(0, 16);
}

const VERSION_HASH = /^[0-9a-f]{16}$/;

export function isVersionHash(value: string): boolean {
  return VERSION_HASH.test(value);
}

const PLAIN_DIR_NAME = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}$/;

/**
 * The folder name of a DAG's bundles: the DAG id itself when it is a safe, short file name, else
 * '~' and the sha256 of the id ('~' is outside the DAG id grammar, so the two never collide).
 */
export function bundleDirName(dagId: string): string {
  if (PLAIN_DIR_NAME.test(dagId)) return dagId;
  return `~${createHash('sha256').update(dagId).digest('hex').slice(0, 32)}`;
}

export function sha256Of(content: Buffer | string): string {
  return createHash('sha256').update(content).digest('hex');
}
