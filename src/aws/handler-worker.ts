import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { workerMessageSchema } from '#contracts/messages.ts';
import { type CallbackExecutor, runCallbackWorkload } from '#worker/callback-pool.ts';
import { ExecutionBatcher } from '#worker/execution-batcher.ts';
import { ExecutionClient } from '#worker/execution-client.ts';
import type { TaskExecutor } from '#worker/executor.ts';
import { runWorkload, type WorkloadDeps } from '#worker/run-workload.ts';
import { type AwsDefaults, type HandlerDeps, LazyDeps } from './handler-deps.ts';
import { HandlerError, UnrecognisedEventError } from './handler-errors.ts';
import {
  createObservability,
  EmfMetricsRegistry,
  engineLoggerOf,
  type Observability,
  withObservability,
} from './handler-observability.ts';
import { describeEvent, isSqsEvent } from './handler-sqs.ts';

/**
 * How long before the function's timeout a running try is stopped (at most a third of the time
 * left): enough for the rest of its log and the report with its retries. The try then fails,
 * retryable, so the task's retries apply: a try that outlives the function cannot be handed back
 * (run again for free), or a task needing longer than the function can run would loop forever.
 */
export const HAND_BACK_MARGIN_MS = 20_000;

/** The worker reaches the Execution API and nothing else. */
const AWS_DEFAULTS: AwsDefaults = {
  executionApiUrl: () => import('./handler-defaults-execution.ts'),
  executionFetch: () => import('./handler-defaults-execution.ts'),
};

/** A record whose workload must come back (or go to the dead-letter queue after its receives). */
export class WorkloadNotDoneError extends HandlerError {
  override name = 'WorkloadNotDoneError';
}

/**
 * The worker: SQS batches from the task queues and the callback queue, each record one workload
 * run start to report with `runWorkload` (the same entry the standalone pool calls), the try's
 * code in this process. A batch's records run side by side, so the invocation lasts as long as
 * its longest workload; their Execution API calls travel together (`ExecutionBatcher`): the
 * starts of a batch in one request, and the reports that end close together in one. A record is
 * reported as a batch item failure, so SQS delivers it again, when the workload is not done
 * with: the Execution API was unreachable or refused the start, the function was about to time
 * out before the start, or the body is malformed (it then goes to the dead-letter queue after
 * the queue's receives, never dropped). A try that started is owned by the store from then on:
 * its record succeeds whatever the try's outcome, and a redelivery is refused by the API (409)
 * and succeeds too. A try still running `HAND_BACK_MARGIN_MS` before the function's timeout is
 * stopped and reported failed (retryable, the reason in its log). Reaches nothing but the
 * Execution API: no table, no queue (the event source mapping deletes the records).
 */
export function makeWorkerHandler(given: Partial<HandlerDeps & Observability> = {}) {
  const observability = createObservability('updraft-worker', given);
  const deps = new LazyDeps(given, observability, AWS_DEFAULTS);
  const metrics = new EmfMetricsRegistry(observability.metrics);
  const log = engineLoggerOf(observability.logger, { component: 'worker' });
  const workerId = `${process.env.AWS_LAMBDA_FUNCTION_NAME ?? 'worker'}:${randomUUID().slice(0, 8)}`;
  let workloadDeps: WorkloadDeps | undefined;
  let batcher: ExecutionBatcher | undefined;
  /** Records of the current invocation still running: when each waits on a call, their calls leave. */
  let recordsInProgress = 0;

  async function workloadDepsOf(): Promise<WorkloadDeps> {
    if (workloadDeps) return workloadDeps;
    const [settings, executionApiUrl, fetch, executor, clock] = await Promise.all([
      deps.get('settings'),
      deps.get('executionApiUrl'),
      deps.get('executionFetch'),
      deps.get('executor'),
      deps.get('clock'),
    ]);
    batcher = new ExecutionBatcher({
      fetch,
      baseUrl: executionApiUrl,
      maxCalls: settings.executionBatchMaxCalls,
      windowMs: settings.executionBatchWindowMs,
      requestMaxBytes: settings.requestMaxBytes,
      callers: () => recordsInProgress,
      log,
    });
    workloadDeps = {
      client: new ExecutionClient(executionApiUrl, { fetch: batcher.fetch }),
      executor,
      clock,
      settings: {
        heartbeatIntervalMs: settings.heartbeatIntervalMs,
        heartbeatTimeoutMs: settings.heartbeatTimeoutMs,
      },
      log,
      metrics,
      worker: { hostname: hostname(), workerId, pid: process.pid },
    };
    return workloadDeps;
  }

  async function runRecord(record: SQSRecord, workload: WorkloadDeps, deadline: AbortSignal): Promise<void> {
    try {
      await runMessage(record, workload, deadline);
    } finally {
      recordsInProgress -= 1;
      // The others may all be waiting on a call now: theirs leave without waiting out the window.
      batcher?.check();
    }
  }

  async function runMessage(record: SQSRecord, workload: WorkloadDeps, deadline: AbortSignal): Promise<void> {
    let message: ReturnType<typeof workerMessageSchema.parse>;
    try {
      message = workerMessageSchema.parse(JSON.parse(record.body));
    } catch (error) {
      metrics.increment('worker.workloads_malformed');
      log.error('Malformed workload; it is delivered again, then goes to the dead-letter queue', {
        messageId: record.messageId,
        error,
      });
      throw new WorkloadNotDoneError(`Record ${record.messageId} is not a workload`, { cause: error });
    }
    switch (message.type) {
      case 'execute_task': {
        const result = await runWorkload(workload, message, { deadline });
        metrics.increment(result.started ? 'worker.tries_run' : 'worker.workloads_not_started');
        if (!result.deleteMessage) {
          throw new WorkloadNotDoneError(
            `The workload of record ${record.messageId} was not started; it comes back`,
          );
        }
        return;
      }
      case 'run_callback': {
        const executor = workload.executor as TaskExecutor & Partial<CallbackExecutor>;
        if (typeof executor.runCallback !== 'function') {
          throw new WorkloadNotDoneError(
            `This worker's executor cannot run callbacks (record ${record.messageId})`,
          );
        }
        // The invocation's time is already up: this one comes back.
        if (deadline.aborted) {
          throw new WorkloadNotDoneError(
            `The callback workload of record ${record.messageId} was not started before the worker's time limit; it comes back`,
          );
        }
        try {
          // At the time limit an attempt under way is handed back unfinished, not counted.
          await runCallbackWorkload(message, {
            client: workload.client,
            executor: executor as CallbackExecutor,
            workerId: workload.worker.workerId,
            log,
            clock: workload.clock,
            signal: deadline,
          });
        } catch (error) {
          throw new WorkloadNotDoneError(
            `The callback workload of record ${record.messageId} was not started; it comes back`,
            { cause: error },
          );
        }
        metrics.increment('worker.callbacks_run');
        return;
      }
    }
  }

  return withObservability(async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => {
    if (!isSqsEvent(event)) {
      throw new UnrecognisedEventError(
        `The worker function takes SQS batches from the task and callback queues, not ${describeEvent(event)}`,
      );
    }
    const workload = await workloadDepsOf();
    const deadline = new AbortController();
    const remaining = context.getRemainingTimeInMillis?.();
    let timer: NodeJS.Timeout | undefined;
    if (remaining !== undefined) {
      const limitMs = Math.max(0, remaining - Math.min(HAND_BACK_MARGIN_MS, remaining / 3));
      timer = setTimeout(() => deadline.abort(outlivedReason(limitMs, remaining - limitMs)), limitMs);
    }
    // Every record counts as in progress from the start, so the first start waits for the others.
    recordsInProgress += event.Records.length;
    try {
      // A processor per invocation: it keeps the batch's records and outcomes while it runs.
      return await processPartialResponse(
        event,
        (record: SQSRecord) => runRecord(record, workload, deadline.signal),
        new BatchProcessor(EventType.SQS),
        // Every record's outcome is in the response; throwing would only make Lambda retry them all.
        { context, throwOnFullBatchFailure: false, processInParallel: true },
      );
    } finally {
      clearTimeout(timer);
    }
  }, observability);
}

/** Why a try still running at the worker's deadline failed: the try's log and error message. */
function outlivedReason(limitMs: number, marginMs: number): string {
  return (
    `The task outlived the worker function's time limit of ${seconds(limitMs)} s (its timeout minus ` +
    `the hand-back margin of ${seconds(marginMs)} s for the report): it was stopped and this try ` +
    "failed; the task's retries apply. A task that needs longer cannot run on a Lambda worker: " +
    'split its work into shorter tasks.'
  );
}

function seconds(ms: number): string {
  return String(ms >= 10_000 ? Math.round(ms / 1000) : Math.round(ms / 100) / 10);
}
