import { AsyncLocalStorage } from 'node:async_hooks';
import { format } from 'node:util';
import type { CallbackContext } from '#sdk/callback-context.ts';
import type { CallbackFunction } from '#sdk/callback-options.ts';
import { resolveCallback } from '#sdk/callback-resolve.ts';
import type { TaskLogger, WorkerTaskContext } from '#sdk/context.ts';
import { type Dag, isDag } from '#sdk/dag.ts';
import { DEFAULT_ALLOWED_DESERIALIZATION_CLASSES } from '#sdk/serde.ts';
import type { StartedCallback, StartedTask } from '#worker/execution-client.ts';
import type { TaskExecutor, TaskHooks } from '#worker/executor.ts';
import { callbackRunContextOf, type RunnerOutcome, taskRunContextOf } from '#worker/protocol.ts';
import { runTaskTry } from '#worker/task-try.ts';

/**
 * Imports a DAG module by its `fileloc` (relative to the DAGs folder), for the run's DAG version.
 * The worker and triggerer entries on AWS give one backed by esbuild's glob import, so every DAG
 * file is in the bundle and none is read from disk at run time (the version is the deployed one);
 * standalone's triggerer imports the version's code bundle.
 */
export type DagModuleLoader = (
  fileloc: string,
  version: { dagId: string; dagVersion: string },
) => Promise<Record<string, unknown>>;

/**
 * Runs tries inside the worker function's own process, from the DAG code bundled with it (and
 * async callbacks inside a triggerer's process, in its event loop). A Lambda instance runs one
 * invocation at a time and its memory is the function's; the tries of one invocation (a batch,
 * `workers.batchSize`) share its process, as they do the triggerer's. What that costs, and why it
 * is acceptable on Lambda:
 * - The tries of a batch share the event loop, CPU and memory: a try that blocks the loop stops
 *   its neighbours' heartbeats too, and a stray error that ends the process (an unhandled
 *   rejection, `process.exit`, running out of memory) ends every try of the batch. A batch size
 *   of 1 isolates each try in its own environment.
 * - A task that ignores `ctx.signal` cannot be killed: on a timeout or the worker's deadline the
 *   try is reported at once and the task's promise is left behind, with a warning in the try's
 *   log. Lambda may reuse the environment: the code is frozen with it and resumes beside the
 *   tries of later invocations.
 * - `memoryLimitMb` is not enforced: the function's memory size is the limit; an instance that
 *   runs out is recycled by Lambda and the try becomes a zombie, failed or retried by the scheduler.
 * - The code is the deployed code: a run that spans a deploy runs its later tasks with the new code.
 * The task's console output and `ctx.log` lines go to the try's log, as they do in standalone.
 */
export class InProcessTaskExecutor implements TaskExecutor {
  readonly #loadModule: DagModuleLoader;

  /** UPDRAFT_ALLOWED_DESERIALIZATION_CLASSES: what a resumed try may rebuild from its event. */
  readonly #allowedClasses: readonly string[];

  constructor(options: { loadModule: DagModuleLoader; allowedDeserializationClasses?: readonly string[] }) {
    this.#loadModule = options.loadModule;
    this.#allowedClasses = options.allowedDeserializationClasses ?? DEFAULT_ALLOWED_DESERIALIZATION_CLASSES;
    captureConsole();
  }

