import * as z from 'zod';
import { CALLBACK_ERROR_TYPES, CALLBACK_KINDS, CALLBACK_PLACES, CALLBACK_STATES } from '#core/callbacks.ts';
import type { DeadlineContext } from '#core/deadlines.ts';
import { DEADLINE_REFERENCES } from '#core/models.ts';
import { callbackWorkloadSchema } from './messages.ts';

/** Execution API bodies of the callback routes, and the public API's view of a callback. */

export const callbackIdParams = z.object({
  callback_id: z.string().min(1).max(100),
});

export const startCallbackBody = z
  .strictObject({
    hostname: z.string().max(255),
    worker_id: z.string().max(255),
    /** Names this start: a repeat with the same id (its first answer was lost) is answered again. */
    start_id: z.string().min(1).max(64).optional(),
  })
  .meta({ id: 'StartCallback' });

export const startedCallbackSchema = z
  .object({
    callback_id: z.string(),
    kind: z.enum(CALLBACK_KINDS),
    dag_id: z.string(),
    dag_run_id: z.string(),
    logical_date: z.string(),
    conf: z.record(z.string(), z.unknown()),
    run_state: z.string(),
    task_id: z.string().nullable(),
    map_index: z.number().int().nullable(),
    try_number: z.number().int().nullable(),
    /** Where the worker finds the function: the owner's list for the kind's event, at this index, with this name. */
    event: z.string(),
    index: z.number().int(),
    name: z.string(),
    fileloc: z.string(),
    dag_version: z.string(),
    attempt: z.number().int(),
    max_attempts: z.number().int(),
    timeout_ms: z.number().int(),
    /** The key a callback dedupes its effect on: the same for every attempt and every delivery. */
    idempotency_key: z.string(),
    /** An earlier attempt started: it may have had its effect before it was lost. */
    previous_attempt_may_have_run: z.boolean(),
    error_message: z.string().nullable(),
    error_type: z.enum(CALLBACK_ERROR_TYPES).nullable(),
    /** For `deadline_missed`: the deadline missed, and how late the run was when the miss was recorded. */
    deadline: z
      .object({ at: z.string(), reference: z.enum(DEADLINE_REFERENCES), late_by_ms: z.number().int() })
      .optional(),
    /** Largest log the report may carry, in UTF-8 bytes. */
    log_max_bytes: z.number().int(),
  })
  .meta({ id: 'StartedCallback' });

/** The start answer's `deadline` field: absent for a callback that is not a deadline's. */
export function deadlineFieldOf(deadline: DeadlineContext | undefined): {
  deadline?: { at: string; reference: DeadlineContext['reference']; late_by_ms: number };
} {
  if (deadline === undefined) return {};
  return {
    deadline: { at: deadline.at, reference: deadline.reference, late_by_ms: Math.round(deadline.lateByMs) },
  };
}

export const finishCallbackBody = z
  .discriminatedUnion('state', [
    z.strictObject({
      state: z.literal('success'),
      report_id: z.string().min(1).max(64),
      log: z.string().optional(),
    }),
    z.strictObject({
      state: z.literal('failed'),
      report_id: z.string().min(1).max(64),
      error_message: z.string().max(10_000),
      /** False for a failure another attempt cannot fix (the function is gone from the DAG file). */
      retryable: z.boolean(),
      log: z.string().optional(),
    }),
    /** The process stopped before the attempt ended: it runs again at once, not counted as an attempt. */
    z.strictObject({
      state: z.literal('handed_back'),
      report_id: z.string().min(1).max(64),
      log: z.string().optional(),
    }),
  ])
  .meta({ id: 'FinishCallback' });
export type FinishCallbackBody = z.infer<typeof finishCallbackBody>;

export const finishedCallbackSchema = z
  .object({
    ok: z.literal(true),
    duplicate: z.literal(true).optional(),
    /** What the callback is now: `queued` when a retry follows. */
    state: z.enum(CALLBACK_STATES),
  })
  .meta({ id: 'FinishedCallback' });

/** Most callbacks one triggerer claim takes. */
export const CALLBACK_CLAIM_MAX = 1_000;

export const claimCallbacksBody = z
  .strictObject({
    /** Callbacks the triggerer has room for now (its free callback capacity). */
    limit: z.number().int().min(1).max(CALLBACK_CLAIM_MAX),
  })
  .meta({ id: 'ClaimCallbacks' });

export const claimedCallbacksSchema = z
  .object({
    /** One workload per claimed callback: start it through `PATCH /execution/callbacks/{id}/run`. */
    workloads: z.array(callbackWorkloadSchema),
  })
  .meta({ id: 'ClaimedCallbacks' });
export type ClaimedCallbacks = z.infer<typeof claimedCallbacksSchema>;

/** A callback as the public API lists it. */
export const callbackSchema = z
  .object({
    callback_id: z.string(),
    kind: z.enum(CALLBACK_KINDS),
    dag_id: z.string(),
    dag_run_id: z.string(),
    task_id: z.string().nullable(),
    map_index: z.number().int().nullable(),
    try_number: z.number().int().nullable(),
    name: z.string(),
    state: z.enum(CALLBACK_STATES),
    attempt: z.number().int(),
    max_attempts: z.number().int(),
    owed_at: z.string(),
    queued_at: z.string().nullable(),
    start_date: z.string().nullable(),
    end_date: z.string().nullable(),
    /** Where it runs: a worker, or a triggerer's event loop (async callbacks). */
    place: z.enum(CALLBACK_PLACES),
    hostname: z.string().nullable(),
    /** The worker, or the triggerer job, that started its current attempt. */
    worker_id: z.string().nullable(),
    error_message: z.string().nullable(),
    owner_error: z.string().nullable(),
    owner_error_type: z.enum(CALLBACK_ERROR_TYPES).nullable(),
  })
  .meta({ id: 'Callback' });

export const callbackListSchema = z
  .object({
    callbacks: z.array(callbackSchema),
    /** The callbacks in this answer. */
    total_entries: z.number().int(),
    /** Present when more may follow: pass it as `cursor` for the next page. */
    next_cursor: z.string().optional(),
  })
  .meta({ id: 'CallbackCollection' });
