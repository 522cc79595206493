import { z } from '@hono/zod-openapi';
import { describeIdGrammar, ID_MAX_LENGTH, type IdKind, invalidIdReason } from '#core/ids.ts';
import { DAG_RUN_STATES, TASK_INSTANCE_STATES } from '#core/states.ts';
import { isoDate, mapIndexQuery } from './common.ts';

/**
 * Wire schemas of the public REST API, shaped after Airflow's REST API v2 (snake_case, the same
 * field names). Request bodies reject unknown keys. The server validates with them and builds its
 * OpenAPI document from them; the CLI reads the types inferred from them, so neither side keeps
 * a hand copy of the other's shapes.
 */

/** An id of the grammar in `#core/ids.ts`; a bad one is refused with a message naming it and the rule. */
function idSchema(kind: IdKind) {
  return z
    .string()
    .superRefine((value, ctx) => {
      const reason = invalidIdReason(kind, value);
      if (reason !== undefined) ctx.addIssue({ code: 'custom', message: reason });
    })
    .openapi({
      pattern: kind === 'run' ? '^[A-Za-z0-9_.:+~-]{1,250}$' : '^[A-Za-z0-9_.-]{1,250}$',
      maxLength: ID_MAX_LENGTH,
      description: `${describeIdGrammar(kind)}; not dots only`,
    });
}
/**
 * A run id in a request body: documented with the grammar, checked by the engine, which answers
 * 400 naming the id and the rule (the documented status of an invalid `dag_run_id`).
 */
const runIdBodyField = z.string().openapi({
  pattern: '^[A-Za-z0-9_.:+~-]{1,250}$',
  maxLength: ID_MAX_LENGTH,
  description: `${describeIdGrammar('run')}; not dots only`,
});
export const dagIdSchema = idSchema('DAG');
export const runIdSchema = idSchema('run');
export const taskIdSchema = idSchema('task');

export const dagIdParams = z.object({ dag_id: dagIdSchema });
export const runParams = dagIdParams.extend({ dag_run_id: runIdSchema });
export const taskParams = runParams.extend({ task_id: taskIdSchema });
export const logParams = taskParams.extend({ try_number: z.coerce.number().int().min(1) });
export const pageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: z.string().max(2048).optional(),
});

export const importErrorSchema = z
  .object({ filename: z.string(), stack_trace: z.string(), timestamp: isoDate })
  .openapi('ImportError');

export const dagSchema = z
  .object({
    dag_id: z.string(),
    description: z.string().nullable(),
    fileloc: z.string(),
    is_paused: z.boolean(),
    is_active: z.boolean(),
    tags: z.array(z.string()),
    schedule: z.string().nullable(),
    next_dagrun_logical_date: isoDate.nullable(),
    dag_version: z.string(),
    last_parsed_time: isoDate,
  })
  .openapi('Dag');

export const dagTaskSchema = z
  .object({
    task_id: z.string(),
    operator: z.string(),
    upstream_task_ids: z.array(z.string()),
    downstream_task_ids: z.array(z.string()),
    trigger_rule: z.string(),
    retries: z.number().int(),
    pool: z.string(),
    pool_slots: z.number().int(),
    priority_weight: z.number().int(),
    queue: z.string(),
    execution_timeout_seconds: z.number().nullable(),
    is_branch: z.boolean(),
  })
  .openapi('DagTask');

export const dagDetailSchema = dagSchema
  .extend({
    tasks: z.array(dagTaskSchema),
    max_active_runs: z.number().int(),
    max_active_tasks: z.number().int(),
    catchup: z.boolean(),
    start_date: isoDate.nullable(),
    end_date: isoDate.nullable(),
    params: z.record(z.string(), z.unknown()),
  })
  .openapi('DagDetail');

export const dagCollectionSchema = z
  .object({
    dags: z.array(dagSchema),
    total_entries: z.number().int(),
    next_cursor: z.string().optional(),
    import_errors: z.array(importErrorSchema),
  })
  .openapi('DagCollection');

export const patchDagBody = z.strictObject({ is_paused: z.boolean() }).openapi('DagPatch');

export const dagRunSchema = z
  .object({
    dag_id: z.string(),
    dag_run_id: z.string(),
    run_type: z.enum(['manual', 'scheduled']),
    state: z.enum(DAG_RUN_STATES),
    logical_date: isoDate,
    data_interval_start: isoDate.nullable(),
    data_interval_end: isoDate.nullable(),
    queued_at: isoDate,
    start_date: isoDate.nullable(),
    end_date: isoDate.nullable(),
    conf: z.record(z.string(), z.unknown()),
    dag_version: z.string(),
  })
  .openapi('DagRun');

