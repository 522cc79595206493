import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as z from 'zod';
import { HAND_BACK_MARGIN_MS } from '#aws/handler-worker.ts';
import type { CallbackRef } from '#core/callbacks.ts';
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
  if (result.errors.length > 0) {
    const lines = result.errors.map((error) => `- ${error.fileloc}: ${error.message}`);
    throw new DagsFolderError(`DAG files in ${folder} do not load:\n${lines.join('\n')}`);
  }
  checkDagFilesBundled(folder, result);
  return result;
}

/** The DAG files a worker bundles: `functions/worker.ts` imports the `.ts` files of the DAGs folder. */
export const BUNDLED_DAG_FILE_EXTENSION = '.ts';

/**
 * Refuses DAGs defined in files the worker does not bundle. The DAG loader also takes `.mts`,
 * `.js` and `.mjs` files, so such a DAG would be registered, yet every task of it would fail
 * "is not bundled" on the worker. Modules that define no DAG may be of any kind: a `.ts` DAG
 * file that imports them has them bundled with it.
 */
function checkDagFilesBundled(folder: string, result: SerializedDagsFolder): void {
  const unbundled = [
    ...new Set(
      result.dags
        .map(({ dag }) => dag.fileloc)
        .filter((fileloc) => !fileloc.endsWith(BUNDLED_DAG_FILE_EXTENSION)),
    ),
  ].sort();
  if (unbundled.length === 0) return;
  throw new DagsFolderError(
    `DAG files in ${folder} that the worker does not bundle: ${unbundled.join(', ')}. The worker function bundles the ${BUNDLED_DAG_FILE_EXTENSION} files of the DAGs folder only (functions/worker.ts), so a DAG defined in a .mts, .js or .mjs file would be registered but none of its tasks could run. Rename the file to ${BUNDLED_DAG_FILE_EXTENSION}, or move its dag(…) call into a ${BUNDLED_DAG_FILE_EXTENSION} file, which may import the rest of its code from the other file.`,
  );
}

/**
 * The longest execution timeout a Lambda worker can honour, in milliseconds: the function's
 * timeout less the margin in which the worker hands a still-running try back
 * (`HAND_BACK_MARGIN_MS`, at most a third of the timeout). A try still running then is reported
 * as a retryable failure ("outlived the worker's time limit"), so a longer executionTimeout
 * would never fire.
 */
export function workerTaskTimeLimitMs(workerTimeoutSeconds: number): number {
  const timeoutMs = workerTimeoutSeconds * 1000;
  return timeoutMs - Math.min(HAND_BACK_MARGIN_MS, timeoutMs / 3);
}

/**
 * The longest callback timeout a Lambda worker can honour: the task limit less a start margin
 * (10 s, at most half the limit). A callback's timeout runs from its start call, made after the
 * invocation began, so a timeout at the task limit itself would meet the worker's time limit first.
 */
export function workerCallbackTimeLimitMs(workerTimeoutSeconds: number): number {
  const taskLimitMs = workerTaskTimeLimitMs(workerTimeoutSeconds);
  return taskLimitMs - Math.min(CALLBACK_START_MARGIN_MS, taskLimitMs / 2);
}

const CALLBACK_START_MARGIN_MS = 10_000;

/**
 * Refuses tasks whose execution timeout is longer than a worker can run them (see
 * `workerTaskTimeLimitMs`): the worker would hand the try back as a failure before the task's
 * own timeout fires. Callbacks likewise (any callback may run on a worker: an async one placed on
 * a triggerer moves to the workers when none claims it), with `callbackDefaultTimeoutMs`
 * (UPDRAFT_CALLBACK_EXECUTION_TIMEOUT_MS) for those that set no timeout: a worker hands an attempt
 * still running at its time limit back, so a longer timeout would never fire and the attempt would
 * be handed back again and again. One error names every such task and callback and the limit.
 */
