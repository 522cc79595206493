import * as z from 'zod';

/**
 * Queue message bodies: discriminated on `type`, validated once where they are received.
 * A body that fails validation is dead-lettered by the consumer, never half-processed.
 */

const taskInstanceKeySchema = z.strictObject({
  dag_id: z.string(),
  run_id: z.string(),
  task_id: z.string(),
  map_index: z.number().int(),
});

export const taskWorkloadSchema = z.strictObject({
  type: z.literal('execute_task'),
  ti: taskInstanceKeySchema,
  try_number: z.number().int().positive(),
  /** Execution API token scoped to this TI and try. */
  token: z.string(),
  /** DAG file relative to the DAGs folder, and the version the run executes. */
  fileloc: z.string(),
  dag_version: z.string(),
});
export type TaskWorkload = z.infer<typeof taskWorkloadSchema>;

/** Task instances one scheduling request names at most; more go in further requests. */
export const SCHEDULING_REQUEST_MAX_TASK_INSTANCES = 100;

export const schedulingRequestSchema = z.strictObject({
  type: z.literal('schedule_run'),
  dag_id: z.string(),
  run_id: z.string(),
  /** Task instances of the run whose state changed (a report): the pass reads them first. */
  task_instances: z
    .array(z.strictObject({ task_id: z.string(), map_index: z.number().int() }))
    .max(SCHEDULING_REQUEST_MAX_TASK_INSTANCES)
    .optional(),
});
export type SchedulingRequest = z.infer<typeof schedulingRequestSchema>;

/** One attempt of one callback, for a worker of the `callbacks` queue. */
export const callbackWorkloadSchema = z.strictObject({
  type: z.literal('run_callback'),
  dag_id: z.string(),
  run_id: z.string(),
  callback_id: z.string(),
  attempt: z.number().int().positive(),
  /** Execution API token scoped to this callback and attempt. */
  token: z.string(),
  fileloc: z.string(),
  dag_version: z.string(),
});
export type CallbackWorkload = z.infer<typeof callbackWorkloadSchema>;

export const workerMessageSchema = z.discriminatedUnion('type', [taskWorkloadSchema, callbackWorkloadSchema]);
export const schedulerMessageSchema = z.discriminatedUnion('type', [schedulingRequestSchema]);
