import { DAG_CALLBACK_EVENTS, DEADLINE_EVENT, TASK_CALLBACK_EVENTS } from '#core/callbacks.ts';
import { type CallbackFunction, callbackNameOf, type ResolvedCallback } from './callback-options.ts';
import type { Dag } from './dag.ts';
import { SdkError } from './errors.ts';

/**
 * A callback item names a function the DAG, as loaded now, cannot give: the DAG file changed since
 * the run's version (a task, an event or a position gone, or another function in its place). It
 * will not get better by retrying against the same file.
 */
export class CallbackResolutionError extends SdkError {
  override name = 'CallbackResolutionError';
}

/** Which callback a callback item runs: its owner (`taskId` null for the DAG run), event and position. */
export interface CallbackTarget {
  taskId: string | null;
  /** The authoring option: onSuccess, onFailure…, or `deadline[<d>]` for the callbacks of deadline d. */
  event: string;
  /** Position in the owner's list for the event. */
  index: number;
  /** The function's name in the run's version, checked so a changed file never runs another function. */
  name: string;
}

const CHANGED = "the DAG file changed since the run's version";
const DEADLINE_LIST = new RegExp(`^${DEADLINE_EVENT}\\[(\\d+)\\]$`);

/** The function a callback item runs, found in the DAG as loaded by the worker. */
export function resolveCallback(dag: Dag, target: CallbackTarget): CallbackFunction {
  const { taskId, event, index, name } = target;
  let lists: Partial<Record<string, readonly ResolvedCallback[]>>;
  let owner: string;
  if (taskId === null) {
    owner = `DAG '${dag.dagId}'`;
    const deadline = DEADLINE_LIST.exec(event);
    if (deadline) {
      const position = Number(deadline[1]);
      const found = dag.options.deadlines[position];
      if (found === undefined) {
        const count = dag.options.deadlines.length;
        throw new CallbackResolutionError(
          `${CHANGED}: ${owner} has ${count} deadline${count === 1 ? '' : 's'}, the run expects callback ${index} of deadline ${position} ('${name}')`,
        );
      }
      lists = { [event]: found.callbacks };
    } else if (!(DAG_CALLBACK_EVENTS as readonly string[]).includes(event)) {
      throw new CallbackResolutionError(
        `${owner} has no callback event '${event}' (expected ${DAG_CALLBACK_EVENTS.join(', ')}, or deadline[<n>])`,
      );
    } else lists = dag.options.callbacks;
  } else {
    const task = dag.getTask(taskId);
    if (task === undefined) {
      throw new CallbackResolutionError(
        `${CHANGED}: DAG '${dag.dagId}' has no task '${taskId}' (the run expects callback ${index} of ${event} of that task, '${name}')`,
      );
    }
    owner = `task '${taskId}'`;
    if (!(TASK_CALLBACK_EVENTS as readonly string[]).includes(event)) {
      throw new CallbackResolutionError(
        `${owner} has no callback event '${event}' (expected ${TASK_CALLBACK_EVENTS.join(', ')})`,
      );
    }
    lists = task.options.callbacks;
  }
  const list = lists[event] ?? [];
  const callback = list[index];
  if (callback === undefined) {
    throw new CallbackResolutionError(
      `${CHANGED}: ${event} of ${owner} has ${list.length} callback${list.length === 1 ? '' : 's'}, the run expects callback ${index} ('${name}')`,
    );
  }
  const actual = callbackNameOf(callback.fn);
  if (actual !== name) {
    throw new CallbackResolutionError(
      `${CHANGED}: callback ${index} of ${event} of ${owner} is now '${actual}', the run expects '${name}'`,
    );
  }
  return callback.fn;
}