export const triggerRunBody = z
  .strictObject({
    dag_run_id: runIdBodyField.optional(),
    logical_date: z.iso.datetime({ offset: true }).optional(),
    conf: z.record(z.string(), z.unknown()).optional(),
  })
  .openapi('TriggerDagRun');

export const dagRunCollectionSchema = z
  .object({
    dag_runs: z.array(dagRunSchema),
    total_entries: z.number().int(),
    next_cursor: z.string().optional(),
  })
  .openapi('DagRunCollection');

export const clearRunBody = z
  .strictObject({ only_failed: z.boolean().default(false), dry_run: z.boolean().default(false) })
  .openapi('ClearDagRun');

export const taskInstanceSchema = z
  .object({
    dag_id: z.string(),
    dag_run_id: z.string(),
    task_id: z.string(),
    map_index: z.number().int(),
    state: z.enum(TASK_INSTANCE_STATES).nullable(),
    try_number: z.number().int(),
    max_tries: z.number().int(),
    start_date: isoDate.nullable(),
    end_date: isoDate.nullable(),
    duration: z.number().nullable(),
    operator: z.string(),
    pool: z.string(),
    pool_slots: z.number().int(),
    priority_weight: z.number().int(),
    queue: z.string(),
    queued_when: isoDate.nullable(),
    hostname: z.string().nullable(),
    error_message: z.string().nullable(),
    next_retry_at: isoDate.nullable(),
  })
  .openapi('TaskInstance');

export const taskInstanceCollectionSchema = z
  .object({ task_instances: z.array(taskInstanceSchema), total_entries: z.number().int() })
  .openapi('TaskInstanceCollection');

export const clearTaskInstancesBody = z
  .strictObject({
    dag_run_id: runIdBodyField,
    task_ids: z.array(z.string()).default([]),
    include_downstream: z.boolean().default(false),
    only_failed: z.boolean().default(false),
    dry_run: z.boolean().default(false),
  })
  .openapi('ClearTaskInstances');

/** Where a page of a log starts (Airflow's `token`). */
export const logQuery = mapIndexQuery.extend({
  token: z.string().max(200).optional().openapi({
    description:
      'The `continuation_token` of the previous page: this page starts where that one ended. Without it, the log from its start.',
  }),
});

export const logSchema = z
  .object({
    content: z.string().openapi({ description: 'The text of this page, at most 768 KiB of UTF-8' }),
    continuation_token: z.string().optional().openapi({
      description:
        'Present when more of the log follows this page: pass it as `token` for the next page. Absent on the page that reaches the end of the log as it is now.',
    }),
  })
  .openapi('TaskLog');

export const xcomEntryParams = taskParams.extend({ xcom_key: z.string().min(1).max(250) });

export const xcomEntrySchema = z
  .object({
    key: z.string(),
    value: z.unknown().openapi({
      description:
        'The XCom parsed from its stored JSON text (a text that is not JSON comes back as a string)',
    }),
    dag_id: z.string(),
    dag_run_id: z.string(),
    task_id: z.string(),
    map_index: z.number().int(),
  })
  .openapi('XComEntry');

export const metricsSchema = z
  .object({ gauges: z.record(z.string(), z.number()), counters: z.record(z.string(), z.number()) })
  .openapi('Metrics');

/** What a client reads: responses as the server sends them, request bodies as a client may write them. */
export type Dag = z.infer<typeof dagSchema>;
export type DagTask = z.infer<typeof dagTaskSchema>;
export type DagDetail = z.infer<typeof dagDetailSchema>;
export type ImportError = z.infer<typeof importErrorSchema>;
export type DagCollection = z.infer<typeof dagCollectionSchema>;
export type DagRun = z.infer<typeof dagRunSchema>;
export type DagRunCollection = z.infer<typeof dagRunCollectionSchema>;
export type TaskInstance = z.infer<typeof taskInstanceSchema>;
export type TaskInstanceCollection = z.infer<typeof taskInstanceCollectionSchema>;
export type TaskLog = z.infer<typeof logSchema>;
export type XComEntry = z.infer<typeof xcomEntrySchema>;
export type TriggerDagRunBody = z.input<typeof triggerRunBody>;
export type PatchDagBody = z.input<typeof patchDagBody>;
export type ClearDagRunBody = z.input<typeof clearRunBody>;
export type ClearTaskInstancesBody = z.input<typeof clearTaskInstancesBody>;
