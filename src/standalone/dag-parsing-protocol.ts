/**
 * Messages between the DAG processor (the main process) and a parser process (a child that
 * imports DAG files, one at a time, over Node's IPC channel).
 */

import type { TrackedModule } from '#bundles/import-graph.ts';

export type ProcessorToParser = { type: 'parse'; requestId: number; file: string; fileloc: string };

/** One DAG a file defines: its serialized form and the hash of that form alone. */
export interface ParsedDag {
  dag: unknown;
  serializedHash: string;
}

export type ParserToProcessor =
  | { type: 'ready' }
  | {
      type: 'parsed';
      requestId: number;
      /** The DAGs of the file (none when `error` is set). */
      dags: ParsedDag[];
      /** Why the file, or one of its DAGs, could not be loaded. */
      errors: string[];
      /** The file and the local modules it imports: its code bundle. */
      bundle: TrackedModule[];
      /** Local modules this process loaded for the first time, so the processor can tell when they change. */
      loaded: TrackedModule[];
    };
