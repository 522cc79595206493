import type { SQSBatchResponse } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandlerDeps } from '#aws/handler-deps.ts';
import { UnrecognisedEventError } from '#aws/handler-errors.ts';
import { settingsSchema } from '#config/settings.ts';
import type { SchedulingRequest } from '#contracts/messages.ts';
import type { DagRunKey } from '#core/models.ts';
import { registerDags } from '#engine/dag-registry.ts';
import { silentLogger } from '#engine/logger.ts';
import { createDagRun } from '#engine/runs.ts';
import { createInMemoryQueues, type InMemoryQueues } from '#queue/memory.ts';
import type { ReceivedMessage } from '#queue/port.ts';
import { dag } from '#sdk/index.ts';
import { versionDag } from '#sdk/serialize.ts';
import type { Store } from '#store/port.ts';
import { makeHandler, type TickResult } from '../../functions/scheduler.ts';
import { SCHEDULER_GAUGES } from '../../lib/observability.ts';
import {
  type CapturedMetrics,
  type LambdaHandler,
  lambdaContext,
  MemoryLogStore,
  QueueWakeTimers,
  quietObservability,
  scheduledEvent,
  sqsEvent,
} from '../support/lambda-events.ts';
import { type StoreHarness, startStoreHarness } from './store-fixtures.ts';

/**
 * The scheduler handler's edges: it tells an SQS batch from the EventBridge tick, answers a
 * partial batch response naming exactly the requests to deliver again, and refuses other events.
 */

const settings = settingsSchema.parse({});
const pipeline = dag({ id: 'pipeline', startDate: '2026-01-01T00:00:00Z' }, (d) => {
  const first = d.task('first', async () => 1);
  d.task('second', async () => 2).after(first);
});

let harness: StoreHarness;
let store: Store;
let queues: InMemoryQueues;

beforeAll(async () => {
  harness = await startStoreHarness();
  store = await harness.newStore();
  queues = createInMemoryQueues(settings);
  const versioned = versionDag(pipeline, 'pipeline.ts');
  await registerDags(
    { store, log: silentLogger, now: Date.now, pausedAtCreation: false },
    { dags: [versioned], errors: [] },
  );
});

afterAll(async () => {
  queues.close();
  await harness.close();
});

function scheduler(overrides: Partial<HandlerDeps> = {}) {
  const observability = quietObservability();
  const handler = makeHandler({
    ...observability,
    settings,
    now: Date.now,
    store,
    queues: queues.queues,
    timers: new QueueWakeTimers(queues.queues.scheduler),
    logs: new MemoryLogStore(),
    executionKeys: async () => ({ k1: 'scheduler-test-secret-0123456789abcdef' }),
    ...overrides,
  }) as unknown as LambdaHandler<unknown, SQSBatchResponse | TickResult>;
  return { handler, metrics: observability.metrics as CapturedMetrics };
}

async function newRun(runId: string): Promise<DagRunKey> {
  const record = await store.getDag('pipeline');
  const serialized = await store.getSerializedDag('pipeline', record?.versionHash ?? '');
  if (!record || !serialized) throw new Error('pipeline is not registered');
  const now = new Date().toISOString();
  return createDagRun(store, {
    dag: serialized,
    versionHash: record.versionHash,
    runType: 'manual',
    logicalDate: now,
    runId,
    now,
    confMaxBytes: settings.confMaxBytes,
  });
}

function request(run: DagRunKey): string {
  const body: SchedulingRequest = { type: 'schedule_run', dag_id: run.dagId, run_id: run.runId };
  return JSON.stringify(body);
}

function messages(bodies: string[]): ReceivedMessage[] {
  return bodies.map((body, index) => ({
    messageId: `m${index + 1}`,
    receiptHandle: `receipt-${index + 1}`,
    body,
    receiveCount: 1,
  }));
}

async function takeWorkloads(): Promise<string[]> {
  const received = await queues.queues.tasks_default.receive({ maxMessages: 10, waitTimeMs: 0 });
  await queues.queues.tasks_default.delete(received.map((message) => message.receiptHandle));
  return received.map((message) => (JSON.parse(message.body) as { ti: { task_id: string } }).ti.task_id);
}

