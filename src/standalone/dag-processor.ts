import { execFile } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { isAbsolute, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { trackFileReads } from '#bundles/file-reads.ts';
import { type TrackedModule, trackImportGraph } from '#bundles/import-graph.ts';
import { describeImportError, loadDagFile } from '#sdk/loader.ts';
import { versionDag } from '#sdk/serialize.ts';
import type {
  LoadLogEntry,
  ParsedDag,
  ParserToProcessor,
  ProcessorToParser,
} from './dag-parsing-protocol.ts';

/**
 * A parser process of the DAG processor: a child that imports one DAG file, on request, so user
 * code at import time never runs inside the scheduler or the API, and a file that exits, hangs or
 * crashes (even later, from a timer it left) takes only this process with it and is the one
 * blamed. It answers with the serialized DAGs and the file's code bundle (the local modules it
 * imports and the data files it read under the DAGs folder). The file is imported by its plain
 * URL, once: a later request for it answers from the module cache, and the processor retires this
 * process when a module or data file it loaded changes on disk.
 */

/** The request in flight: reads and loads are logged to its load log and belong to its file. */
let current: ProcessorToParser | undefined;

const log = (entry: TrackedModule) => {
  if (!current) return;
  const line: LoadLogEntry = { path: entry.path, mtimeMs: entry.mtimeMs, size: entry.size };
  try {
    appendFileSync(current.loadLog, `${JSON.stringify(line)}\n`);
  } catch {
    // Without the log, a timeout is only retried once the DAG file itself changes.
  }
};

// Before any DAG file is imported, so every import and every data read is seen.
const graph = trackImportGraph(log);
const reads = trackFileReads((path) => {
  if (!current || path.includes('/node_modules/')) return false;
  const rel = relative(current.dagsFolder, path);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
});
// The SDK is loaded before the first file, so a file's time limit is spent on the file.
await import('#sdk/index.ts');

const send = (message: ParserToProcessor) => process.send?.(message);

/** Local modules and data files loaded or read for the first time since the last answer. */
function takeLoaded(): TrackedModule[] {
  const fresh = reads.takeRead();
  for (const file of fresh) log(file);
  return [...graph.takeLoaded(), ...fresh];
}

async function parse(request: ProcessorToParser): Promise<ParserToProcessor> {
  const url = pathToFileURL(request.file).href;
  const dags: ParsedDag[] = [];
  const errors: string[] = [];
  try {
    for (const dag of await loadDagFile(request.file, { url: 'plain' })) {
      try {
        const { dag: serialized, versionHash } = versionDag(dag, request.fileloc);
        dags.push({ dag: serialized, serializedHash: versionHash });
      } catch (error) {
        errors.push(`Cannot serialize DAG ${dag.dagId}: ${(error as Error).message}`);
      }
    }
  } catch (error) {
    const loaded = takeLoaded();
    const message = (error as Error).message;
    const located = await locateSyntaxError(error, [request.file, ...loaded.map((module) => module.path)]);
    return {
      type: 'parsed',
      requestId: request.requestId,
      dags: [],
      errors: [located ? `${message} at ${located}` : message],
      bundle: [],
      loaded,
    };
  }
  const loaded = takeLoaded();
  const modules = graph.closureOf(url);
  const modulePaths = new Set(modules.map((module) => module.path));
  const data = reads.read().filter((file) => !modulePaths.has(file.path));
  return {
    type: 'parsed',
    requestId: request.requestId,
    dags,
    errors,
    bundle: [...modules, ...data].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)),
    loaded,
  };
}

/**
 * Node names the file and line of a JavaScript syntax error only when it is uncaught; `node --check`
 * prints them. Tried on the file and the modules loaded with it, only when a syntax error came
 * without its location (TypeScript syntax errors carry theirs).
 */
async function locateSyntaxError(error: unknown, files: string[]): Promise<string | undefined> {
  const cause = (error as Error).cause;
  if (!(cause instanceof SyntaxError) || /:\d+\n/.test((error as Error).message)) return undefined;
  for (const file of new Set(files)) {
    if (!/\.(m?js|cjs)$/.test(file)) continue;
    try {
      await promisify(execFile)(process.execPath, ['--check', file], { timeout: 10_000 });
    } catch (checked) {
      const stderr = String((checked as { stderr?: unknown }).stderr ?? '');
      const location = /^(\S+:\d+)\n([^\n]*)\n([ \t]*\^+)/m.exec(stderr);
      if (location) return `${location[1]}\n${location[2]}\n${location[3]}`;
    }
  }
  return undefined;
}

process.on('message', (request: ProcessorToParser) => {
  current = request;
  void answer(request);
});

async function answer(request: ProcessorToParser): Promise<void> {
  let reply: ParserToProcessor;
  try {
    reply = await parse(request);
  } catch (error) {
    reply = {
      type: 'parsed',
      requestId: request.requestId,
      dags: [],
      errors: [describeImportError(error)],
      bundle: [],
      loaded: takeLoaded(),
    };
  }
  current = undefined;
  send(reply);
}
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });
