import type { TaskInstanceKey } from '#core/models.ts';

/**
 * Where task logs live: per try of a task instance, a set of chunks read back in chunk id order.
 * Appending never reads or rewrites what is there, so any number of API instances can write
 * and read one log. Standalone keeps them as files under `<home>/logs/`; the AWS deployment adds
 * an S3 or CloudWatch Logs adapter behind the same port.
 */
export interface LogStore {
  /** Idempotent: writing the same chunk id twice keeps one copy. Chunk ids sort in read order. */
  appendChunk(key: TaskInstanceKey, tryNumber: number, chunkId: string, text: string): Promise<void>;
  /** The try's chunks concatenated in chunk id order; undefined when nothing was written. */
  read(key: TaskInstanceKey, tryNumber: number): Promise<string | undefined>;
}

/** Chunk id of the worker's chunk `seq` (1, 2, …): fixed width, so ids sort as numbers. */
export function workerChunkId(seq: number): string {
  return String(seq).padStart(6, '0');
}

/** Chunk id of a note the API adds (a refused late report): `~` sorts after every worker chunk. */
export function noteChunkId(atMs: number): string {
  return `~${new Date(atMs).toISOString()}`;
}
