import { afterEach, describe, expect, it } from 'vitest';
import { AwsEnvironmentError } from '#aws/environment.ts';
import { type AwsDefaults, awsDefaultsLoaded, LazyDeps } from '#aws/handler-deps.ts';
import { settingsSchema } from '#config/settings.ts';
import { createInMemoryQueues } from '#queue/memory.ts';
import { makeHandler as makeSchedulerHandler } from '../../functions/scheduler.ts';
import { makeHandler as makeWorkerHandler } from '../../functions/worker.ts';
import {
  type LambdaHandler,
  lambdaContext,
  QueueWakeTimers,
  quietObservability,
  scheduledEvent,
  sqsEvent,
} from '../support/lambda-events.ts';

/**
 * The deployed defaults: each AWS-backed dep is made on first use from the variable of its
 * resource, and a function whose construct did not bind that resource fails naming the variable.
 * No AWS call is made here: every failure happens before one.
 */

const EXECUTION: AwsDefaults = {
  executionApiUrl: () => import('#aws/handler-defaults-execution.ts'),
  executionFetch: () => import('#aws/handler-defaults-execution.ts'),
};

const SET_HERE = ['UPDRAFT_QUEUE_URL_SCHEDULER', 'UPDRAFT_EXECUTION_API_URL'];

afterEach(() => {
  for (const name of SET_HERE) delete process.env[name];
});

describe('the AWS defaults of the handlers', () => {
  it('are loaded only when a handler needs a dep it was not given', async () => {
    const deps = new LazyDeps({ settings: settingsSchema.parse({}) }, quietObservability(), EXECUTION);
    await deps.get('settings');
    await deps.get('clock');
    expect(awsDefaultsLoaded()).toBe(false);
    await deps.get('executionApiUrl').catch(() => undefined);
    expect(awsDefaultsLoaded()).toBe(true);
  });

  it('refuse a dep that is not among the resources of the function', async () => {
    const deps = new LazyDeps({}, quietObservability(), EXECUTION);
    await expect(deps.get('store')).rejects.toThrow('This function has no default for store');
  });

  it('fail the scheduler on its first event when the table is not bound, naming the variable', async () => {
    const settings = settingsSchema.parse({});
    const { queues } = createInMemoryQueues(settings);
    // Everything but the table, so the one default it builds is the store's.
    const handler = makeSchedulerHandler({
      ...quietObservability(),
      settings,
      queues,
      timers: new QueueWakeTimers(queues.scheduler),
      executionKeys: async () => ({ k1: 'defaults-test-secret-0123456789abcdef' }),
    }) as unknown as LambdaHandler<unknown, unknown>;
    const attempt = handler(scheduledEvent(), lambdaContext('updraft-scheduler'));
    await expect(attempt).rejects.toThrow(AwsEnvironmentError);
    await expect(attempt).rejects.toThrow('UPDRAFT_TABLE_NAME is not set');
  });

  it('fail the worker when the Execution API URL is not set, and succeed once it is', async () => {
    const deps = new LazyDeps({ settings: settingsSchema.parse({}) }, quietObservability(), EXECUTION);
    await expect(deps.get('executionApiUrl')).rejects.toThrow('UPDRAFT_EXECUTION_API_URL is not set');
    process.env.UPDRAFT_EXECUTION_API_URL = 'https://abc.lambda-url.us-east-1.on.aws';
    // A failed default is not kept: the next invocation builds it again.
    expect(await deps.get('executionApiUrl')).toBe('https://abc.lambda-url.us-east-1.on.aws');
    const worker = makeWorkerHandler({
      ...quietObservability(),
      settings: settingsSchema.parse({}),
    }) as unknown as LambdaHandler<unknown, unknown>;
    delete process.env.UPDRAFT_EXECUTION_API_URL;
    await expect(worker(sqsEvent('tasks_default', []), lambdaContext('updraft-worker'))).rejects.toThrow(
      'UPDRAFT_EXECUTION_API_URL is not set',
    );
  });

  it('bind only the queues of the function: another queue names its variable on use', async () => {
    process.env.UPDRAFT_QUEUE_URL_SCHEDULER =
      'https://sqs.us-east-1.amazonaws.com/123456789012/updraft-scheduler';
    const deps = new LazyDeps({ settings: settingsSchema.parse({}) }, quietObservability(), {
      queues: () => import('#aws/handler-defaults-queues.ts'),
    });
    const queues = await deps.get('queues');
    expect(queues.scheduler.name).toBe('scheduler');
    await expect(queues.tasks_default.send([{ body: '{}' }])).rejects.toThrow(
      'UPDRAFT_QUEUE_URL_TASKS_DEFAULT is not set',
    );
  });
});