describe('the scheduler handler', () => {
  it('passes each run of an SQS batch once and reports only the malformed request for redelivery', async () => {
    const run = await newRun('batch_run');
    const { handler, metrics } = scheduler();
    const event = sqsEvent(
      'scheduler',
      messages([
        request(run),
        '{"type":"schedule_run"}',
        request(run),
        request({ dagId: 'pipeline', runId: 'gone' }),
      ]),
    );
    const response = (await handler(event, lambdaContext('updraft-scheduler'))) as SQSBatchResponse;
    expect(response.batchItemFailures).toEqual([{ itemIdentifier: 'm2' }]);
    expect(await takeWorkloads()).toEqual(['first']);
    // Two requests for one run are one pass; the request for a run that does not exist is one too.
    expect(metrics.total('scheduler.passes')).toBe(2);
    expect(metrics.total('scheduler.requests_received')).toBe(4);
  });

  it('reports every request of a run whose pass failed, and the others not', async () => {
    const failing = await newRun('failing_run');
    const passing = await newRun('passing_run');
    const throwing = new Proxy(store, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver) as unknown;
        if (typeof value !== 'function') return value;
        return async (...args: unknown[]) => {
          const key = args[0] as { runId?: unknown } | undefined;
          if (key?.runId === failing.runId) throw new Error('Simulated throttling');
          return (value as (...inner: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const { handler } = scheduler({ store: throwing });
    const event = sqsEvent('scheduler', messages([request(failing), request(passing), request(failing)]));
    const response = (await handler(event, lambdaContext('updraft-scheduler'))) as SQSBatchResponse;
    expect(response.batchItemFailures.map((failure) => failure.itemIdentifier).sort()).toEqual(['m1', 'm3']);
    expect(await takeWorkloads()).toEqual(['first']);
  });

  it('runs the periodic tick for the EventBridge scheduled event', async () => {
    const { handler, metrics } = scheduler();
    const result = (await handler(scheduledEvent(), lambdaContext('updraft-scheduler'))) as TickResult;
    expect(result).toEqual({ wrapped: true, runs: expect.objectContaining({ queued: expect.any(Number) }) });
    expect(metrics.total('scheduler.ticks')).toBe(1);
  });

  it('publishes every scheduler gauge the dashboard graphs on a tick, the runs of its page included', async () => {
    await newRun('gauged_run');
    const { handler, metrics } = scheduler();
    const result = (await handler(scheduledEvent(), lambdaContext('updraft-scheduler'))) as TickResult;
    const published = new Set(metrics.published.flatMap((document) => Object.keys(document as object)));
    expect(SCHEDULER_GAUGES.filter((gauge) => !published.has(gauge))).toEqual([]);
    expect(metrics.total('dag_runs.queued')).toBe(result.runs.queued);
    expect(metrics.total('dag_runs.running')).toBe(result.runs.running);
    expect(result.runs.queued + result.runs.running).toBeGreaterThan(0);
  });

  it('publishes how many triggers wait (the triggerer service scales on it), from 0', async () => {
    const before = scheduler();
    await before.handler(scheduledEvent(), lambdaContext('updraft-scheduler'));
    const ids = ['waiting_a', 'waiting_b'];
    for (const triggerId of ids) {
      await store.putTrigger({
        triggerId,
        name: 'updraft.DateTimeTrigger',
        kwargs: '{"moment":"2030-01-01T00:00:00.000Z"}',
        queue: 'default',
        ti: { dagId: 'pipeline', runId: 'r', taskId: triggerId, mapIndex: -1 },
        tryNumber: 1,
        deferralSeq: 1,
        createdAt: new Date().toISOString(),
        timeoutAt: null,
        jobId: null,
        claimedAt: null,
        revision: 0,
      });
    }
    const after = scheduler();
    await after.handler(scheduledEvent(), lambdaContext('updraft-scheduler'));
    for (const triggerId of ids) await store.deleteTrigger(triggerId);
    expect([before.metrics.total('triggers.waiting'), after.metrics.total('triggers.waiting')]).toEqual([
      0, 2,
    ]);
  });

  it('refuses events from other sources', async () => {
    const { handler } = scheduler();
    await expect(
      handler({ source: 'aws.s3', 'detail-type': 'Object Created' }, lambdaContext('s')),
    ).rejects.toThrow(UnrecognisedEventError);
    await expect(
      handler({ Records: [{ eventSource: 'aws:kinesis', kinesis: {} }] }, lambdaContext('s')),
    ).rejects.toThrow(UnrecognisedEventError);
  });
});