  async run(started: StartedTask, args: unknown[], hooks: TaskHooks): Promise<RunnerOutcome> {
    const found = await this.#findDag(started);
    if ('error' in found) {
      hooks.onLog(line('ERROR', `Task failed: ${found.error}`));
      return { kind: 'error', message: found.error };
    }
    const ctx: WorkerTaskContext = {
      ...taskRunContextOf(started),
      log: taskLogger(hooks.onLog),
      signal: hooks.signal,
      xcomPull: (taskId, key = 'return_value') => hooks.pullXCom(taskId, key),
    };
    const work = taskOutput.run(hooks.onLog, () =>
      runTaskTry(found.dag, started.task_id, args, ctx, started.resume, this.#allowedClasses),
    );
    try {
      const outcome = await untilAborted(work, hooks.signal);
      if (outcome === ABORTED) {
        if (!(await settlesSoon(work))) hooks.onLog(line('WARNING', ABANDONED));
        return { kind: 'error', message: reasonOf(hooks.signal) };
      }
      return outcome;
    } catch (error) {
      hooks.onLog(line('ERROR', `Task failed: ${describe(error)}`));
      return { kind: 'error', message: error instanceof Error ? error.message : String(error) };
    }
  }

  /** One attempt of a callback, found in the bundled DAG as the run's version placed it. */
  async runCallback(started: StartedCallback, hooks: TaskHooks): Promise<RunnerOutcome> {
    const found = await this.#findDag(started);
    if ('error' in found) return { kind: 'failed_no_retry', reason: found.error };
    let fn: CallbackFunction;
    try {
      fn = resolveCallback(found.dag, {
        taskId: started.task_id,
        event: started.event,
        index: started.index,
        name: started.name,
      });
    } catch (error) {
      return { kind: 'failed_no_retry', reason: error instanceof Error ? error.message : String(error) };
    }
    // Stopped before it began (its process is stopping): the function is not called at all.
    if (hooks.signal.aborted) return { kind: 'error', message: reasonOf(hooks.signal) };
    const logger = taskLogger(hooks.onLog);
    const ctx: CallbackContext = {
      ...callbackRunContextOf(started),
      log: (...args: unknown[]) => logger.info(format(...args)),
      signal: hooks.signal,
    };
    const work = taskOutput.run(hooks.onLog, async () => {
      await fn(ctx);
      return { kind: 'success' } as RunnerOutcome;
    });
    try {
      const outcome = await untilAborted(work, hooks.signal);
      if (outcome === ABORTED) {
        if (!(await settlesSoon(work))) hooks.onLog(line('WARNING', CALLBACK_ABANDONED));
        return { kind: 'error', message: reasonOf(hooks.signal) };
      }
      return outcome;
    } catch (error) {
      hooks.onLog(line('ERROR', `Callback raised: ${describe(error)}`));
      return { kind: 'error', message: error instanceof Error ? error.message : String(error) };
    }
  }

  async #findDag(
    started: Pick<StartedTask, 'fileloc' | 'dag_id' | 'dag_version'>,
  ): Promise<{ dag: Dag } | { error: string }> {
    let exports: Record<string, unknown>;
    try {
      exports = await this.#loadModule(started.fileloc, {
        dagId: started.dag_id,
        dagVersion: started.dag_version,
      });
    } catch (error) {
      return {
        error: `Cannot load ${started.fileloc} (DAG version ${started.dag_version}) here: ${describe(error)}`,
      };
    }
    const dag = Object.values(exports).find(
      (value): value is Dag => isDag(value) && value.dagId === started.dag_id,
    );
    if (dag) return { dag };
    return {
      error: `DAG ${started.dag_id} is not defined in ${started.fileloc} as deployed with this worker (was it removed or renamed?)`,
    };
  }
}

const ABORTED = Symbol('aborted');

const CALLBACK_ABANDONED =
  'The callback did not return when it was stopped (does it honour ctx.signal?). It runs in this ' +
  "process (a Lambda worker's, or a triggerer's event loop), which cannot kill it: its code goes on " +
  'there and may run beside a later attempt of the same callback; key its effects on ctx.idempotencyKey.';

const ABANDONED =
  'The task did not return when it was stopped (does it honour ctx.signal?). Lambda cannot kill it: ' +
  "its code stays in this worker's execution environment, frozen between invocations, and goes on " +
  "running beside the tries of later invocations there (this task's next try included) until it ends " +
  'or Lambda retires the environment.';

/** Whether the task settles by the next turn of the event loop (a task honouring its signal does). */
function settlesSoon(work: Promise<unknown>): Promise<boolean> {
  return new Promise((resolve) => {
    const turn = setImmediate(() => resolve(false));
    const settled = () => {
      clearImmediate(turn);
      resolve(true);
    };
    work.then(settled, settled);
  });
}

/** The task's outcome, or ABORTED as soon as the signal aborts (the task is left to settle alone). */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T | typeof ABORTED> {
  // Settled either way later, so a rejection after an abort is not reported as unhandled.
  work.catch(() => undefined);
  if (signal.aborted) return Promise.resolve(ABORTED);
  return new Promise<T | typeof ABORTED>((resolve, reject) => {
    const onAbort = () => resolve(ABORTED);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

function reasonOf(signal: AbortSignal): string {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason.message;
  return typeof reason === 'string' ? reason : 'The try was stopped';
}

function line(level: string, text: string): string {
  return `[${new Date().toISOString()}] {${level}} ${text}\n`;
}

function taskLogger(onLog: (text: string) => void): TaskLogger {
  const write = (level: string) => (message: string, fields?: Record<string, unknown>) => {
    const extra = fields && Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : '';
    onLog(line(level, `${message}${extra}`));
  };
  return { debug: write('DEBUG'), info: write('INFO'), warn: write('WARNING'), error: write('ERROR') };
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.stack ?? `${error.name}: ${error.message}`;
  return format('%o', error);
}

/** The log sink of the try whose code is running, across its awaits. */
const taskOutput = new AsyncLocalStorage<(text: string) => void>();
let consoleCaptured = false;

/**
 * Console calls made by a task's code (and anything it started) go to its try's log; every other
 * console call goes where it went before. Powertools writes through its own console, untouched.
 */
function captureConsole(): void {
  if (consoleCaptured) return;
  consoleCaptured = true;
  for (const method of ['log', 'info', 'warn', 'error', 'debug'] as const) {
    const original = console[method].bind(console);
    console[method] = (...args: unknown[]) => {
      const sink = taskOutput.getStore();
      if (sink) sink(`${format(...args)}\n`);
      else original(...args);
    };
  }
}
