import { createHash } from 'node:crypto';
import type { CallbackRef } from '#core/callbacks.ts';
import {
  type SerializedDag,
  type SerializedTask,
  serializedDagSchema,
  type VersionedDag,
} from '#core/serialized-dag.ts';
import { callbackRefsOf, type ResolvedCallback } from './callback-options.ts';
import type { Dag } from './dag.ts';
import { SerializedDagError } from './errors.ts';
import { describeIssues } from './options.ts';

/** The DAG as plain data: every default resolved, tasks in topological order, no code. */
export function serializeDag(dag: Dag, fileloc: string): SerializedDag {
  const options = dag.options;
  const tasks: SerializedTask[] = [...dag.tasks.values()].map((task) => ({
    taskId: task.taskId,
    operator: task.operatorName,
    isBranch: task.kind === 'branch',
    upstream: [...task.upstream],
    args: task.args.map((arg) => ({ taskId: arg.taskId, key: arg.key })),
    retries: task.options.retries,
    retryDelayMs: task.options.retryDelayMs,
    retryExponentialBackoff: task.options.retryExponentialBackoff,
    maxRetryDelayMs: task.options.maxRetryDelayMs,
    executionTimeoutMs: task.options.executionTimeoutMs,
    triggerRule: task.options.triggerRule,
    priorityWeight: task.options.priorityWeight,
    weightRule: task.options.weightRule,
    queue: task.options.queue,
    pool: task.options.pool,
    poolSlots: task.options.poolSlots,
    doc: task.options.doc,
    // Only when set, so the version of a DAG that sets none is what it was before the option existed.
    ...(task.options.memoryLimitMb === null ? {} : { memoryLimitMb: task.options.memoryLimitMb }),
    ...(task.options.startTrigger === null ? {} : { startTrigger: { ...task.options.startTrigger } }),
    ...callbacksField(task.options.callbacks),
  }));
  return {
    formatVersion: 1,
    dagId: dag.dagId,
    description: options.description,
    fileloc,
    schedule: options.schedule === null ? null : { ...options.schedule },
    startDate: options.startDate,
    endDate: options.endDate,
    catchup: options.catchup,
    maxActiveRuns: options.maxActiveRuns,
    maxActiveTasks: options.maxActiveTasks,
    params: structuredClone(options.params),
    tags: [...options.tags],
    tasks,
    ...callbacksField(options.callbacks),
    // Only when set, so the version of a DAG that sets none is what it was before the option existed.
    ...(options.dagRunTimeoutMs === null ? {} : { dagRunTimeoutMs: options.dagRunTimeoutMs }),
    ...(options.deadlines.length === 0
      ? {}
      : { deadlines: options.deadlines.map((deadline) => structuredClone(deadline.serialized)) }),
  };
}

/** `{ callbacks }` with the references of each event that has some; `{}` when none has (the version is unchanged). */
function callbacksField<E extends string>(
  lists: { [K in E]?: readonly ResolvedCallback[] },
): { callbacks?: { [K in E]?: CallbackRef[] } } {
  const callbacks = callbackRefsOf(lists);
  return callbacks === undefined ? {} : { callbacks };
}

/** JSON with object keys sorted at every level, so equal data always gives equal text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) => {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) return item;
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(item).sort()) sorted[key] = (item as Record<string, unknown>)[key];
    return sorted;
  });
}

/** Names a DAG version: the first 16 hex digits of the sha256 of its canonical JSON. */
export function dagVersionHash(serialized: SerializedDag): string {
  return createHash('sha256').update(canonicalJson(serialized)).digest('hex').slice(0, 16);
}

export function versionDag(dag: Dag, fileloc: string): VersionedDag {
  const serialized = serializeDag(dag, fileloc);
  return { dag: serialized, versionHash: dagVersionHash(serialized) };
}

/** Reads a serialized DAG back (e.g. from the store), refusing anything off-format. */
export function deserializeDag(json: unknown): SerializedDag {
  const parsed = serializedDagSchema.safeParse(json);
  if (!parsed.success) {
    const dagId =
      typeof json === 'object' && json !== null && typeof Reflect.get(json, 'dagId') === 'string'
        ? ` '${Reflect.get(json, 'dagId')}'`
        : '';
    throw new SerializedDagError(`Invalid serialized DAG${dagId}: ${describeIssues(parsed.error, 'field')}`, {
      cause: parsed.error,
    });
  }
  return parsed.data;
}
