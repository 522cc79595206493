import { Duration } from 'aws-cdk-lib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUE_NAMES } from '#queue/port.ts';
import { QueueConfigurationError } from '../../lib/queues.ts';
import {
  logicalIdOf,
  removeOutdirs,
  synthesizeTemplate,
  type TemplateOnly,
  testStackProps,
} from './helpers.ts';

afterAll(removeOutdirs);

interface QueueResource {
  Properties: {
    VisibilityTimeout?: number;
    SqsManagedSseEnabled?: boolean;
    RedrivePolicy?: { deadLetterTargetArn: { 'Fn::GetAtt': [string, string] }; maxReceiveCount: number };
  };
}

describe('UpdraftQueues', () => {
  let synthesized: TemplateOnly;
  let queues: Record<string, QueueResource>;

  beforeAll(() => {
    synthesized = synthesizeTemplate(testStackProps());
    queues = synthesized.template.findResources('AWS::SQS::Queue') as Record<string, QueueResource>;
  });

  const queueIdOf = (name: (typeof QUEUE_NAMES)[number]) =>
    logicalIdOf(synthesized.stack.updraft.queues.queues[name].queue);
  const deadLetterIdOf = (name: (typeof QUEUE_NAMES)[number]) =>
    logicalIdOf(synthesized.stack.updraft.queues.queues[name].deadLetterQueue);

  it('creates one queue per queue name and one dead-letter queue for each', () => {
    expect(Object.keys(queues)).toHaveLength(QUEUE_NAMES.length * 2);
    const deadLetterIds = new Set(QUEUE_NAMES.map(deadLetterIdOf));
    expect(deadLetterIds.size).toBe(QUEUE_NAMES.length);
  });

  it.each(QUEUE_NAMES)('sends %s messages to their own dead-letter queue after 5 receives', (name) => {
    expect(queues[queueIdOf(name)]?.Properties.RedrivePolicy).toEqual({
      deadLetterTargetArn: { 'Fn::GetAtt': [deadLetterIdOf(name), 'Arn'] },
      maxReceiveCount: 5,
    });
  });

  it('encrypts every queue and dead-letter queue with SQS-managed keys', () => {
    for (const [id, queue] of Object.entries(queues)) {
      expect(queue.Properties.SqsManagedSseEnabled, id).toBe(true);
    }
  });

  it('denies every request to every queue that does not use TLS', () => {
    const policies = Object.values(synthesized.template.findResources('AWS::SQS::QueuePolicy'));
    const denied = policies.flatMap((policy) => {
      const statements = policy.Properties.PolicyDocument.Statement as {
        Effect: string;
        Condition?: { Bool?: Record<string, string> };
      }[];
      const deniesPlainText = statements.some(
        (statement) =>
          statement.Effect === 'Deny' && statement.Condition?.Bool?.['aws:SecureTransport'] === 'false',
      );
      return deniesPlainText ? (policy.Properties.Queues as { Ref: string }[]).map((queue) => queue.Ref) : [];
    });
    expect(denied.sort()).toEqual(Object.keys(queues).sort());
  });

  it.each(QUEUE_NAMES)('alarms as soon as a %s message is dead-lettered', (name) => {
    synthesized.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [deadLetterIdOf(name), 'QueueName'] } }],
      Statistic: 'Maximum',
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
      TreatMissingData: 'notBreaching',
    });
  });

  it('gives every queue exactly one consumer, whose timeout is below the queue visibility timeout', () => {
    const functions = synthesized.template.findResources('AWS::Lambda::Function');
    const mappings = Object.values(synthesized.template.findResources('AWS::Lambda::EventSourceMapping'));
    const consumed = mappings.map((mapping) => {
      const queueId = (mapping.Properties.EventSourceArn as { 'Fn::GetAtt': [string, string] })[
        'Fn::GetAtt'
      ][0];
      const functionId = (mapping.Properties.FunctionName as { Ref: string }).Ref;
      const visibility = queues[queueId]?.Properties.VisibilityTimeout;
      const timeout = functions[functionId]?.Properties.Timeout as number;
      expect(visibility, `${queueId} visibility vs ${functionId} timeout`).toBeGreaterThan(timeout);
      return queueId;
    });
    expect(consumed.sort()).toEqual(QUEUE_NAMES.map(queueIdOf).sort());
  });

  it('sets each visibility timeout to six times the consumer timeout (AWS guidance for SQS event sources)', () => {
    for (const name of ['callbacks', 'tasks_high', 'tasks_default', 'tasks_low'] as const) {
      expect(queues[queueIdOf(name)]?.Properties.VisibilityTimeout, name).toBe(6 * 900);
    }
    expect(queues[queueIdOf('scheduler')]?.Properties.VisibilityTimeout).toBe(6 * 60);
  });
});

describe('UpdraftQueues options', () => {
  it('dead-letters after the receive count given, and tells the functions', () => {
    const { template, stack } = synthesizeTemplate(testStackProps({ queues: { maxReceiveCount: 3 } }));
    const queue =
      template.findResources('AWS::SQS::Queue')[logicalIdOf(stack.updraft.queues.queues.tasks_low.queue)];
    expect(queue?.Properties.RedrivePolicy.maxReceiveCount).toBe(3);
    const scheduler =
      template.findResources('AWS::Lambda::Function')[logicalIdOf(stack.updraft.scheduler.function)];
    expect(scheduler?.Properties.Environment.Variables.UPDRAFT_QUEUE_MAX_RECEIVES).toBe('3');
  });

  it('refuses a visibility timeout that does not exceed the consuming function timeout, naming the queue', () => {
    const attempt = () =>
      synthesizeTemplate(
        testStackProps({
          queues: { queueProps: { tasks_high: { visibilityTimeout: Duration.minutes(15) } } },
        }),
      );
    expect(attempt).toThrow(QueueConfigurationError);
    expect(attempt).toThrow(
      /tasks_high queue's visibility timeout \(900 s\) must exceed the timeout .* \(900 s\)/,
    );
  });
});