export function checkTaskTimeouts(
  dags: readonly SerializedDag[],
  workerTimeoutSeconds: number,
  callbackDefaultTimeoutMs?: number,
): void {
  const limitMs = workerTaskTimeLimitMs(workerTimeoutSeconds);
  const callbackLimitMs = workerCallbackTimeLimitMs(workerTimeoutSeconds);
  const problems: string[] = [];
  const callbackProblems: string[] = [];
  if (callbackDefaultTimeoutMs !== undefined && callbackDefaultTimeoutMs > callbackLimitMs)
    callbackProblems.push(
      `UPDRAFT_CALLBACK_EXECUTION_TIMEOUT_MS, the timeout of callbacks that set none, is ${seconds(callbackDefaultTimeoutMs)} s`,
    );
  for (const dag of dags) {
    for (const task of dag.tasks) {
      if (task.executionTimeoutMs !== null && task.executionTimeoutMs > limitMs)
        problems.push(
          `task '${task.taskId}' of DAG '${dag.dagId}' (${dag.fileloc}) has an execution timeout of ${seconds(task.executionTimeoutMs)} s`,
        );
    }
    for (const { where, ref } of callbackRefsOf(dag)) {
      if (ref.timeoutMs !== undefined && ref.timeoutMs > callbackLimitMs)
        callbackProblems.push(
          `callback '${ref.name}' (${where} of DAG '${dag.dagId}', ${dag.fileloc}) has a timeout of ${seconds(ref.timeoutMs)} s`,
        );
    }
  }
  if (problems.length === 0 && callbackProblems.length === 0) return;
  const limit = seconds(limitMs);
  const over = `over the limit of ${limit} s, the worker function's timeout (${workerTimeoutSeconds} s) less the ${seconds(workerTimeoutSeconds * 1000 - limitMs)} s in which the worker hands a running try back`;
  const sentences: string[] = [];
  if (problems.length > 0)
    sentences.push(
      `${problems.join('; ')}: ${over}. A try still running then is reported as a retryable failure ("outlived the worker's time limit"), so the task's own timeout would never fire. Lower the task's executionTimeout to ${limit} s or less.`,
    );
  if (callbackProblems.length > 0) {
    const callbackLimit = seconds(callbackLimitMs);
    sentences.push(
      `${callbackProblems.join('; ')}: over the limit of ${callbackLimit} s for callbacks, the worker function's timeout (${workerTimeoutSeconds} s) less the ${seconds(workerTimeoutSeconds * 1000 - limitMs)} s in which the worker hands a running attempt back and ${seconds(limitMs - callbackLimitMs)} s for the attempt's start. An attempt still running at the worker's time limit is handed back unfinished, so its timeout would never fire. Lower the timeout to ${callbackLimit} s or less.`,
    );
  }
  throw new TaskTimeoutError(sentences.join(' '));
}

/** Every callback reference of a DAG, with where it is attached. */
function callbackRefsOf(dag: SerializedDag): { where: string; ref: CallbackRef }[] {
  const refs: { where: string; ref: CallbackRef }[] = [];
  for (const [event, list] of Object.entries(dag.callbacks ?? {}))
    for (const ref of list ?? []) refs.push({ where: `the DAG's ${event}`, ref });
  for (const task of dag.tasks)
    for (const [event, list] of Object.entries(task.callbacks ?? {}))
      for (const ref of list ?? []) refs.push({ where: `${event} of task '${task.taskId}'`, ref });
  for (const [index, deadline] of (dag.deadlines ?? []).entries())
    for (const ref of deadline.callbacks) refs.push({ where: `deadline ${index}`, ref });
  return refs;
}

function seconds(ms: number): string {
  return String(Math.round(ms) / 1000);
}

/** Changes whenever what the deploy registers changes: the custom resource runs again then. */
export function serializedDagsHash(serialized: SerializedDagsFolder): string {
  return createHash('sha256').update(JSON.stringify(serialized)).digest('hex');
}
