import type { Resume } from '#contracts/triggers.ts';
import type { TaskResume, WorkerTaskContext } from '#sdk/context.ts';
import type { Dag } from '#sdk/dag.ts';
import { executeTask } from '#sdk/runtime.ts';
import { DeserializationNotAllowedError, deserialize, serialize } from '#sdk/serde.ts';
import type { RunnerOutcome } from './protocol.ts';

/**
 * One try's code, however a worker hosts it (a task runner process, or in-process on Lambda):
 * a resumed try's kwargs and event are deserialized here, on the worker, under the allowlist;
 * the task's outcome becomes what the worker reports, a deferral with its trigger and kwargs as
 * serde text. Throws what the task throws (the caller reports it as a retryable failure).
 */
export async function runTaskTry(
  dag: Dag,
  taskId: string,
  args: unknown[],
  ctx: WorkerTaskContext,
  resume: Resume | null | undefined,
  allowedClasses: readonly string[],
): Promise<RunnerOutcome> {
  let resumed: TaskResume | undefined;
  if (resume) {
    try {
      resumed = {
        method: resume.method,
        event: deserialize(resume.event, { allowed: allowedClasses }),
        kwargs: asKwargs(deserialize(resume.kwargs, { allowed: allowedClasses })),
        deferralSeq: resume.deferral_seq,
      };
    } catch (error) {
      // A payload the worker may not rebuild cannot become valid on a retry.
      const what = error instanceof DeserializationNotAllowedError ? '' : 'Cannot read the trigger event: ';
      return { kind: 'failed_no_retry', reason: `${what}${(error as Error).message}` };
    }
  }
  const outcome = await executeTask(dag, taskId, args, ctx, resumed);
  switch (outcome.kind) {
    case 'success': {
      if (outcome.value === null || outcome.value === undefined)
        return { kind: 'success', followTaskIds: outcome.followTaskIds };
      // executeTask has checked that the value is JSON.
      return { kind: 'success', xcom: JSON.stringify(outcome.value), followTaskIds: outcome.followTaskIds };
    }
    case 'skipped':
      return { kind: 'skipped', reason: outcome.reason };
    case 'failed_no_retry':
      return { kind: 'failed_no_retry', reason: outcome.reason };
    case 'deferred': {
      let triggerKwargs: string;
      let nextKwargs: string;
      try {
        triggerKwargs = serialize(outcome.trigger.kwargs, { root: `${outcome.trigger.name} kwargs` });
        nextKwargs = serialize(outcome.kwargs, { root: 'defer kwargs' });
      } catch (error) {
        return { kind: 'failed_no_retry', reason: `The task cannot defer: ${(error as Error).message}` };
      }
      return {
        kind: 'deferred',
        deferral: {
          trigger: {
            name: outcome.trigger.name,
            kwargs: triggerKwargs,
            ...(outcome.trigger.queue !== undefined ? { queue: outcome.trigger.queue } : {}),
          },
          next_method: outcome.method,
          next_kwargs: nextKwargs,
          timeout_ms: outcome.timeoutMs,
        },
      };
    }
  }
}

function asKwargs(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {};
}
