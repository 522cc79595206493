import { Duration } from 'aws-cdk-lib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SchedulerConfigurationError } from '../../lib/scheduler.ts';
import { WORKER_QUEUES } from '../../lib/workers.ts';
import {
  logicalIdOf,
  removeOutdirs,
  synthesizeTemplate,
  type TemplateOnly,
  testStackProps,
} from './helpers.ts';

afterAll(removeOutdirs);

interface MappingProperties {
  EventSourceArn: { 'Fn::GetAtt': [string, string] };
  FunctionName: { Ref: string };
  BatchSize?: number;
  MaximumBatchingWindowInSeconds?: number;
  FunctionResponseTypes?: string[];
  ScalingConfig?: { MaximumConcurrency?: number };
}

function mappingsOf(synthesized: TemplateOnly): MappingProperties[] {
  return Object.values(synthesized.template.findResources('AWS::Lambda::EventSourceMapping')).map(
    (mapping) => mapping.Properties as MappingProperties,
  );
}

describe('event source mappings', () => {
  let synthesized: TemplateOnly;
  let mappings: MappingProperties[];
  let queueIdOf: (name: (typeof WORKER_QUEUES)[number] | 'scheduler') => string;

  beforeAll(() => {
    synthesized = synthesizeTemplate(testStackProps());
    mappings = mappingsOf(synthesized);
    queueIdOf = (name) => logicalIdOf(synthesized.stack.updraft.queues.queues[name].queue);
  });

  const mappingOf = (queueId: string) => {
    const found = mappings.filter((mapping) => mapping.EventSourceArn['Fn::GetAtt'][0] === queueId);
    expect(found).toHaveLength(1);
    return found[0]!;
  };

  it('reports partial batch failures on every mapping', () => {
    expect(mappings).toHaveLength(5);
    for (const mapping of mappings)
      expect(mapping.FunctionResponseTypes).toEqual(['ReportBatchItemFailures']);
  });

  it('caps the concurrency of every mapping, at least at the SQS minimum of 2', () => {
    for (const mapping of mappings)
      expect(mapping.ScalingConfig?.MaximumConcurrency).toBeGreaterThanOrEqual(2);
  });

  it('feeds the worker from the callback queue and the three task queues, up to 10 workloads an invocation, gathered for no time', () => {
    const worker = logicalIdOf(synthesized.stack.updraft.workers.function);
    for (const name of WORKER_QUEUES) {
      const mapping = mappingOf(queueIdOf(name));
      expect(mapping.FunctionName).toEqual({ Ref: worker });
      expect(mapping.BatchSize, name).toBe(10);
      expect(mapping.MaximumBatchingWindowInSeconds, name).toBeUndefined();
    }
  });

  it('gives each worker queue a concurrency ceiling of its own', () => {
    const ceilings = Object.fromEntries(
      WORKER_QUEUES.map((name) => [name, mappingOf(queueIdOf(name)).ScalingConfig?.MaximumConcurrency]),
    );
    expect(ceilings).toEqual({ callbacks: 5, tasks_high: 10, tasks_default: 10, tasks_low: 2 });
  });

  it('feeds the scheduler batches of up to 100 requests gathered for up to a second, five invocations at most', () => {
    const mapping = mappingOf(queueIdOf('scheduler'));
    expect(mapping.FunctionName).toEqual({ Ref: logicalIdOf(synthesized.stack.updraft.scheduler.function) });
    expect(mapping.BatchSize).toBe(100);
    expect(mapping.MaximumBatchingWindowInSeconds).toBe(1);
    expect(mapping.ScalingConfig?.MaximumConcurrency).toBe(5);
  });

  it('ticks the scheduler every minute from an EventBridge rule', () => {
    synthesized.template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(1 minute)',
      State: 'ENABLED',
      Targets: [
        {
          Arn: { 'Fn::GetAtt': [logicalIdOf(synthesized.stack.updraft.scheduler.function), 'Arn'] },
          RetryPolicy: { MaximumRetryAttempts: 2, MaximumEventAgeInSeconds: 60 },
        },
      ],
    });
    const scheduler =
      synthesized.template.findResources('AWS::Lambda::Function')[
        logicalIdOf(synthesized.stack.updraft.scheduler.function)
      ];
    expect(scheduler?.Properties.Environment.Variables.UPDRAFT_SCHEDULER_TICK_MS).toBe('60000');
  });

  it('gives the worker the longest Lambda timeout and the scheduler one minute', () => {
    const functions = synthesized.template.findResources('AWS::Lambda::Function');
    expect(functions[logicalIdOf(synthesized.stack.updraft.workers.function)]?.Properties.Timeout).toBe(900);
    expect(functions[logicalIdOf(synthesized.stack.updraft.scheduler.function)]?.Properties.Timeout).toBe(60);
  });
});

