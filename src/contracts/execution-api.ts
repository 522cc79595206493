import * as z from 'zod';
import type { TaskInstanceKey } from '#core/models.ts';
import { isoDate } from './common.ts';
import { deferralSchema, resumeSchema } from './triggers.ts';

/**
 * Wire schemas of the Execution API, the only way a worker reaches the store. The API validates
 * with them and documents them in its OpenAPI document; the worker reads the inferred types.
 * Request bodies reject unknown keys.
 */

/** Versions of the Execution API this server speaks, oldest first; a request may name one in the header. */
export const EXECUTION_API_VERSIONS = ['2026-11-01'] as const;
export const EXECUTION_API_VERSION_HEADER = 'Updraft-API-Version';
/**
 * A fresh task token, sent on every start response and on a heartbeat response once less than
 * half of the presented token's lifetime remains. The worker uses it for every later call.
 */
export const REFRESHED_TOKEN_HEADER = 'Updraft-Refreshed-Token';

export const startTaskBody = z
  .strictObject({
    hostname: z.string().max(255),
    worker_id: z.string().max(255),
    pid: z.number().int().optional(),
    /**
     * Names this start: a repeat with the same id (its first answer was lost) while the try still
     * runs is answered again instead of refused, so the worker runs the try it started.
     */
    start_id: z.string().min(1).max(64).optional(),
  })
  .meta({ id: 'StartTaskInstance' });

export const startedTaskSchema = z
  .object({
    dag_id: z.string(),
    dag_run_id: z.string(),
    task_id: z.string(),
    map_index: z.number().int(),
    try_number: z.number().int(),
    max_tries: z.number().int(),
    logical_date: isoDate,
    data_interval_start: isoDate.nullable(),
    data_interval_end: isoDate.nullable(),
    conf: z.record(z.string(), z.unknown()),
    params: z.record(z.string(), z.unknown()),
    fileloc: z.string(),
    dag_version: z.string(),
    args: z.array(z.object({ task_id: z.string(), key: z.string() })),
    execution_timeout_ms: z.number().int().nullable(),
    /** The task's own memory limit (its `memoryLimitMb`); null: the worker's UPDRAFT_TASK_MEMORY_LIMIT_MB. */
    memory_limit_mb: z.number().int().nullable().optional(),
    /** Largest XCom the report may carry (UPDRAFT_XCOM_MAX_BYTES). */
    xcom_max_bytes: z.number().int(),
    /** Largest `log.text` of one call, in UTF-8 bytes (UPDRAFT_LOG_CHUNK_MAX_BYTES). */
    log_chunk_max_bytes: z.number().int(),
    /** Largest `log.seq` of a try: ceil(UPDRAFT_LOG_MAX_BYTES / UPDRAFT_LOG_CHUNK_MAX_BYTES). */
    log_max_chunks: z.number().int(),
    /** Set when this start resumes a deferred try: call `method` with the event instead of `execute`. */
    resume: resumeSchema.nullable().optional(),
  })
  .meta({ id: 'StartedTaskInstance' });

/**
 * One numbered piece of a try's log. `seq` counts from 1 within the try; sending the same `seq`
 * again (a retried call) keeps one copy.
 */
export const logChunkSchema = z
  .strictObject({
    seq: z.number().int().min(1),
    text: z.string(),
  })
  .meta({ id: 'LogChunk' });

export const heartbeatBody = z.strictObject({ log: logChunkSchema.optional() }).meta({ id: 'TaskHeartbeat' });

/** Names one report, so a retried report is recognised as the same one (1 to 64 characters). */
const reportId = z.string().min(1).max(64);

export const finishTaskBody = z
  .discriminatedUnion('state', [
    z.strictObject({
      state: z.literal('success'),
      report_id: reportId,
      /** The return value as JSON text; the API stores it without parsing it. */
      xcom: z.string().optional(),
      follow_task_ids: z.array(z.string()).optional(),
      log: logChunkSchema.optional(),
    }),
    z.strictObject({
      state: z.literal('skipped'),
      report_id: reportId,
      reason: z.string().max(10_000).optional(),
      log: logChunkSchema.optional(),
    }),
    z.strictObject({
      state: z.literal('failed'),
      report_id: reportId,
      error_message: z.string().max(10_000),
      retryable: z.boolean(),
      /** Why, when the worker knows better than "the task raised": its execution timeout stopped it. */
      error_type: z.enum(['task_error', 'execution_timeout']).optional(),
      log: logChunkSchema.optional(),
    }),
    z.strictObject({ state: z.literal('handed_back'), report_id: reportId, log: logChunkSchema.optional() }),
    /** The task deferred: the API stores the trigger, frees the slot, and the task waits in `deferred`. */
    z.strictObject({
      state: z.literal('deferred'),
      report_id: reportId,
      deferral: deferralSchema,
      log: logChunkSchema.optional(),
    }),
  ])
  .meta({ id: 'FinishTaskInstance' });

export const taskInstanceIdParams = z.object({ ti_id: z.string().min(1).max(1100) });
export const xcomParams = z.object({
  dag_id: z.string(),
  dag_run_id: z.string(),
  task_id: z.string(),
  key: z.string(),
});
export const xcomSchema = z.object({ key: z.string(), value: z.string() }).meta({ id: 'XCom' });
/**
 * `false` when the call was recorded but the log store failed to write its log chunk: the call
 * still succeeded, only the chunk is lost. Absent otherwise (no chunk, or the chunk was written).
 */
