import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { BundleError } from '#bundles/errors.ts';
import type { TrackedModule } from '#bundles/import-graph.ts';
import type { BundleStore } from '#bundles/store.ts';
import { bundleVersionHash } from '#bundles/version.ts';
import { serializedDagSchema } from '#core/serialized-dag.ts';
import type { ParsedDagsFolder } from '#engine/dag-registry.ts';
import { listDagFiles } from '#sdk/loader.ts';
import { modulesUnchanged } from '#worker/module-tracker.ts';
import type { LoadLogEntry, ParsedDag } from './dag-parsing-protocol.ts';
import { ParserProcess } from './parser-process.ts';

export interface DagFileParserOptions {
  dagsFolder: string;
  /** Working directory of the parser processes. */
  cwd: string;
  /** Time limit of one file's import (UPDRAFT_DAG_FILE_PARSE_TIMEOUT_MS). */
  fileTimeoutMs: number;
  /** Where each version's code bundle is written before the version is returned; none: no bundles. */
  bundles?: BundleStore;
  /** Files imported at once, each in its own parser process (default 2, as Airflow's parsing_processes). */
  processes?: number;
  /**
   * Parser processes kept idle after their file loaded, the most recently used first (default 4):
   * each is about 100 MB. A file whose process was ended answers from its last result while the
   * files it loaded are unchanged.
   */
  idleProcesses?: number;
}

/** What one file gave: its DAGs and its code bundle, or why it could not be loaded. */
interface FileResult {
  dags: ParsedDag[];
  errors: string[];
  bundle: TrackedModule[];
}

/** What the processor keeps of one DAG file between parses. */
interface FileState {
  /** The idle parser process that imported this file (and only it), with its load log. */
  parser?: { process: ParserProcess; loadLog: string; usedAt: number };
  /** The last result of a file that loaded, with what it loaded: reused while those are unchanged. */
  last?: { result: FileResult; modules: ReadonlyMap<string, { mtimeMs: number; size: number }> };
  /**
   * The file timed out, exited or crashed: it is not imported again (nor its time limit spent)
   * until one of the modules or data files it had loaded, or the file itself, changes on disk.
   */
  failure?: { message: string; modules: ReadonlyMap<string, { mtimeMs: number; size: number }> };
}

/** A parse under way when the parser was closed: its results are incomplete and not to be registered. */
export class DagParserClosedError extends Error {
  override name = 'DagParserClosedError';
}

/**
 * The DAG processor: parses the DAGs folder file by file, each file in a parser process of its
 * own (docs/authoring.md, "How DAG files are found and parsed"), a few files at once. Each file
 * has its own time limit; a file that exits, crashes or runs over it is an import error of its
 * own, and so is a file whose process exits while idle after its import (a timer it left): a
 * process only ever runs one file's code, so whatever it does is blamed on that file. A file's
 * process is kept and asked again on the next parse until a module or data file it loaded changes
 * on disk, so an unchanged file costs no new process and no new import. A file that timed out or
 * crashed is not imported again until what it loaded changes. Each DAG's version names its
 * serialized form and its code bundle; the bundle is snapshotted before the version is returned,
 * so every registered version has its code.
 */
export class DagFileParser {
  readonly #options: DagFileParserOptions;
  readonly #files = new Map<string, FileState>();
  #logs: string | undefined;
  #nextLog = 0;
  #uses = 0;
  #parsing: Promise<unknown> = Promise.resolve();
  #closed = false;
  /** Parser processes parsing a file now (not in `#files` meanwhile). */
  readonly #parsingNow = new Set<NonNullable<FileState['parser']>>();

  constructor(options: DagFileParserOptions) {
    this.#options = options;
  }

  /** Parses the folder; a call made while another runs waits for it (a file has one process). */
  parse(): Promise<ParsedDagsFolder> {
    const parsed = this.#parsing.then(() => this.#parseFolder());
    this.#parsing = parsed.catch(() => undefined);
    return parsed;
  }

  async #parseFolder(): Promise<ParsedDagsFolder> {
    const { dagsFolder } = this.#options;
    const files = await listDagFiles(dagsFolder);
    const listed = new Set(files);
    for (const [file, state] of this.#files) {
      if (listed.has(file)) continue;
      this.#retire(state);
      this.#files.delete(file);
    }
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
    // Files cut short by the stop are no import errors: nothing of this parse is to be registered.
    if (this.#closed)
      throw new DagParserClosedError('The DAG processor stopped while it parsed the DAGs folder');
    return this.#assemble(files, results);
  }

