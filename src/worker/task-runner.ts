import { pathToFileURL } from 'node:url';
import { format } from 'node:util';
import { resolveImportsOfBundle } from '#bundles/runner-hooks.ts';
import type { CallbackContext } from '#sdk/callback-context.ts';
import type { CallbackFunction } from '#sdk/callback-options.ts';
import { resolveCallback } from '#sdk/callback-resolve.ts';
import type { TaskLogger, WorkerTaskContext } from '#sdk/context.ts';
import { type Dag, isDag } from '#sdk/dag.ts';
import { DEFAULT_ALLOWED_DESERIALIZATION_CLASSES } from '#sdk/serde.ts';
import { versionDag } from '#sdk/serialize.ts';
import { trackLocalModules } from './module-tracker.ts';
import type { PinnedVersion, RunnerOutcome, RunnerToSupervisor, SupervisorToRunner } from './protocol.ts';
import { runTaskTry } from './task-try.ts';

// Before any DAG file is imported, so every local module it pulls in is recorded.
const modules = trackLocalModules();

/**
 * Task runner: a child process of the worker supervisor that runs one task try at a time.
 * Console output and the task logger are forwarded to the supervisor as log text; XCom pulls
 * are asked of the supervisor, which holds the Execution API token.
 */

const send = (message: RunnerToSupervisor) => process.send?.(message);
const pendingPulls = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
let nextRequestId = 1;

function captureOutput(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      send({ type: 'log', text: typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8') });
      const callback = rest.find((value) => typeof value === 'function') as (() => void) | undefined;
      callback?.();
      return true;
    }) as typeof stream.write;
  }
}

function taskLogger(): TaskLogger {
  const line = (level: string) => (message: string, fields?: Record<string, unknown>) => {
    const extra = fields && Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : '';
    send({ type: 'log', text: `[${new Date().toISOString()}] {${level}} ${message}${extra}\n` });
  };
  return { debug: line('DEBUG'), info: line('INFO'), warn: line('WARNING'), error: line('ERROR') };
}

/**
 * The DAG file is imported by its plain URL, once per process. It is the run's version's bundle
 * copy, which never changes (the supervisor gives this process no other bundle), or the file on
 * disk, when the supervisor retires this process once the file or a module it imports changes.
 */
async function findDag(file: string, dagId: string): Promise<Dag | undefined> {
  resolveImportsOfBundle(file);
  const exports = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  return Object.values(exports).find((value): value is Dag => isDag(value) && value.dagId === dagId);
}

/** One attempt of a callback: the function is found in the DAG as the run's version placed it. */
async function runCallback(
  message: Extract<SupervisorToRunner, { type: 'run_callback' }>,
): Promise<RunnerOutcome> {
  const dag = await findDag(message.file, message.dagId);
  if (!dag)
    return {
      kind: 'failed_no_retry',
      reason: `DAG ${message.dagId} is no longer defined in ${message.file}`,
    };
  let fn: CallbackFunction;
  try {
    fn = resolveCallback(dag, message);
  } catch (error) {
    return { kind: 'failed_no_retry', reason: error instanceof Error ? error.message : String(error) };
  }
  const controller = new AbortController();
  current = { runId: message.runId, controller };
  const logger = taskLogger();
  const ctx: CallbackContext = {
    ...message.context,
    log: (...args: unknown[]) => logger.info(format(...args)),
    signal: controller.signal,
  };
  await fn(ctx);
  return { kind: 'success' };
}

async function run(message: Extract<SupervisorToRunner, { type: 'run' }>): Promise<RunnerOutcome> {
  const dag = await findDag(message.file, message.context.dagId);
  if (!dag)
    return { kind: 'error', message: `DAG ${message.context.dagId} is no longer defined in ${message.file}` };
  if (message.pinned) warnIfChanged(dag, message.pinned);
  // Stopped while the DAG file was loading: the task does not start at all.
  const cancelled = earlyCancels.get(message.runId);
  earlyCancels.delete(message.runId);
  if (cancelled !== undefined) return { kind: 'error', message: cancelled };
  const controller = new AbortController();
  current = { runId: message.runId, controller };
  const ctx: WorkerTaskContext = {
    ...message.context,
    log: taskLogger(),
    signal: controller.signal,
    xcomPull: (taskId, key = 'return_value') =>
      new Promise((resolve, reject) => {
        const requestId = nextRequestId++;
        pendingPulls.set(requestId, { resolve, reject });
        send({ type: 'xcom_pull', requestId, taskId, key });
      }),
  };
  return runTaskTry(
    dag,
    message.context.taskId,
    message.args,
    ctx,
    message.resume,
    message.allowedClasses ?? DEFAULT_ALLOWED_DESERIALIZATION_CLASSES,
  );
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.stack ?? `${error.name}: ${error.message}`;
  return format('%o', error);
}

const fileVersions = new WeakMap<Dag, string>();

/**
 * Workers run the DAG file as it is on disk. When it no longer matches the version the run
 * started with, the try's log says so, since the task code may differ from what the run expects.
 */
function warnIfChanged(dag: Dag, pinned: PinnedVersion): void {
  let current = fileVersions.get(dag);
  if (current === undefined) {
    current = versionDag(dag, pinned.fileloc).versionHash;
    fileVersions.set(dag, current);
  }
  if (current === pinned.versionHash) return;
  send({
    type: 'log',
    text: `[${new Date().toISOString()}] {WARNING} ${pinned.fileloc} changed since this run started (run version ${pinned.versionHash}, file version ${current}): running the file as it is now\n`,
  });
}

/** The try being run, so a cancel can abort its signal. */
let current: { runId: number; controller: AbortController } | null = null;
/** Cancels that arrived before their run's task started (its DAG file was still loading). */
const earlyCancels = new Map<number, string>();

captureOutput();
process.on('message', (message: SupervisorToRunner) => {
  if (message.type === 'cancel') {
    if (current?.runId === message.runId) current.controller.abort(new Error(message.reason));
    else earlyCancels.set(message.runId, message.reason);
    return;
  }
  if (message.type === 'xcom_value') {
    const pending = pendingPulls.get(message.requestId);
    pendingPulls.delete(message.requestId);
    if (message.error !== undefined) pending?.reject(new Error(message.error));
    else pending?.resolve(message.value);
    return;
  }
  (message.type === 'run_callback' ? runCallback(message) : run(message)).then(
    (outcome) => send({ type: 'outcome', runId: message.runId, outcome, loaded: modules.takeLoaded() }),
    (error: unknown) => {
      const what = message.type === 'run_callback' ? 'Callback raised' : 'Task failed';
      send({ type: 'log', text: `[${new Date().toISOString()}] {ERROR} ${what}: ${describe(error)}\n` });
      send({
        type: 'outcome',
        runId: message.runId,
        outcome: { kind: 'error', message: error instanceof Error ? error.message : String(error) },
        loaded: modules.takeLoaded(),
      });
    },
  );
});
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });
