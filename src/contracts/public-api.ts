import { z } from '@hono/zod-openapi';
import { describeIdGrammar, ID_MAX_LENGTH, type IdKind, invalidIdReason } from '#core/ids.ts';
import { DEADLINE_REFERENCES, DEADLINE_STATES } from '#core/models.ts';
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
    /** The run's deadlines (absent when its DAG declares none): when each was due, and whether the run met it. */
    deadlines: z
      .array(
        z
          .object({
            index: z.number().int(),
            reference: z.enum(DEADLINE_REFERENCES),
            at: isoDate,
            state: z.enum(DEADLINE_STATES),
          })
          .openapi('DagRunDeadline'),
      )
      .optional(),
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
    next_method: z.string().nullable().openapi({
      description: 'The method a deferred try resumes in; null when the try never deferred',
    }),
    trigger_id: z.string().nullable().openapi({
      description:
        'The trigger a deferred task instance waits on (see `GET /api/v2/triggers`); null otherwise',
    }),
    trigger_timeout: isoDate.nullable().openapi({
      description:
        'When the wait on the trigger ends with a timeout; null when not deferred or without a timeout',
    }),
    deferral_seq: z
      .number()
      .int()
      .openapi({ description: 'How many times the current try deferred (0: never)' }),
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

/** A trigger's state, from its holder: none, a live triggerer job, or a dead one. */
export const TRIGGER_STATES = ['waiting', 'running', 'orphaned'] as const;
/** A triggerer job's state: `dead` is a job still marked running whose heartbeats stopped. */
export const TRIGGERER_STATES = ['running', 'dead', 'complete'] as const;

export const triggerSchema = z
  .object({
    trigger_id: z.string(),
    classpath: z.string().openapi({ description: 'The registered trigger name' }),
    kwargs: z.string().openapi({
      description:
        'The trigger\'s kwargs: serde JSON text, returned as a string, with the values of sensitive-looking keys (password, token, authorization, secret, api_key, …) replaced by "***"',
    }),
    queue: z.string(),
    created_date: isoDate,
    timeout_date: isoDate.nullable(),
    state: z.enum(TRIGGER_STATES).openapi({
      description:
        '`waiting` for a triggerer to claim it, `running` on a live triggerer, `orphaned` when held by a triggerer that is dead, complete or no longer recorded (a live triggerer takes over those of dead and complete ones)',
    }),
    triggerer_id: z
      .string()
      .nullable()
      .openapi({ description: 'The triggerer job holding it; null when unclaimed' }),
    task_instance: z.object({
      dag_id: z.string(),
      dag_run_id: z.string(),
      task_id: z.string(),
      map_index: z.number().int(),
      try_number: z.number().int(),
    }),
    deferral_seq: z
      .number()
      .int()
      .openapi({ description: 'Which deferral of the try it is for (1 for the first)' }),
    log_url: z.string().openapi({
      description:
        "Public API path of the try's log, where the trigger's log lines are kept with the worker's",
    }),
  })
  .openapi('Trigger');

export const triggerCollectionSchema = z
  .object({ triggers: z.array(triggerSchema), next_cursor: z.string().optional() })
  .openapi('TriggerCollection');

export const triggererSchema = z
  .object({
    job_id: z.string(),
    hostname: z.string(),
    state: z.enum(TRIGGERER_STATES).openapi({
      description: '`dead`: still marked running but silent for longer than the triggerer heartbeat timeout',
    }),
    start_date: isoDate,
    latest_heartbeat: isoDate,
    end_date: isoDate.nullable(),
    capacity: z.number().int(),
    queues: z.array(z.string()),
    running_triggers: z
      .number()
      .int()
      .openapi({ description: 'Triggers it said it runs, at its latest heartbeat' }),
  })
  .openapi('Triggerer');

export const triggererCollectionSchema = z
  .object({ triggerers: z.array(triggererSchema), next_cursor: z.string().optional() })
  .openapi('TriggererCollection');

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
export type TriggerState = (typeof TRIGGER_STATES)[number];
export type TriggererState = (typeof TRIGGERER_STATES)[number];
export type Trigger = z.infer<typeof triggerSchema>;
export type TriggerCollection = z.infer<typeof triggerCollectionSchema>;
export type Triggerer = z.infer<typeof triggererSchema>;
export type TriggererCollection = z.infer<typeof triggererCollectionSchema>;
export type TriggerDagRunBody = z.input<typeof triggerRunBody>;
export type PatchDagBody = z.input<typeof patchDagBody>;
export type ClearDagRunBody = z.input<typeof clearRunBody>;
export type ClearTaskInstancesBody = z.input<typeof clearTaskInstancesBody>;
