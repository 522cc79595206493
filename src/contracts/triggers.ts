import * as z from 'zod';

/** A trigger queue's name: part of a store key, so no `#`. */
export const triggerQueueName = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[^#]*$/, "a trigger queue name must not contain '#'");

/**
 * Wire schemas of deferral and of the triggerer's part of the Execution API: what a worker
 * reports when a task defers, what a triggerer registers, claims, fetches and reports. Payloads
 * (trigger kwargs, defer kwargs, event payloads) travel as serde JSON text (`src/sdk/serde.ts`):
 * the API stores and forwards them as opaque strings and never turns them into objects.
 */

/** A trigger as a worker serializes it: its registered name and its kwargs as serde JSON text. */
export const serializedTriggerSchema = z
  .strictObject({
    name: z.string().min(1).max(200),
    kwargs: z.string(),
    /** The trigger queue it runs on (Airflow 3.2's trigger queues); `default` when absent. */
    queue: triggerQueueName.optional(),
  })
  .meta({ id: 'SerializedTrigger' });
export type SerializedTrigger = z.infer<typeof serializedTriggerSchema>;

/** Names a trigger method may not take: Airflow's reserved dunder names, and anything not an identifier. */
export const NEXT_METHOD_PATTERN = /^[A-Za-z_$][A-Za-z0-9_$]{0,99}$/;

/**
 * What a task hands over when it defers: the trigger to run, the method to resume in, the
 * kwargs that method gets (serde JSON text) and the deferral's timeout.
 */
export const deferralSchema = z.strictObject({
  trigger: serializedTriggerSchema,
  next_method: z.string().regex(NEXT_METHOD_PATTERN),
  next_kwargs: z.string(),
  /** Null: no deferral timeout (the task's execution timeout, when set, still bounds it). */
  timeout_ms: z.number().int().min(1).nullable(),
});
export type Deferral = z.infer<typeof deferralSchema>;

/**
 * How a trigger ends its wait. `resume`: the task resumes on a worker with the payload as its
 * event. `success` / `failure`: the task ends there, without a worker (end from trigger). The
 * type travels with the payload, so a terminal event is never taken for a resume.
 */
export const TRIGGER_EVENT_TYPES = ['resume', 'success', 'failure'] as const;
export type TriggerEventType = (typeof TRIGGER_EVENT_TYPES)[number];

/** What a resumed try gets in its start answer. */
export const resumeSchema = z
  .object({
    /** The method to call instead of `execute`. */
    method: z.string(),
    /** The defer kwargs, serde JSON text. */
    kwargs: z.string(),
    /** The event payload as the triggerer sent it, serde JSON text. */
    event: z.string(),
    /** How many times this try deferred so far (1 after the first deferral). */
    deferral_seq: z.number().int().min(1),
  })
  .meta({ id: 'Resume' });
export type Resume = z.infer<typeof resumeSchema>;

// ——— Jobs: a triggerer's liveness ———

export const registerJobBody = z
  .strictObject({
    hostname: z.string().min(1).max(255),
    /** Triggers this triggerer runs at most at once. */
    capacity: z.number().int().min(1).max(1_000_000),
    /** Trigger queues it serves; `["default"]` when absent. */
    queues: z.array(triggerQueueName).min(1).max(50).optional(),
  })
  .meta({ id: 'RegisterJob' });
export type RegisterJobBody = z.infer<typeof registerJobBody>;

export const registeredJobSchema = z
  .object({
    job_id: z.string(),
    /** The job token: for the trigger and job routes, refreshed on heartbeats. */
    token: z.string(),
    heartbeat_interval_ms: z.number().int(),
    /** A job whose last heartbeat is older than this is dead: its triggers go to another triggerer. */
    heartbeat_timeout_ms: z.number().int(),
  })
  .meta({ id: 'RegisteredJob' });
export type RegisteredJob = z.infer<typeof registeredJobSchema>;

export const jobHeartbeatBody = z
  .strictObject({
    /** Triggers running in the triggerer now. */
    running: z.number().int().min(0),
  })
  .meta({ id: 'JobHeartbeat' });
export type JobHeartbeatBody = z.infer<typeof jobHeartbeatBody>;

export const jobIdParams = z.object({ job_id: z.string().min(1).max(100) });

// ——— Triggers ———

export const loadTriggersBody = z
  .strictObject({
    /** Claim at most this many (the triggerer's free capacity). */
    limit: z.number().int().min(1).max(1_000),
    /** Serve only these trigger queues (default: the ones the job registered with). */
    queues: z.array(triggerQueueName).min(1).max(50).optional(),
  })
  .meta({ id: 'LoadTriggers' });
export type LoadTriggersBody = z.infer<typeof loadTriggersBody>;

export const loadedTriggersSchema = z
  .object({ trigger_ids: z.array(z.string()) })
  .meta({ id: 'LoadedTriggers' });

const triggerIds = z.array(z.string().min(1).max(100)).max(1_000);

export const triggerIdsBody = z.strictObject({ trigger_ids: triggerIds }).meta({ id: 'TriggerIds' });
export type TriggerIdsBody = z.infer<typeof triggerIdsBody>;

export const cleanupBody = z
  .strictObject({
    trigger_ids: triggerIds,
    /**
     * The ids are every trigger the job runs or waits to run: the answer then also names the
     * triggers the job holds that are not among them (claimed by a load whose answer was lost).
     */
    complete: z.boolean().optional(),
  })
  .meta({ id: 'TriggerCleanupRequest' });
export type CleanupBody = z.infer<typeof cleanupBody>;

/** One page of the triggers the calling job holds; without `cursor`, the first. */
export const heldTriggersBody = z
  .strictObject({ cursor: z.string().min(1).max(2048).optional() })
  .meta({ id: 'HeldTriggersRequest' });
export type HeldTriggersBody = z.infer<typeof heldTriggersBody>;

export const triggerWorkloadSchema = z
  .object({
    trigger_id: z.string(),
    name: z.string(),
    /** Serde JSON text, as the worker serialized it. */
    kwargs: z.string(),
    queue: z.string(),
    ti: z.object({
      dag_id: z.string(),
      run_id: z.string(),
      task_id: z.string(),
      map_index: z.number().int(),
      try_number: z.number().int(),
    }),
    deferral_seq: z.number().int(),
    /** When the deferral times out (the scheduler ends the wait then); null: never. */
    timeout_at: z.string().nullable(),
  })
  .meta({ id: 'RunTrigger' });
export type TriggerWorkload = z.infer<typeof triggerWorkloadSchema>;

export const triggerWorkloadsSchema = z
  .object({
    workloads: z.array(triggerWorkloadSchema),
    /** Asked-for ids this job does not hold any more, or whose task no longer waits: stop them. */
    stop: z.array(z.string()),
  })
  .meta({ id: 'TriggerWorkloads' });

export const triggerIdParams = z.object({ trigger_id: z.string().min(1).max(100) });

export const triggerLogSchema = z
  .strictObject({
    /** Numbered from 1 per trigger: a repeat keeps one copy. */
    seq: z.number().int().min(1),
    text: z.string(),
  })
  .meta({ id: 'TriggerLogChunk' });

export const triggerEventBody = z
  .strictObject({
    type: z.enum(TRIGGER_EVENT_TYPES),
    /** Serde JSON text; stored as it is and deserialized only by the worker that resumes. */
    payload: z.string(),
    log: triggerLogSchema.optional(),
  })
  .meta({ id: 'TriggerEvent' });
export type TriggerEventBody = z.infer<typeof triggerEventBody>;

/** Events one `POST /execution/triggers/events` carries at most. */
export const TRIGGER_EVENTS_PER_CALL = 100;

/** Events of several triggers the job holds, each at most once; each is applied as the single route applies it. */
export const triggerEventsBody = z
  .strictObject({
    events: z
      .array(z.strictObject({ trigger_id: z.string().min(1).max(100), ...triggerEventBody.shape }))
      .min(1)
      .max(TRIGGER_EVENTS_PER_CALL)
      .superRefine((events, context) => {
        const seen = new Set<string>();
        for (const [index, { trigger_id }] of events.entries()) {
          if (seen.has(trigger_id)) {
            context.addIssue({
              code: 'custom',
              path: [index, 'trigger_id'],
              message: `trigger_id '${trigger_id}' appears more than once: each trigger's event may appear once`,
            });
          }
          seen.add(trigger_id);
        }
      }),
  })
  .meta({ id: 'TriggerEvents' });
export type TriggerEventsBody = z.infer<typeof triggerEventsBody>;

export const triggerFailureBody = z
  .strictObject({
    error: z.string().max(10_000),
    log: triggerLogSchema.optional(),
  })
  .meta({ id: 'TriggerFailure' });
export type TriggerFailureBody = z.infer<typeof triggerFailureBody>;

export const triggerLogsBody = z
  .strictObject({
    chunks: z
      .array(
        z.strictObject({
          trigger_id: z.string().min(1).max(100),
          seq: z.number().int().min(1),
          text: z.string(),
        }),
      )
      .max(100),
  })
  .meta({ id: 'TriggerLogs' });
export type TriggerLogsBody = z.infer<typeof triggerLogsBody>;

/**
 * `applied`: the event moved the task on. `duplicate`: this trigger's event was applied before
 * and its trigger is still stored (a retry whose answer was lost). `stale`: the task no longer
 * waits on this deferral (an earlier deferral or try, a timeout, a clear, or this event applied
 * already and its trigger deleted): dropped and counted. The triggerer drops the trigger on all three.
 */
export const triggerEventOutcomeSchema = z
  .object({ outcome: z.enum(['applied', 'duplicate', 'stale']) })
  .meta({ id: 'TriggerEventOutcome' });
export type TriggerEventOutcome = z.infer<typeof triggerEventOutcomeSchema>['outcome'];

/**
 * One answer per event of a `POST /execution/triggers/events`, in the order sent: an outcome, or
 * the status and detail the single event route would have answered with (409: another job holds
 * the trigger; 503: its task is not waiting yet, send it again; other 5xx: try again later).
 */
export const triggerEventResultsSchema = z
  .object({
    results: z.array(
      z.union([
        z.object({ trigger_id: z.string(), outcome: triggerEventOutcomeSchema.shape.outcome }),
        z.object({ trigger_id: z.string(), status: z.number().int(), detail: z.string() }),
      ]),
    ),
  })
  .meta({ id: 'TriggerEventResults' });
export type TriggerEventResult = z.infer<typeof triggerEventResultsSchema>['results'][number];

export const heldTriggersSchema = z
  .object({
    trigger_ids: z.array(z.string()),
    /** Present when more may follow: pass it as `cursor` for the next page. */
    next_cursor: z.string().optional(),
  })
  .meta({ id: 'HeldTriggers' });

export const cleanupSchema = z
  .object({
    /** Ids of the body the triggerer must stop: deleted, taken over, or no longer waited on. */
    stop: z.array(z.string()),
    /** With `complete`: triggers the job holds that the body did not name; the triggerer runs them. */
    adopt: z.array(z.string()).optional(),
  })
  .meta({ id: 'TriggerCleanup' });
