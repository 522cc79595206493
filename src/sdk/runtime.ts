import { inspect } from 'node:util';
import type { TaskContext, TaskResume, WorkerTaskContext } from './context.ts';
import type { Dag } from './dag.ts';
import { InvalidBranchError, TaskNotFoundError, ThrownValueError } from './errors.ts';
import type { OperatorContext } from './operator.ts';
import { assertJsonReturnValue } from './return-value.ts';
import { type DeferRequest, DeferralError, type DeferSignal, defer, signalKindOf } from './signals.ts';
import type { DagTask } from './task.ts';
import type { TriggerSpec } from './triggers/base.ts';

/** How one try of a task ended, as far as the task's own code decides. */
export type TaskOutcome =
  | { kind: 'success'; value: unknown; followTaskIds?: string[] }
  | { kind: 'skipped'; reason: string }
  | { kind: 'failed_no_retry'; reason: string }
  /** The try gave up its slot: `trigger` waits on a triggerer, then the task resumes in `method`. */
  | {
      kind: 'deferred';
      trigger: TriggerSpec;
      method: string;
      timeoutMs: number | null;
      kwargs: Record<string, unknown>;
    };

/**
 * Runs one try of a task: its callable (args first, then the context) or its operator's execute().
 * With `resume` (a deferred try coming back, its event and kwargs already deserialized) an
 * operator's named method is called instead, with the event and the kwargs after the context; a
 * callable is called again as before, with `ctx.resume` set. The context the task gets has
 * `defer` (the worker's may lack it). skip()/fail()/defer() signals, returned or thrown, become
 * outcomes; any other exception is rethrown for the worker to turn into a retryable failure (a
 * thrown value that is not an Error becomes a ThrownValueError showing it). A value of `undefined` is reported as null, the XCom of a task that
 * returns nothing. Throws TaskNotFoundError when the DAG has no such task, InvalidBranchError when
 * a branch chooses a task that is not directly downstream of it, and ReturnValueError when the
 * value is not JSON (it names the task and the path of the offending part).
 */
export async function executeTask(
  dag: Dag,
  taskId: string,
  args: unknown[],
  ctx: WorkerTaskContext,
  resume?: TaskResume,
): Promise<TaskOutcome> {
  const task = dag.tasks.get(taskId);
  if (!task) {
    throw new TaskNotFoundError(
      `DAG '${dag.dagId}' has no task '${taskId}' (tasks: ${[...dag.tasks.keys()].join(', ')})`,
    );
  }
  let result: unknown;
  try {
    result = await run(task, args, ctx, resume);
  } catch (error) {
    const outcome = signalOutcome(task, error);
    if (outcome) return outcome;
    throw asError(taskId, error);
  }
  const outcome = signalOutcome(task, result);
  if (outcome) return outcome;
  assertJsonReturnValue(taskId, result);
  if (task.kind === 'branch') {
    return { kind: 'success', value: result ?? null, followTaskIds: followTaskIdsOf(dag, task, result) };
  }
  return { kind: 'success', value: result === undefined ? null : result };
}

async function run(
  task: DagTask,
  args: unknown[],
  ctx: WorkerTaskContext,
  resume: TaskResume | undefined,
): Promise<unknown> {
  // A plain context is copied, so a task can still spread it; a class instance is inherited from.
  const taskContext = (
    Object.getPrototypeOf(ctx) === Object.prototype ? { ...ctx } : Object.create(ctx)
  ) as TaskContext;
  Object.defineProperty(taskContext, 'defer', {
    value: (request: DeferRequest): DeferSignal => {
      const signal = defer(request);
      // Checked here too, so the error points at the defer() call rather than at the runtime.
      checkResumeMethod(task, signal.method);
      return signal;
    },
  });
  if (resume) Object.defineProperty(taskContext, 'resume', { value: resume, enumerable: true });
  if (task.operator) {
    const operatorContext = taskContext as TaskContext & { args: unknown[] };
    Object.defineProperty(operatorContext, 'args', { value: args, enumerable: true });
    Object.defineProperty(operatorContext, 'xcomPull', {
      value: (id: string, key?: string) => ctx.xcomPull(id, key),
    });
    if (!resume) return task.operator.execute(operatorContext as OperatorContext);
    const method = resumeMethodOf(task, resume.method);
    return method.call(task.operator, operatorContext, resume.event, resume.kwargs);
  }
  if (!task.callable) throw new TaskNotFoundError(`Task '${task.taskId}' has no callable`);
  return task.callable(...args, taskContext);
}

/** The operator's method a deferred try resumes in; an Error naming the class when it has none. */
function resumeMethodOf(task: DagTask, name: string): (...args: unknown[]) => unknown {
  const operator = task.operator!;
  const method: unknown = name === 'execute' ? undefined : Reflect.get(operator, name);
  if (typeof method !== 'function') {
    throw new DeferralError(
      `Task '${task.taskId}': operator ${operator.constructor.name} has no method '${name}' to resume in (defer() named it; define ${name}(ctx, event, kwargs) on the class)`,
    );
  }
  return method as (...args: unknown[]) => unknown;
}

function checkResumeMethod(task: DagTask, name: string): void {
  if (task.operator) resumeMethodOf(task, name);
}

/** Anything thrown, as an Error whose message describes it. */
function asError(taskId: string, thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  // Errors from another realm (a vm context) are still errors.
  if (Object.prototype.toString.call(thrown) === '[object Error]') return thrown as Error;
  const shown = inspect(thrown, { depth: 4, breakLength: Number.POSITIVE_INFINITY, maxStringLength: 2_000 });
  const error = new ThrownValueError(`Task '${taskId}' threw a value that is not an Error: ${shown}`, thrown);
  // The stack would point here, not at the throw: the message is all there is to say.
  error.stack = `${error.name}: ${error.message}`;
  return error;
}

function signalOutcome(task: DagTask, value: unknown): TaskOutcome | null {
  const kind = signalKindOf(value);
  if (kind === null) return null;
  const signal = value as object;
  switch (kind) {
    case 'skip':
      return { kind: 'skipped', reason: String(Reflect.get(signal, 'reason') ?? '') };
    case 'fail':
      return { kind: 'failed_no_retry', reason: String(Reflect.get(signal, 'reason') ?? '') };
    case 'defer': {
      // Read field by field: the signal may come from another copy of this module.
      const method = Reflect.get(signal, 'method') as string;
      checkResumeMethod(task, method);
      return {
        kind: 'deferred',
        trigger: Reflect.get(signal, 'trigger') as TriggerSpec,
        method,
        timeoutMs: Reflect.get(signal, 'timeoutMs') as number | null,
        kwargs: Reflect.get(signal, 'kwargs') as Record<string, unknown>,
      };
    }
  }
}

function followTaskIdsOf(dag: Dag, task: DagTask, result: unknown): string[] {
  const where = `DAG '${dag.dagId}', branch '${task.taskId}'`;
  let chosen: unknown[];
  if (result === null || result === undefined) chosen = [];
  else if (typeof result === 'string') chosen = [result];
  else if (Array.isArray(result)) chosen = result;
  else {
    throw new InvalidBranchError(
      `${where} returned ${typeof result}; expected a task id, a list of task ids or null`,
    );
  }
  const allowed = new Set(task.downstream);
  for (const id of chosen) {
    if (typeof id !== 'string' || !allowed.has(id)) {
      throw new InvalidBranchError(
        `${where} chose ${JSON.stringify(id)}, which is not one of its direct downstream tasks (${task.downstream.join(', ')})`,
      );
    }
  }
  return [...new Set(chosen as string[])];
}
