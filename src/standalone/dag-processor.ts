import { execFile } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { trackImportGraph } from '#bundles/import-graph.ts';
import { describeImportError, loadDagFile } from '#sdk/loader.ts';
import { versionDag } from '#sdk/serialize.ts';
import type { ParsedDag, ParserToProcessor, ProcessorToParser } from './dag-parsing-protocol.ts';

/**
 * A parser process of the DAG processor: a child that imports DAG files one at a time, on request,
 * so user code at import time never runs inside the scheduler or the API, and a file that exits,
 * hangs or crashes takes only this process with it. It answers with the serialized DAGs and the
 * file's code bundle (the local modules it imports). Each file is imported by its plain URL, once:
 * the processor retires this process when a module it loaded changes on disk.
 */

// Before any DAG file is imported, so every import is seen.
const graph = trackImportGraph();
// The SDK is loaded before the first file, so a file's time limit is spent on the file.
await import('#sdk/index.ts');

const send = (message: ParserToProcessor) => process.send?.(message);

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
    const loaded = graph.takeLoaded();
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
  return {
    type: 'parsed',
    requestId: request.requestId,
    dags,
    errors,
    bundle: graph.closureOf(url),
    loaded: graph.takeLoaded(),
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
  parse(request).then(send, (error: unknown) =>
    send({
      type: 'parsed',
      requestId: request.requestId,
      dags: [],
      errors: [describeImportError(error)],
      bundle: [],
      loaded: graph.takeLoaded(),
    }),
  );
});
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });
