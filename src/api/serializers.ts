import type { z } from '@hono/zod-openapi';
import type {
  dagDetailSchema,
  dagRunSchema,
  dagSchema,
  importErrorSchema,
  TriggererState,
  TriggerState,
  taskInstanceSchema,
  triggererSchema,
  triggerSchema,
} from '#contracts/public-api.ts';
import type { DagRun, TaskInstance, Trigger, TriggererJob } from '#core/models.ts';
import { redactJsonText } from '#core/redact.ts';
import type { SerializedDag } from '#core/serialized-dag.ts';
import type { DagRecord, ImportError } from '#store/port.ts';

/** Model → wire shape, in Airflow's snake_case field names. */

export function dagToWire(record: DagRecord): z.infer<typeof dagSchema> {
  return {
    dag_id: record.dagId,
    description: record.description,
    fileloc: record.fileloc,
    is_paused: record.isPaused,
    is_active: record.isActive,
    tags: record.tags,
    schedule: record.scheduleExpression,
    next_dagrun_logical_date: record.nextRunAt,
    dag_version: record.versionHash,
    last_parsed_time: record.lastParsedAt,
  };
}

export function dagDetailToWire(record: DagRecord, dag: SerializedDag): z.infer<typeof dagDetailSchema> {
  return {
    ...dagToWire(record),
    tasks: dag.tasks.map((task) => ({
      task_id: task.taskId,
      operator: task.operator,
      upstream_task_ids: task.upstream,
      downstream_task_ids: dag.tasks.filter((t) => t.upstream.includes(task.taskId)).map((t) => t.taskId),
      trigger_rule: task.triggerRule,
      retries: task.retries,
      pool: task.pool,
      pool_slots: task.poolSlots,
      priority_weight: task.priorityWeight,
      queue: task.queue,
      execution_timeout_seconds: task.executionTimeoutMs === null ? null : task.executionTimeoutMs / 1000,
      is_branch: task.isBranch,
    })),
    max_active_runs: dag.maxActiveRuns,
    max_active_tasks: dag.maxActiveTasks,
    catchup: dag.catchup,
    start_date: dag.startDate,
    end_date: dag.endDate,
    params: dag.params,
  };
}

export function importErrorToWire(error: ImportError): z.infer<typeof importErrorSchema> {
  return { filename: error.fileloc, stack_trace: error.message, timestamp: error.timestamp };
}

export function dagRunToWire(run: DagRun): z.infer<typeof dagRunSchema> {
  return {
    dag_id: run.dagId,
    dag_run_id: run.runId,
    run_type: run.runType,
    state: run.state,
    logical_date: run.logicalDate,
    data_interval_start: run.dataIntervalStart,
    data_interval_end: run.dataIntervalEnd,
    queued_at: run.queuedAt,
    start_date: run.startDate,
    end_date: run.endDate,
    conf: run.conf,
    dag_version: run.dagVersion,
    ...(run.deadlines === undefined
      ? {}
      : {
          deadlines: run.deadlines.map((deadline) => ({
            index: deadline.index,
            reference: deadline.reference,
            at: deadline.at,
            state: deadline.state,
          })),
        }),
  };
}

export function taskInstanceToWire(ti: TaskInstance): z.infer<typeof taskInstanceSchema> {
  return {
    dag_id: ti.dagId,
    dag_run_id: ti.runId,
    task_id: ti.taskId,
    map_index: ti.mapIndex,
    // Airflow reports a TI that has not been scheduled yet with a null state.
    state: ti.state === 'none' ? null : ti.state,
    try_number: ti.tryNumber,
    max_tries: ti.maxTries,
    start_date: ti.startDate,
    end_date: ti.endDate,
    duration: durationSeconds(ti),
    operator: ti.operator,
    pool: ti.pool,
    pool_slots: ti.poolSlots,
    priority_weight: ti.priorityWeight,
    queue: ti.queue,
    queued_when: ti.queuedAt,
    hostname: ti.hostname,
    error_message: ti.errorMessage,
    next_retry_at: ti.nextRetryAt,
    // Items written before deferral existed, and tries that never deferred, lack these fields.
    next_method: ti.nextMethod ?? null,
    trigger_id: ti.triggerId ?? null,
    trigger_timeout: ti.triggerTimeoutAt ?? null,
    deferral_seq: ti.deferralSeq ?? 0,
  };
}

/** `state` depends on the holder's liveness, which the caller knows and this mapping does not. */
export function triggerToWire(trigger: Trigger, state: TriggerState): z.infer<typeof triggerSchema> {
  const { ti } = trigger;
  return {
    trigger_id: trigger.triggerId,
    classpath: trigger.name,
    kwargs: redactJsonText(trigger.kwargs),
    queue: trigger.queue,
    created_date: trigger.createdAt,
    timeout_date: trigger.timeoutAt,
    state,
    triggerer_id: trigger.jobId,
    task_instance: {
      dag_id: ti.dagId,
      dag_run_id: ti.runId,
      task_id: ti.taskId,
      map_index: ti.mapIndex,
      try_number: trigger.tryNumber,
    },
    deferral_seq: trigger.deferralSeq,
    log_url: logPathOf(trigger),
  };
}

export function triggererToWire(job: TriggererJob, state: TriggererState): z.infer<typeof triggererSchema> {
  return {
    job_id: job.jobId,
    hostname: job.hostname,
    state,
    start_date: job.startedAt,
    latest_heartbeat: job.heartbeatAt,
    end_date: job.endedAt,
    capacity: job.capacity,
    queues: job.queues,
    running_triggers: job.running,
  };
}

/** The public log route of the trigger's try: its lines are kept in that try's log. */
function logPathOf(trigger: Trigger): string {
  const { ti } = trigger;
  const path = [ti.dagId, 'dagRuns', ti.runId, 'taskInstances', ti.taskId, 'logs', String(trigger.tryNumber)]
    .map(encodeURIComponent)
    .join('/');
  return `/api/v2/dags/${path}${ti.mapIndex >= 0 ? `?map_index=${ti.mapIndex}` : ''}`;
}

/** Seconds from start to end of the latest try; derived when the store did not record it. */
function durationSeconds(ti: TaskInstance): number | null {
  if (ti.durationMs !== null) return ti.durationMs / 1000;
  if (!ti.startDate || !ti.endDate) return null;
  return (Date.parse(ti.endDate) - Date.parse(ti.startDate)) / 1000;
}