describe('event source options', () => {
  it('takes concurrency ceilings per worker queue and for the scheduler', () => {
    const synthesized = synthesizeTemplate(
      testStackProps({ workers: { maxConcurrency: { tasks_low: 4 } }, scheduler: { maxConcurrency: 3 } }),
    );
    const byQueue = new Map(
      mappingsOf(synthesized).map((mapping) => [
        mapping.EventSourceArn['Fn::GetAtt'][0],
        mapping.ScalingConfig?.MaximumConcurrency,
      ]),
    );
    const { queues } = synthesized.stack.updraft.queues;
    expect(byQueue.get(logicalIdOf(queues.tasks_low.queue))).toBe(4);
    expect(byQueue.get(logicalIdOf(queues.tasks_high.queue))).toBe(10);
    expect(byQueue.get(logicalIdOf(queues.scheduler.queue))).toBe(3);
  });

  it('takes a worker batch size, 1 giving each workload an invocation of its own', () => {
    const synthesized = synthesizeTemplate(testStackProps({ workers: { batchSize: 1 } }));
    const { queues } = synthesized.stack.updraft.queues;
    const sizes = new Map(
      mappingsOf(synthesized).map((mapping) => [mapping.EventSourceArn['Fn::GetAtt'][0], mapping.BatchSize]),
    );
    for (const name of WORKER_QUEUES) expect(sizes.get(logicalIdOf(queues[name].queue)), name).toBe(1);
    expect(sizes.get(logicalIdOf(queues.scheduler.queue))).toBe(100);
  });

  it('feeds the scheduler batches of up to 10 without a batching window, as SQS allows', () => {
    const synthesized = synthesizeTemplate(
      testStackProps({ scheduler: { maxBatchingWindow: Duration.seconds(0) } }),
    );
    const mapping = mappingsOf(synthesized).find(
      (each) =>
        each.EventSourceArn['Fn::GetAtt'][0] ===
        logicalIdOf(synthesized.stack.updraft.queues.queues.scheduler.queue),
    );
    expect(mapping?.BatchSize).toBe(10);
  });

  it.each([
    [100, 0],
    [11, 0],
    [10_001, 1],
    [0, 1],
    [2.5, 1],
  ])(
    'refuses a scheduler batch size of %s with a %s s window, naming the setting and its range',
    (batchSize, window) => {
      expect(() =>
        synthesizeTemplate(
          testStackProps({ scheduler: { batchSize, maxBatchingWindow: Duration.seconds(window) } }),
        ),
      ).toThrow(
        new RegExp(
          `scheduler\\.batchSize ${batchSize} is not a whole number from 1 to ${window >= 1 ? 10_000 : 10}`,
        ),
      );
    },
  );

  it.each([
    [Duration.millis(500), '500 millis'],
    [Duration.millis(1500), '1 second 500 millis'],
    [Duration.seconds(301), '5 minutes 1 second'],
  ])('refuses a scheduler batching window of %s, naming the setting and its range', (window, shown) => {
    expect(() => synthesizeTemplate(testStackProps({ scheduler: { maxBatchingWindow: window } }))).toThrow(
      `scheduler.maxBatchingWindow ${shown} is not a whole number of seconds from 0 to 300`,
    );
  });

  it('takes a scheduler batch size just under the limits', () => {
    for (const [batchSize, window] of [
      [10, 0],
      [10_000, 1],
    ] as const) {
      const synthesized = synthesizeTemplate(
        testStackProps({ scheduler: { batchSize, maxBatchingWindow: Duration.seconds(window) } }),
      );
      const { scheduler } = synthesized.stack.updraft.queues.queues;
      const mapping = mappingsOf(synthesized).find(
        (each) => each.EventSourceArn['Fn::GetAtt'][0] === logicalIdOf(scheduler.queue),
      );
      expect(mapping?.BatchSize).toBe(batchSize);
    }
  });

  it.each([0, 11, 2.5])(
    'refuses a worker batch size of %s, naming the setting and its range',
    (batchSize) => {
      expect(() => synthesizeTemplate(testStackProps({ workers: { batchSize } }))).toThrow(
        new RegExp(`workers\\.batchSize ${batchSize} is not a whole number from 1 to 10`),
      );
    },
  );

  it('refuses a tick that is not a whole number of minutes', () => {
    expect(() =>
      synthesizeTemplate(testStackProps({ scheduler: { tickInterval: Duration.seconds(90) } })),
    ).toThrow(SchedulerConfigurationError);
  });
});
