import type { ScheduledEvent, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { type AwsDefaults, type HandlerDeps, LazyDeps } from '#aws/handler-deps.ts';
import { engineFactory } from '#aws/handler-engine.ts';
import { UnrecognisedEventError } from '#aws/handler-errors.ts';
import {
  createObservability,
  EmfMetricsRegistry,
  engineLoggerOf,
  type Observability,
  withObservability,
} from '#aws/handler-observability.ts';
import {
  batchResponseOf,
  describeEvent,
  isScheduledEvent,
  isSqsEvent,
  receivedMessageOf,
} from '#aws/handler-sqs.ts';
import { handleSchedulingMessages, runSchedulerTick } from '#engine/entrypoints.ts';
import { readinessGauges } from '#engine/scheduler.ts';

/** The table, the queues (workloads, scheduling requests), the wake timers and the signing keyring. */
const AWS_DEFAULTS: AwsDefaults = {
  store: () => import('#aws/handler-defaults-table.ts'),
  queues: () => import('#aws/handler-defaults-queues.ts'),
  timers: () => import('#aws/handler-defaults-timers.ts'),
  executionKeys: () => import('#aws/handler-defaults-secrets.ts'),
};

/** What the periodic tick returns (EventBridge ignores it; a test or a manual invoke reads it). */
export interface TickResult {
  wrapped: boolean;
  runs: { queued: number; running: number };
}

/**
 * The scheduler: one function for both of its triggers.
 * - SQS batches from the scheduler queue (scheduling requests after each state change, and the
 *   wake timers' delayed requests): one pass per distinct run, a partial batch response for the
 *   requests whose pass failed or that are malformed (redelivered, then dead-lettered).
 * - The EventBridge rule's scheduled event: the periodic tick (due schedules, reconciliation of
 *   the next page of active runs, the pool audit).
 * Uses the table, the task queues (workloads) and the scheduler queue (wakes, nudges), the wake
 * timers, and the signing keyring (workload tokens).
 */
export function makeHandler(given: Partial<HandlerDeps & Observability> = {}) {
  const observability = createObservability('updraft-scheduler', given);
  const deps = new LazyDeps(given, observability, AWS_DEFAULTS);
  const metrics = new EmfMetricsRegistry(observability.metrics);
  const engine = engineFactory(
    deps,
    engineLoggerOf(observability.logger, { component: 'scheduler' }),
    metrics,
  );

  return withObservability(
    async (event: SQSEvent | ScheduledEvent): Promise<SQSBatchResponse | TickResult> => {
      if (isSqsEvent(event)) {
        const engineDeps = await engine();
        metrics.increment('scheduler.requests_received', event.Records.length);
        const { retry } = await handleSchedulingMessages(engineDeps, event.Records.map(receivedMessageOf));
        const again = new Set(retry);
        publish(metrics, readinessGauges(engineDeps.readiness));
        return batchResponseOf(
          event.Records.filter((record) => again.has(record.receiptHandle)).map((record) => record.messageId),
        );
      }
      if (isScheduledEvent(event)) {
        const engineDeps = await engine();
        metrics.increment('scheduler.ticks');
        const result = await runSchedulerTick(engineDeps);
        publish(metrics, readinessGauges(engineDeps.readiness));
        publish(metrics, runGauges(result));
        return result;
      }
      throw new UnrecognisedEventError(
        `The scheduler function takes SQS batches from the scheduler queue and the EventBridge tick, not ${describeEvent(event)}`,
      );
    },
    observability,
  );
}

/**
 * The dashboard's run gauges from one tick: the active runs of the page it reconciled. Standalone
 * sums the pages of a whole cursor cycle before publishing, in one long-lived process; here
 * consecutive ticks may run in different instances, so each tick publishes its own page. That
 * is every active run while they fit one page (`UPDRAFT_MAX_RUNS_PER_PASS`, 100 by default);
 * beyond that a point is one page's share.
 */
function runGauges(result: TickResult): Record<string, number> {
  return { 'dag_runs.queued': result.runs.queued, 'dag_runs.running': result.runs.running };
}

function publish(metrics: EmfMetricsRegistry, gauges: Record<string, number>): void {
  for (const [name, value] of Object.entries(gauges)) metrics.gauge(name, value);
}

export const handler = makeHandler();
