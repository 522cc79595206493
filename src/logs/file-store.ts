import { appendFile, mkdir, readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { TaskInstanceKey } from '#core/models.ts';
import type { LogStore } from './port.ts';

/**
 * Task logs as files, laid out like Airflow's:
 * `<root>/dag_id=<dag>/run_id=<run>/task_id=<task>[/map_index=<n>]/attempt=<try>.log`.
 * A try's log is capped at `maxBytes` (UPDRAFT_LOG_MAX_BYTES); output past it is dropped
 * after one notice line, so a chatty task cannot fill the disk.
 */
export class FileLogStore implements LogStore {
  readonly #root: string;
  readonly #maxBytes: number;
  readonly #sizes = new Map<string, number>();

  constructor(root: string, maxBytes: number) {
    this.#root = root;
    this.#maxBytes = maxBytes;
  }

  async append(key: TaskInstanceKey, tryNumber: number, text: string): Promise<boolean> {
    if (text.length === 0) return true;
    const path = this.pathOf(key, tryNumber);
    let size = this.#sizes.get(path);
    if (size === undefined)
      size = await stat(path).then(
        (s) => s.size,
        () => 0,
      );
    if (size >= this.#maxBytes) return false;
    let chunk = text;
    const bytes = Buffer.byteLength(chunk);
    if (size + bytes > this.#maxBytes) {
      chunk = `${Buffer.from(chunk)
        .subarray(0, Math.max(0, this.#maxBytes - size))
        .toString()}\n[log truncated: this try's log reached ${this.#maxBytes} bytes (UPDRAFT_LOG_MAX_BYTES)]\n`;
    }
    await mkdir(dirname(path), { recursive: true });
    await appendFile(path, chunk);
    this.#sizes.set(path, size + Buffer.byteLength(chunk));
    if (this.#sizes.size > 10_000) this.#sizes.clear();
    return size + bytes <= this.#maxBytes;
  }

  async read(key: TaskInstanceKey, tryNumber: number): Promise<string | undefined> {
    try {
      return await readFile(this.pathOf(key, tryNumber), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  pathOf(key: TaskInstanceKey, tryNumber: number): string {
    const parts = [`dag_id=${safe(key.dagId)}`, `run_id=${safe(key.runId)}`, `task_id=${safe(key.taskId)}`];
    if (key.mapIndex >= 0) parts.push(`map_index=${key.mapIndex}`);
    return join(this.#root, ...parts, `attempt=${tryNumber}.log`);
  }
}

/** Ids are validated elsewhere; this only guards the path against separators. */
function safe(segment: string): string {
  return segment.replace(/[/\\]/g, '_').replace(/^\.+/, '_');
}
