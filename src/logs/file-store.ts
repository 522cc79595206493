import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TaskInstanceKey } from '#core/models.ts';
import type { LogStore } from './port.ts';

const CHUNK_SUFFIX = '.log';

/**
 * Task logs as files, in Airflow's folder layout with one file per chunk:
 * `<root>/dag_id=<dag>/run_id=<run>/task_id=<task>[/map_index=<n>]/attempt=<try>/<chunk id>.log`.
 * A chunk is written to a temporary name and renamed into place, so a reader never sees half a
 * chunk and a repeated chunk replaces its twin instead of doubling it. Nothing is kept in memory:
 * another instance on the same folder reads the same log.
 */
export class FileLogStore implements LogStore {
  readonly #root: string;

  constructor(root: string) {
    this.#root = root;
  }

  async appendChunk(key: TaskInstanceKey, tryNumber: number, chunkId: string, text: string): Promise<void> {
    const folder = this.folderOf(key, tryNumber);
    await mkdir(folder, { recursive: true });
    const path = join(folder, `${safe(chunkId)}${CHUNK_SUFFIX}`);
    const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await writeFile(temporary, text);
      await rename(temporary, path);
    } catch (error) {
      await rm(temporary, { force: true });
      throw error;
    }
  }

  async read(key: TaskInstanceKey, tryNumber: number): Promise<string | undefined> {
    const folder = this.folderOf(key, tryNumber);
    let names: string[];
    try {
      names = await readdir(folder);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    // Code-unit order, not locale order: chunk ids are built to sort that way.
    const chunks = names.filter((name) => name.endsWith(CHUNK_SUFFIX)).sort();
    if (chunks.length === 0) return undefined;
    const texts = await Promise.all(chunks.map((name) => readFile(join(folder, name), 'utf8')));
    return texts.join('');
  }

  folderOf(key: TaskInstanceKey, tryNumber: number): string {
    const parts = [`dag_id=${safe(key.dagId)}`, `run_id=${safe(key.runId)}`, `task_id=${safe(key.taskId)}`];
    if (key.mapIndex >= 0) parts.push(`map_index=${key.mapIndex}`);
    return join(this.#root, ...parts, `attempt=${tryNumber}`);
  }
}

/** Ids are validated elsewhere; this only guards the path against separators. */
function safe(segment: string): string {
  return segment.replace(/[/\\]/g, '_').replace(/^\.+/, '_');
}
