import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { type SerializedDag, serializedDagSchema } from '#core/serialized-dag.ts';
import { dagsFolderHash } from './dags-folder.ts';

/** What the deploy registers: each DAG's serialized form and version, as the engine's registry takes them. */
export interface SerializedDagsFolder {
  dags: { dag: SerializedDag; versionHash: string }[];
  errors: { fileloc: string; message: string }[];
}

const serializedDagsFolderSchema = z.strictObject({
  dags: z.array(z.strictObject({ dag: serializedDagSchema, versionHash: z.string() })),
  errors: z.array(z.strictObject({ fileloc: z.string(), message: z.string() })),
});

export class DagsFolderError extends Error {
  override name = 'DagsFolderError';
}

export class TaskTimeoutError extends Error {
  override name = 'TaskTimeoutError';
}

const SERIALIZER = fileURLToPath(new URL('./dags-serializer.ts', import.meta.url));
/** Parses of this process by folder and content: tests synthesize the same folder many times. */
const parsed = new Map<string, SerializedDagsFolder>();

/**
 * Imports the DAG files of `folder` in a child process and returns the serialized DAGs. A file
 * that does not import, or a DAG id defined twice, fails the synthesis with the file and the
 * reason: a deploy would otherwise register an import error in place of a working DAG.
 */
export function serializeDagsFolder(folder: string, options: { timeoutMs: number }): SerializedDagsFolder {
  const absolute = resolve(folder);
  if (!existsSync(absolute) || !statSync(absolute).isDirectory()) {
    throw new DagsFolderError(`The DAGs folder ${absolute} does not exist or is not a directory`);
  }
  const cacheKey = `${absolute}\n${dagsFolderHash(absolute)}`;
  const cached = parsed.get(cacheKey);
  if (cached) return checked(absolute, cached);
  const workDir = mkdtempSync(join(tmpdir(), 'updraft-dags-'));
  try {
    const output = join(workDir, 'dags.json');
    const child = spawnSync(
      process.execPath,
      ['--disable-warning=ExperimentalWarning', SERIALIZER, absolute, output],
      { encoding: 'utf8', timeout: options.timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    if (child.error || child.status !== 0 || !existsSync(output)) {
      const reason = child.error
        ? child.error.message
        : child.signal
          ? `stopped by ${child.signal}`
          : `exit code ${child.status}`;
      throw new DagsFolderError(
        `Serializing the DAGs in ${absolute} failed (${reason}); the DAG files must import within ${options.timeoutMs} ms${child.stderr ? `:\n${child.stderr.trim()}` : ''}`,
      );
    }
    const result = serializedDagsFolderSchema.parse(JSON.parse(readFileSync(output, 'utf8')));
    parsed.set(cacheKey, result);
    return checked(absolute, result);
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}

function checked(folder: string, result: SerializedDagsFolder): SerializedDagsFolder {
  if (result.errors.length === 0) return result;
  const lines = result.errors.map((error) => `- ${error.fileloc}: ${error.message}`);
  throw new DagsFolderError(`DAG files in ${folder} do not load:\n${lines.join('\n')}`);
}

/**
 * Refuses tasks whose execution timeout is longer than a worker can run: the worker function
 * would be stopped by Lambda before the task's own timeout fires. One error names every such task.
 */
export function checkTaskTimeouts(dags: readonly SerializedDag[], limitSeconds: number): void {
  const problems: string[] = [];
  for (const dag of dags) {
    for (const task of dag.tasks) {
      if (task.executionTimeoutMs === null || task.executionTimeoutMs <= limitSeconds * 1000) continue;
      problems.push(
        `task '${task.taskId}' of DAG '${dag.dagId}' (${dag.fileloc}) has an execution timeout of ${task.executionTimeoutMs / 1000} s`,
      );
    }
  }
  if (problems.length === 0) return;
  throw new TaskTimeoutError(
    `${problems.join('; ')}: over the worker function's limit of ${limitSeconds} s. A Lambda worker runs a task for at most ${limitSeconds} s; lower the task's executionTimeout to ${limitSeconds} s or less.`,
  );
}

/** Changes whenever what the deploy registers changes: the custom resource runs again then. */
export function serializedDagsHash(serialized: SerializedDagsFolder): string {
  return createHash('sha256').update(JSON.stringify(serialized)).digest('hex');
}
