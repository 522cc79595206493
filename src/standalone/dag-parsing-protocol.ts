/**
 * Messages between the DAG processor (the main process) and a parser process (a child that
 * imports one DAG file, over Node's IPC channel).
 */

import type { TrackedModule } from '#bundles/import-graph.ts';

export interface ProcessorToParser {
  type: 'parse';
  requestId: number;
  /** The one DAG file this parser process serves (every request of a process names the same file). */
  file: string;
  fileloc: string;
  /** The DAGs folder: files the DAG file reads under it at import are part of its bundle. */
  dagsFolder: string;
  /**
   * A file the parser appends one JSON line to for each local module it loads and each data file
   * it reads, at once: after a timeout or a crash, the processor still knows what the file used.
   */
  loadLog: string;
}

/** One line of a parser's load log: a file as it was when the parser loaded or read it. */
export interface LoadLogEntry {
  path: string;
  mtimeMs: number;
  size: number;
}

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
      /** The file, the local modules it imports and the data files it read under the DAGs folder: its code bundle. */
      bundle: TrackedModule[];
      /** Local modules (and data files) this process loaded for the first time, so the processor can tell when they change. */
      loaded: TrackedModule[];
    };
