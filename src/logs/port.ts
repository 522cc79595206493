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

/**
 * Chunk id of the worker's chunk `seq` (1, 2, …): fixed width, so ids sort as numbers. A try
 * that deferred runs again on a worker after each deferral (`phase`, the deferral it resumes
 * from), numbering its chunks from 1 again: those sort after the trigger's lines of that
 * deferral, which sort after everything before it.
 */
export function workerChunkId(seq: number, phase = 0): string {
  const chunk = String(seq).padStart(6, '0');
  return phase === 0 ? chunk : `p${String(phase).padStart(4, '0')}b-${chunk}`;
}

/** Chunk id of a trigger's chunk `seq` during deferral `deferralSeq` (1, 2, …) of a try. */
export function triggerChunkId(deferralSeq: number, seq: number): string {
  return `p${String(deferralSeq).padStart(4, '0')}a-${String(seq).padStart(6, '0')}`;
}

/** Chunk id of a note the API adds (a refused late report): `~` sorts after every worker chunk. */
export function noteChunkId(atMs: number): string {
  return `~${new Date(atMs).toISOString()}`;
}
