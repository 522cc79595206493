import * as z from 'zod';
import { dagCallbacksSchema, taskCallbacksSchema } from './callbacks.ts';
import { DEADLINES_PER_DAG_MAX, serializedDeadlineSchema } from './deadlines.ts';

/**
 * The serialized form of a DAG: plain data, no code. The scheduler and the API only ever see
 * this form; callables stay in the DAG file and are resolved on workers by (dag id, task id).
 */

export const TRIGGER_RULES = [
  'all_success',
  'all_failed',
  'all_done',
  'all_skipped',
  'one_success',
  'one_failed',
  'one_done',
  'none_failed',
  'none_failed_min_one_success',
  'none_skipped',
  'always',
] as const;
export type TriggerRule = (typeof TRIGGER_RULES)[number];

export const WEIGHT_RULES = ['downstream', 'upstream', 'absolute'] as const;
export type WeightRule = (typeof WEIGHT_RULES)[number];

/** Priority classes of the task queues, highest first. Callbacks have their own queue above these. */
export const TASK_QUEUES = ['high', 'default', 'low'] as const;
export type TaskQueueName = (typeof TASK_QUEUES)[number];

export const scheduleSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('cron'), expression: z.string(), timezone: z.string() }),
  z.strictObject({ type: z.literal('rate'), expression: z.string(), everyMs: z.number().int().positive() }),
]);
export type Schedule = z.infer<typeof scheduleSchema>;

/** A reference to an upstream task's XCom, passed to a task as a positional argument. */
export const xcomArgSchema = z.strictObject({ taskId: z.string(), key: z.string() });
export type XComArgRef = z.infer<typeof xcomArgSchema>;

/** A task that starts in a trigger, without a worker: the trigger, and where it resumes. Kwargs are serde text. */
export const startTriggerSchema = z.strictObject({
  name: z.string().min(1),
  kwargs: z.string(),
  queue: z.string().min(1).optional(),
  nextMethod: z.string(),
  nextKwargs: z.string(),
  timeoutMs: z.number().int().positive().nullable(),
});
export type StartTrigger = z.infer<typeof startTriggerSchema>;

export const serializedTaskSchema = z.strictObject({
  taskId: z.string(),
  /** 'task' for a plain async function, 'branch' for a branch function, else the operator class name. */
  operator: z.string(),
  isBranch: z.boolean(),
  upstream: z.array(z.string()),
  args: z.array(xcomArgSchema),
  retries: z.number().int().nonnegative(),
  retryDelayMs: z.number().int().nonnegative(),
  retryExponentialBackoff: z.boolean(),
  maxRetryDelayMs: z.number().int().positive().nullable(),
  executionTimeoutMs: z.number().int().positive().nullable(),
  triggerRule: z.enum(TRIGGER_RULES),
  priorityWeight: z.number().int(),
  weightRule: z.enum(WEIGHT_RULES),
  queue: z.enum(TASK_QUEUES),
  pool: z.string(),
  poolSlots: z.number().int().positive(),
  doc: z.string().nullable(),
  /** The task's own memory limit in MB (its `memoryLimitMb`); absent: the worker's setting applies. */
  memoryLimitMb: z.number().int().positive().optional(),
  /** Set for a task that starts in a trigger (Airflow's start_from_trigger). */
  startTrigger: startTriggerSchema.optional(),
  /** References to the task's callbacks by event (see `callbacks.ts`); absent when it has none. */
  callbacks: taskCallbacksSchema.optional(),
});
export type SerializedTask = z.infer<typeof serializedTaskSchema>;

export const serializedDagSchema = z.strictObject({
  formatVersion: z.literal(1),
  dagId: z.string(),
  description: z.string().nullable(),
  /** Path of the DAG file relative to the DAGs folder; workers import it to find callables. */
  fileloc: z.string(),
  schedule: scheduleSchema.nullable(),
  startDate: z.string().nullable(),
  endDate: z.string().nullable(),
  catchup: z.boolean(),
  maxActiveRuns: z.number().int().positive(),
  maxActiveTasks: z.number().int().positive(),
  params: z.record(z.string(), z.unknown()),
  tags: z.array(z.string()),
  /** Task ids in a topological order (every task after its upstream tasks). */
  tasks: z.array(serializedTaskSchema),
  /** References to the DAG run's callbacks by event; absent when it has none. */
  callbacks: dagCallbacksSchema.optional(),
  /** A run still running this long after it started fails, its unfinished tasks skipped; absent: no limit. */
  dagRunTimeoutMs: z.number().int().positive().optional(),
  /** Deadlines each run must finish by, with their callbacks (see `deadlines.ts`); absent when it has none. */
  deadlines: z.array(serializedDeadlineSchema).min(1).max(DEADLINES_PER_DAG_MAX).optional(),
});
export type SerializedDag = z.infer<typeof serializedDagSchema>;

/** A serialized DAG with the hash of its canonical JSON, which names its version. */
export interface VersionedDag {
  dag: SerializedDag;
  versionHash: string;
}
