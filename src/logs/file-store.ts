import { createHash, randomBytes } from 'node:crypto';
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
    const parts = [
      `dag_id=${pathSegmentOf(key.dagId)}`,
      `run_id=${pathSegmentOf(key.runId)}`,
      `task_id=${pathSegmentOf(key.taskId)}`,
    ];
    if (key.mapIndex >= 0) parts.push(`map_index=${key.mapIndex}`);
    return join(this.#root, ...parts, `attempt=${tryNumber}`);
  }
}

/** Ids up to this length are their own folder name (`run_id=` + 200 stays under NAME_MAX, 255 bytes). */
const READABLE_MAX = 200;
/** Readable head kept in front of the hash of an id that cannot be its own folder name. */
const HASHED_PREFIX = 100;
/** Characters of the id grammar (`#core/ids.ts`); anything else is replaced in the readable head. */
const PLAIN = /^[A-Za-z0-9_.:+~-]+$/;

/**
 * The folder name of an id. A plain id (the id grammar, not starting with a dot, at most 200
 * characters) is its own name, as in Airflow. Any other string becomes `<readable head>@<hash>`:
 * `@` is in no id, so such a name never equals a plain one, and the sha-256 of the whole id
 * keeps two ids with the same head apart. Every name fits NAME_MAX and none is `.` or `..`.
 */
export function pathSegmentOf(id: string): string {
  if (id.length <= READABLE_MAX && PLAIN.test(id) && !id.startsWith('.')) return id;
  const head = id
    .slice(0, HASHED_PREFIX)
    .replace(/[^A-Za-z0-9_.:+~-]/g, '_')
    .replace(/^\.+/, '');
  return `${head}@${createHash('sha256').update(id).digest('hex').slice(0, 32)}`;
}

/** Chunk ids are made by the log port (digits and dashes); this only guards against separators. */
function safe(segment: string): string {
  return segment.replace(/[/\\]/g, '_').replace(/^\.+/, '_');
}
