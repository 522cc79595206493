import { readdir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type Dag, isDag } from './dag.ts';
import { DagImportError } from './errors.ts';

const DAG_FILE_EXTENSIONS = ['.ts', '.mts', '.js', '.mjs'];
/** Updraft's own sources: an error's location is looked for in the user's files, not here. */
const OWN_SOURCES = fileURLToPath(new URL('../', import.meta.url));

export interface LoadDagFileOptions {
  /**
   * 'mtime' (default): the file's modification time is part of the import URL, so an edited file
   * is imported afresh while an unchanged one comes from the module cache (each edit keeps one
   * more copy in memory). 'plain': the file's own URL, for a process that is retired once a
   * module it loaded changes (the DAG processor's parser processes).
   */
  url?: 'mtime' | 'plain';
}

/** Imports a DAG file and returns the DAGs it exports (default and named exports). */
export async function loadDagFile(absolutePath: string, options: LoadDagFileOptions = {}): Promise<Dag[]> {
  let module: Record<string, unknown>;
  try {
    let url = pathToFileURL(absolutePath).href;
    if (options.url !== 'plain') url += `?mtime=${Math.trunc((await stat(absolutePath)).mtimeMs)}`;
    module = (await import(url)) as Record<string, unknown>;
  } catch (error) {
    throw new DagImportError(absolutePath, describeImportError(error), { cause: error });
  }
  const dags: Dag[] = [];
  const byId = new Map<string, Dag>();
  for (const value of Object.values(module)) {
    if (!isDag(value) || dags.includes(value)) continue;
    if (byId.has(value.dagId)) {
      throw new DagImportError(absolutePath, `DAG id '${value.dagId}' is exported twice by different DAGs`);
    }
    byId.set(value.dagId, value);
    dags.push(value);
  }
  return dags;
}

export interface CollectedDags {
  /** `fileloc` is relative to the DAGs folder, with '/' separators. */
  dags: { dag: Dag; fileloc: string }[];
  /** One entry per file that could not be loaded, or per DAG id already taken by an earlier file. */
  errors: { fileloc: string; message: string }[];
}

/**
 * Loads every DAG file under `dagsFolder` (recursively, in path order), skipping names that start
 * with '_' or '.'. A broken file is reported in `errors` and does not stop the others.
 */
export async function collectDags(dagsFolder: string): Promise<CollectedDags> {
  const result: CollectedDags = { dags: [], errors: [] };
  const owners = new Map<string, string>();
  for (const file of await listDagFiles(dagsFolder)) {
    const fileloc = relative(dagsFolder, file).split(sep).join('/');
    let dags: Dag[];
    try {
      dags = await loadDagFile(file);
    } catch (error) {
      result.errors.push({ fileloc, message: messageOf(error) });
      continue;
    }
    for (const dag of dags) {
      const owner = owners.get(dag.dagId);
      if (owner !== undefined) {
        result.errors.push({ fileloc, message: `DAG id '${dag.dagId}' is already defined in ${owner}` });
        continue;
      }
      owners.set(dag.dagId, fileloc);
      result.dags.push({ dag, fileloc });
    }
  }
  return result;
}

/** The DAG files under `folder`, recursively, in path order. */
export async function listDagFiles(folder: string): Promise<string[]> {
  const entries = await readdir(folder, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const files: string[] = [];
  for (const entry of entries) {
    if (entry.name.startsWith('_') || entry.name.startsWith('.') || entry.name === 'node_modules') continue;
    const path = join(folder, entry.name);
    if (entry.isDirectory()) files.push(...(await listDagFiles(path)));
    else if (entry.isFile() && isDagFileName(entry.name)) files.push(path);
  }
  return files;
}

function isDagFileName(name: string): boolean {
  if (/\.d\.m?ts$/.test(name)) return false;
  return DAG_FILE_EXTENSIONS.some((extension) => name.endsWith(extension));
}

function messageOf(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/**
 * What went wrong at import, with where: a syntax error names its file and line (Node puts them
 * only in the stack's first lines, with the source line and a caret), and an error thrown at
 * import time names the first frame in a file of the project.
 */
export function describeImportError(error: unknown): string {
  if (!(error instanceof Error)) return messageOf(error);
  const stack = error.stack ?? '';
  if (error instanceof SyntaxError) {
    const located = /^((?:file:\/\/|\/)[^\n]*?):(\d+)\n((?:[^\n]*\n)*?)([ \t]*\^+)/.exec(stack);
    if (!located) return messageOf(error);
    const [, file, line, source, caret] = located;
    const sourceLine = (source ?? '').trimEnd().split('\n').at(-1) ?? '';
    return `${messageOf(error)} at ${fileOf(file ?? '')}:${line}\n${sourceLine}\n${caret}`;
  }
  for (const text of stack.split('\n').slice(1)) {
    const frame = /\(?((?:file:\/\/|\/)[^\s()]+?):(\d+):\d+\)?\s*$/.exec(text.trim());
    const file = frame ? fileOf(frame[1] ?? '') : '';
    if (!frame || file.includes('/node_modules/') || file.startsWith(OWN_SOURCES)) continue;
    return `${messageOf(error)} (at ${file}:${frame[2]})`;
  }
  return messageOf(error);
}

function fileOf(location: string): string {
  const withoutQuery = location.replace(/\?[^/]*$/, '');
  return withoutQuery.startsWith('file:') ? fileURLToPath(withoutQuery) : withoutQuery;
}
