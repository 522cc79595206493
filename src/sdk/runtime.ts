import { inspect } from 'node:util';
import type { TaskContext } from './context.ts';
import type { Dag } from './dag.ts';
import { InvalidBranchError, TaskNotFoundError, ThrownValueError } from './errors.ts';
import type { OperatorContext } from './operator.ts';
import { assertJsonReturnValue } from './return-value.ts';
import { signalKindOf } from './signals.ts';
import type { DagTask } from './task.ts';

/** How one try of a task ended, as far as the task's own code decides. */
export type TaskOutcome =
  | { kind: 'success'; value: unknown; followTaskIds?: string[] }
  | { kind: 'skipped'; reason: string }
  | { kind: 'failed_no_retry'; reason: string };

/**
 * Runs one try of a task: its callable (args first, then the context) or its operator's execute().
 * skip()/fail() signals, returned or thrown, become outcomes; any other exception is rethrown for
 * the worker to turn into a retryable failure (a thrown value that is not an Error becomes a
 * ThrownValueError showing it). A value of `undefined` is reported as null, the XCom of a task that
 * returns nothing. Throws TaskNotFoundError when the DAG has no such task, InvalidBranchError when
 * a branch chooses a task that is not directly downstream of it, and ReturnValueError when the
 * value is not JSON (it names the task and the path of the offending part).
 */
export async function executeTask(
  dag: Dag,
  taskId: string,
  args: unknown[],
  ctx: TaskContext,
): Promise<TaskOutcome> {
  const task = dag.tasks.get(taskId);
  if (!task) {
    throw new TaskNotFoundError(
      `DAG '${dag.dagId}' has no task '${taskId}' (tasks: ${[...dag.tasks.keys()].join(', ')})`,
    );
  }
  let result: unknown;
  try {
    result = await run(task, args, ctx);
  } catch (error) {
    const outcome = signalOutcome(error);
    if (outcome) return outcome;
    throw asError(taskId, error);
  }
  const outcome = signalOutcome(result);
  if (outcome) return outcome;
  assertJsonReturnValue(taskId, result);
  if (task.kind === 'branch') {
    return { kind: 'success', value: result ?? null, followTaskIds: followTaskIdsOf(dag, task, result) };
  }
  return { kind: 'success', value: result === undefined ? null : result };
}

async function run(task: DagTask, args: unknown[], ctx: TaskContext): Promise<unknown> {
  if (task.operator) {
    // The worker's context may be a class instance: inherit from it rather than spreading it.
    const operatorContext = Object.create(ctx) as TaskContext & { args: unknown[] };
    Object.defineProperty(operatorContext, 'args', { value: args, enumerable: true });
    Object.defineProperty(operatorContext, 'xcomPull', {
      value: (id: string, key?: string) => ctx.xcomPull(id, key),
    });
    return task.operator.execute(operatorContext as OperatorContext);
  }
  if (!task.callable) throw new TaskNotFoundError(`Task '${task.taskId}' has no callable`);
  return task.callable(...args, ctx);
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

function signalOutcome(value: unknown): TaskOutcome | null {
  const kind = signalKindOf(value);
  if (kind === null) return null;
  const reason = String(Reflect.get(value as object, 'reason') ?? '');
  return kind === 'skip' ? { kind: 'skipped', reason } : { kind: 'failed_no_retry', reason };
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