  /** Ends the parser processes, those parsing a file now included. */
  close(): void {
    this.#closed = true;
    for (const parser of this.#parsingNow) this.#retire({ parser });
    for (const state of this.#files.values()) this.#retire(state);
    this.#files.clear();
    if (this.#logs) rmSync(this.#logs, { recursive: true, force: true });
  }

  #poolSize(): number {
    return this.#options.processes ?? 2;
  }

  async #parseFile(file: string, fileloc: string): Promise<FileResult> {
    const failed = (message: string): FileResult => ({
      dags: [],
      errors: [`Cannot load DAG file ${file}: ${message}`],
      bundle: [],
    });
    if (this.#closed) return failed('the DAG processor stopped');
    const state = this.#files.get(file) ?? {};
    this.#files.set(file, state);
    if (state.failure) {
      if (await modulesUnchanged(state.failure.modules))
        return failed(`${state.failure.message}\n${NOT_RETRIED}`);
      state.failure = undefined;
    }
    let current = state.parser;
    state.parser = undefined;
    if (!current && state.last) {
      if (await modulesUnchanged(state.last.modules)) return state.last.result;
      state.last = undefined;
    }
    if (current) {
      const idleExit = current.process.idleExit;
      if (idleExit !== undefined) {
        state.failure = { message: idleExit, modules: this.#modulesOf(file, current) };
        state.last = undefined;
        this.#retire({ parser: current });
        return failed(idleExit);
      }
      if (!current.process.usable || !(await current.process.modulesUnchanged())) {
        this.#retire({ parser: current });
        current = undefined;
      }
    }
    current ??= {
      process: new ParserProcess({ cwd: this.#options.cwd }),
      loadLog: this.#newLog(),
      usedAt: 0,
    };
    current.usedAt = ++this.#uses;
    const { dagsFolder, fileTimeoutMs } = this.#options;
    // Held here while it parses, so a close ends it too instead of waiting for its file.
    this.#parsingNow.add(current);
    const outcome = await current.process
      .parse(file, fileloc, fileTimeoutMs, { dagsFolder, loadLog: current.loadLog })
      .finally(() => this.#parsingNow.delete(current));
    if (outcome.kind === 'parsed') {
      // A file that failed to import is imported afresh next time (a module that threw stays
      // thrown in its process); one that loaded keeps its process (and its result) for the next parse.
      const result: FileResult = { dags: outcome.dags, errors: outcome.errors, bundle: outcome.bundle };
      state.last = undefined;
      if (outcome.errors.length === 0 && current.process.usable && !this.#closed) {
        state.last = { result, modules: this.#modulesOf(file, current) };
        state.parser = current;
        this.#trimIdle();
      } else this.#retire({ parser: current });
      return result;
    }
    state.last = undefined;
    if (outcome.byFile) state.failure = { message: outcome.message, modules: this.#modulesOf(file, current) };
    this.#retire({ parser: current });
    return failed(outcome.message);
  }

  /** What a file's process loaded, from its answers and its load log, and the file itself. */
  #modulesOf(
    file: string,
    parser: NonNullable<FileState['parser']>,
  ): Map<string, { mtimeMs: number; size: number }> {
    const modules = new Map(parser.process.loadedModules);
    try {
      for (const line of readFileSync(parser.loadLog, 'utf8').split('\n')) {
        if (!line) continue;
        const entry = JSON.parse(line) as LoadLogEntry;
        if (!modules.has(entry.path)) modules.set(entry.path, { mtimeMs: entry.mtimeMs, size: entry.size });
      }
    } catch {
      // No log (nothing local was loaded) or a torn last line: what was read is kept.
    }
    if (!modules.has(file)) {
      try {
        const stats = statSync(file);
        modules.set(file, { mtimeMs: stats.mtimeMs, size: stats.size });
      } catch {
        // Gone: the next listing drops it.
      }
    }
    return modules;
  }

  #newLog(): string {
    this.#logs ??= mkdtempSync(join(tmpdir(), 'updraft-parse-log-'));
    return join(this.#logs, `${this.#nextLog++}.jsonl`);
  }

  /** Ends the least recently used idle processes over the limit; their files keep their last result. */
  #trimIdle(): void {
    const idle = [...this.#files.values()].filter((state) => state.parser !== undefined);
    idle.sort((a, b) => (b.parser?.usedAt ?? 0) - (a.parser?.usedAt ?? 0));
    for (const state of idle.slice(this.#options.idleProcesses ?? 4)) this.#retire(state);
  }

  #retire(state: FileState): void {
    if (!state.parser) return;
    state.parser.process.kill();
    rmSync(state.parser.loadLog, { force: true });
    state.parser = undefined;
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
        // The SDK checks every option; a DAG it let through that the schema refuses is that
        // file's error, never the whole folder's.
        const checked = serializedDagSchema.safeParse(entry.dag);
        if (!checked.success) {
          const issue = checked.error.issues[0];
          const id = (entry.dag as { dagId?: unknown }).dagId;
          parsed.errors.push({
            fileloc,
            message: `DAG ${typeof id === 'string' ? id : '(unnamed)'} cannot be serialized: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? checked.error.message}`,
          });
          continue;
        }
        const dag = checked.data;
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

const NOT_RETRIED =
  'It is not imported again until it, or a module or data file it had loaded, changes on disk.';

/** A path relative to the DAGs folder, with '/' separators. */
function filelocOf(dagsFolder: string, file: string): string {
  return relative(dagsFolder, file).split(sep).join('/');
}
