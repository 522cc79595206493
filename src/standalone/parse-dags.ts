import { relative, sep } from 'node:path';
import { BundleError } from '#bundles/errors.ts';
import type { TrackedModule } from '#bundles/import-graph.ts';
import type { BundleStore } from '#bundles/store.ts';
import { bundleVersionHash } from '#bundles/version.ts';
import { serializedDagSchema } from '#core/serialized-dag.ts';
import type { ParsedDagsFolder } from '#engine/dag-registry.ts';
import { listDagFiles } from '#sdk/loader.ts';
import type { ParsedDag } from './dag-parsing-protocol.ts';
import { ParserProcess } from './parser-process.ts';

export interface DagFileParserOptions {
  dagsFolder: string;
  /** Working directory of the parser processes. */
  cwd: string;
  /** Time limit of one file's import (UPDRAFT_DAG_FILE_PARSE_TIMEOUT_MS). */
  fileTimeoutMs: number;
  /** Where each version's code bundle is written before the version is returned; none: no bundles. */
  bundles?: BundleStore;
  /** Parser processes working at once (default 2, as Airflow's parsing_processes). */
  processes?: number;
}

/** What one file gave: its DAGs and its code bundle, or why it could not be loaded. */
interface FileResult {
  dags: ParsedDag[];
  errors: string[];
  bundle: TrackedModule[];
}

/**
 * The DAG processor: parses the DAGs folder file by file in a small pool of reusable parser
 * processes (docs/architecture.md, "DAG parsing"). Each file has its own time limit; a file that
 * exits, crashes or runs over it is an import error of its own, its process is replaced and the
 * other files are parsed as usual. A process is reused for the next file and the next parse
 * until a module it loaded changes on disk, so an unchanged folder costs no new process and no
 * new import. Each DAG's version names its serialized form and its code bundle; the bundle is
 * snapshotted before the version is returned, so every registered version has its code.
 */
export class DagFileParser {
  readonly #options: DagFileParserOptions;
  readonly #idle: ParserProcess[] = [];
  #closed = false;

  constructor(options: DagFileParserOptions) {
    this.#options = options;
  }

  async parse(): Promise<ParsedDagsFolder> {
    const { dagsFolder } = this.#options;
    const files = await listDagFiles(dagsFolder);
    await this.#retireChanged();
    const results: FileResult[] = new Array(files.length);
    let next = 0;
    const workers = Math.max(1, Math.min(this.#poolSize(), files.length));
    await Promise.all(
      Array.from({ length: workers }, async () => {
        for (let index = next++; index < files.length; index = next++) {
          const file = files[index] as string;
          results[index] = await this.#parseFile(file, filelocOf(dagsFolder, file));
        }
      }),
    );
    return this.#assemble(files, results);
  }

  /** Ends the parser processes. */
  close(): void {
    this.#closed = true;
    for (const parser of this.#idle.splice(0)) parser.kill();
  }

  #poolSize(): number {
    return this.#options.processes ?? 2;
  }

  async #parseFile(file: string, fileloc: string): Promise<FileResult> {
    if (this.#closed)
      return { dags: [], errors: [`Cannot load DAG file ${file}: the DAG processor stopped`], bundle: [] };
    const parser = this.#idle.pop() ?? new ParserProcess({ cwd: this.#options.cwd });
    const outcome = await parser.parse(file, fileloc, this.#options.fileTimeoutMs);
    if (parser.usable && !this.#closed) this.#idle.push(parser);
    else parser.kill();
    if (outcome.kind === 'parsed') return outcome;
    return { dags: [], errors: [`Cannot load DAG file ${file}: ${outcome.message}`], bundle: [] };
  }

  /** Retires the idle processes that loaded a module which has changed since (or is gone). */
  async #retireChanged(): Promise<void> {
    const idle = this.#idle.splice(0);
    const unchanged = await Promise.all(idle.map((parser) => parser.modulesUnchanged()));
    idle.forEach((parser, index) => {
      if (unchanged[index] && parser.usable) this.#idle.push(parser);
      else parser.kill();
    });
  }

  /** DAG ids in path order (a later file's duplicate is its error), versions and bundles. */
  async #assemble(files: string[], results: FileResult[]): Promise<ParsedDagsFolder> {
    const { dagsFolder, bundles } = this.#options;
    const parsed: ParsedDagsFolder = { dags: [], errors: [] };
    const owners = new Map<string, string>();
    for (const [index, file] of files.entries()) {
      const result = results[index] as FileResult;
      const fileloc = filelocOf(dagsFolder, file);
      for (const message of result.errors) parsed.errors.push({ fileloc, message });
      const bundleFiles = result.bundle.map((module) => ({
        path: filelocOf(dagsFolder, module.path),
        sha256: module.sha256,
      }));
      for (const entry of result.dags) {
        const dag = serializedDagSchema.parse(entry.dag);
        const owner = owners.get(dag.dagId);
        if (owner !== undefined) {
          parsed.errors.push({ fileloc, message: `DAG id '${dag.dagId}' is already defined in ${owner}` });
          continue;
        }
        owners.set(dag.dagId, fileloc);
        const versionHash = bundleVersionHash(entry.serializedHash, bundleFiles);
        try {
          await bundles?.snapshot({ dagId: dag.dagId, versionHash, dagFile: file, modules: result.bundle });
        } catch (error) {
          if (!(error instanceof BundleError)) throw error;
          parsed.errors.push({ fileloc, message: `DAG ${dag.dagId}: ${error.message}` });
          continue;
        }
        parsed.dags.push({ dag, versionHash });
      }
    }
    return parsed;
  }
}

/** A path relative to the DAGs folder, with '/' separators. */
function filelocOf(dagsFolder: string, file: string): string {
  return relative(dagsFolder, file).split(sep).join('/');
}