const logAccepted = z.literal(false).optional();
export const okSchema = z.object({ ok: z.literal(true), log_accepted: logAccepted }).meta({ id: 'Ok' });
export const finishedSchema = z
  .object({
    ok: z.literal(true),
    log_accepted: logAccepted,
    /** Present when this report was already recorded (a retry of a call whose answer was lost). */
    duplicate: z.literal(true).optional(),
  })
  .meta({ id: 'Finished' });

export type StartTaskBody = z.infer<typeof startTaskBody>;
export type StartedTask = z.infer<typeof startedTaskSchema>;
export type LogChunk = z.infer<typeof logChunkSchema>;
export type HeartbeatBody = z.infer<typeof heartbeatBody>;
export type FinishTaskBody = z.infer<typeof finishTaskBody>;
export type FinishedResponse = z.infer<typeof finishedSchema>;
export type XComResponse = z.infer<typeof xcomSchema>;

/** Execution API id of a task instance: its key, as base64url JSON, safe in one path segment. */
export function encodeTaskInstanceId(key: TaskInstanceKey): string {
  return Buffer.from(JSON.stringify([key.dagId, key.runId, key.taskId, key.mapIndex])).toString('base64url');
}

export function decodeTaskInstanceId(id: string): TaskInstanceKey | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(id, 'base64url').toString('utf8'));
    if (!Array.isArray(value) || value.length !== 4) return undefined;
    const [dagId, runId, taskId, mapIndex] = value as unknown[];
    if (typeof dagId !== 'string' || typeof runId !== 'string' || typeof taskId !== 'string')
      return undefined;
    if (typeof mapIndex !== 'number' || !Number.isInteger(mapIndex)) return undefined;
    return { dagId, runId, taskId, mapIndex };
  } catch {
    return undefined;
  }
}

/**
 * One request that carries several worker calls, each under its own token, so a worker running
 * several workloads at once (a Lambda batch) pays one invocation for their starts, or their
 * reports, instead of one each. The API serves each call exactly as if it came alone (same
 * route, token check, validation and answer) and sends the scheduling requests they made
 * together, before it answers.
 */
export const EXECUTION_BATCH_PATH = '/execution/batch';

/**
 * The calls a batch may carry: a worker's calls that change a TI or a callback attempt. Both
 * kinds of id are base64url (`encodeTaskInstanceId`, callback ids are hashes), so a path with
 * anything else in its id (a dot segment, a backslash, an escape) is not one of these calls.
 */
export const BATCHABLE_CALLS: readonly { method: 'PATCH' | 'PUT'; path: RegExp }[] = [
  { method: 'PATCH', path: /^\/execution\/task-instances\/[A-Za-z0-9_-]+\/run$/ },
  { method: 'PUT', path: /^\/execution\/task-instances\/[A-Za-z0-9_-]+\/heartbeat$/ },
  { method: 'PATCH', path: /^\/execution\/task-instances\/[A-Za-z0-9_-]+\/state$/ },
  { method: 'PATCH', path: /^\/execution\/callbacks\/[A-Za-z0-9_-]+\/run$/ },
  { method: 'PATCH', path: /^\/execution\/callbacks\/[A-Za-z0-9_-]+\/state$/ },
];

export function isBatchableCall(method: string, path: string): boolean {
  return BATCHABLE_CALLS.some((call) => call.method === method && call.path.test(path));
}

/**
 * Most bytes of a batch's answer: a function URL answers at most 6 MB. Calls whose answers do
 * not fit (start answers carry the run's conf) are answered 503 with `send_alone`, after they
 * were served: sent again alone, each gets its answer (a start by its `start_id`, a report by
 * its `report_id`).
 */
export const BATCH_ANSWER_MAX_BYTES = 5 * 1024 * 1024;

/** What a task or callback token is made of (JWS compact: base64url parts and dots). */
export const TASK_TOKEN_PATTERN = /^[A-Za-z0-9._~+/=-]+$/;

export const batchCallSchema = z
  .strictObject({
    method: z.enum(['PATCH', 'PUT']),
    /** The call's own path, as it would be sent alone (e.g. `/execution/task-instances/{ti_id}/run`). */
    path: z.string().min(1).max(2048),
    /** The call's task or callback token (what it would send as `Authorization: Bearer …`). */
    token: z
      .string()
      .min(1)
      .max(16_384)
      .regex(TASK_TOKEN_PATTERN, 'a token is made of base64url characters and dots'),
    body: z.record(z.string(), z.unknown()),
  })
  .meta({ id: 'BatchedCall' });

export const executionBatchBody = z
  .strictObject({ calls: z.array(batchCallSchema).min(1) })
  .meta({ id: 'ExecutionBatch' });

export const batchResultSchema = z
  .object({
    /** The status the call would have been answered with alone. */
    status: z.number().int(),
    /** Its JSON answer (an error's `detail` and `status` included). */
    body: z.unknown(),
    /** The `Updraft-Refreshed-Token` header it would have carried. */
    refreshed_token: z.string().optional(),
    /** Set on a 503 for a call that was applied but whose answer did not fit: send it again alone. */
    send_alone: z.literal(true).optional(),
  })
  .meta({ id: 'BatchedCallResult' });

export const executionBatchResultsSchema = z
  .object({ results: z.array(batchResultSchema) })
  .meta({ id: 'ExecutionBatchResults' });

export type BatchCall = z.infer<typeof batchCallSchema>;
export type BatchResult = z.infer<typeof batchResultSchema>;
