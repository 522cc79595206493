import { Duration } from 'aws-cdk-lib';
import { Alarm, ComparisonOperator, type IAlarmAction, TreatMissingData } from 'aws-cdk-lib/aws-cloudwatch';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import { Queue, QueueEncryption, type QueueProps } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { queueUrlEnvVar } from '#aws/environment.ts';
import { QUEUE_NAMES, type QueueName } from '#queue/port.ts';

/** Queue properties a user may set per queue; the dead-letter queue belongs to the construct. */
export type UpdraftQueueOverrides = Omit<QueueProps, 'deadLetterQueue'>;

export interface UpdraftQueuesProps {
  /** Receives after which a message moves to its queue's dead-letter queue. */
  readonly maxReceiveCount: number;
  /**
   * Visibility timeout of each queue, above the timeout of the function that consumes it
   * (checked when the consumer is bound).
   */
  readonly visibilityTimeouts: Readonly<Record<QueueName, Duration>>;
  /** Merged over the secure defaults (SQS-managed encryption, TLS only), per queue. */
  readonly queueProps?: Partial<Record<QueueName, UpdraftQueueOverrides>>;
  /** How long a dead-lettered message is kept for inspection (default and most: 14 days). */
  readonly deadLetterRetention?: Duration;
  /** Where the dead-letter alarms notify (e.g. an SNS topic action); none: the alarm only shows. */
  readonly alarmActions?: readonly IAlarmAction[];
}

export interface QueueConsumerOptions {
  /** The consuming function's timeout: the queue's visibility timeout must exceed it. */
  readonly functionTimeout: Duration;
  readonly batchSize: number;
  readonly maxBatchingWindow?: Duration;
  /** Concurrent invocations this event source may run at once (SQS allows 2 to 1000). */
  readonly maxConcurrency: number;
}

export class QueueConfigurationError extends Error {
  override name = 'QueueConfigurationError';
}

/** One queue with its dead-letter queue and the alarm that says something landed there. */
export interface UpdraftQueue {
  readonly queue: Queue;
  readonly deadLetterQueue: Queue;
  readonly deadLetterAlarm: Alarm;
}

/**
 * The queues of a deployment, one per `QUEUE_NAMES` entry: task queues by priority class, the
 * callback queue and the scheduling-request queue. Each has its own dead-letter queue and an alarm
 * on it; access goes through `bindSender` and `bindConsumer`, which set the URL variable and the
 * grant together.
 */
export class UpdraftQueues extends Construct {
  readonly queues: Readonly<Record<QueueName, UpdraftQueue>>;

  constructor(scope: Construct, id: string, props: UpdraftQueuesProps) {
    super(scope, id);
    if (!Number.isInteger(props.maxReceiveCount) || props.maxReceiveCount < 1) {
      throw new QueueConfigurationError(
        `maxReceiveCount must be a positive integer, got ${props.maxReceiveCount}`,
      );
    }
    const queues: Partial<Record<QueueName, UpdraftQueue>> = {};
    for (const name of QUEUE_NAMES) queues[name] = this.#createQueue(name, props);
    this.queues = queues as Record<QueueName, UpdraftQueue>;
  }

  #createQueue(name: QueueName, props: UpdraftQueuesProps): UpdraftQueue {
    const id = queueConstructId(name);
    const secure = { encryption: QueueEncryption.SQS_MANAGED, enforceSSL: true } as const;
    const deadLetterQueue = new Queue(this, `${id}DeadLetter`, {
      ...secure,
      retentionPeriod: props.deadLetterRetention ?? Duration.days(14),
    });
    const queue = new Queue(this, id, {
      ...secure,
      visibilityTimeout: props.visibilityTimeouts[name],
      ...props.queueProps?.[name],
      deadLetterQueue: { queue: deadLetterQueue, maxReceiveCount: props.maxReceiveCount },
    });
    const deadLetterAlarm = new Alarm(this, `${id}DeadLetterAlarm`, {
      alarmDescription: `Messages of the ${name} queue were dead-lettered after ${props.maxReceiveCount} receives; inspect and redrive ${name}'s dead-letter queue`,
      metric: deadLetterQueue.metricApproximateNumberOfMessagesVisible({
        period: Duration.minutes(1),
        statistic: 'Maximum',
      }),
      threshold: 0,
      comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: TreatMissingData.NOT_BREACHING,
    });
    for (const action of props.alarmActions ?? []) deadLetterAlarm.addAlarmAction(action);
    return { queue, deadLetterQueue, deadLetterAlarm };
  }

  /** Lets `fn` send to the named queues and tells it their URLs. */
  bindSender(fn: IFunction & { addEnvironment(key: string, value: string): unknown }, ...names: QueueName[]) {
    for (const name of names) {
      const { queue } = this.queues[name];
      queue.grantSendMessages(fn);
      fn.addEnvironment(queueUrlEnvVar(name), queue.queueUrl);
    }
  }

  /**
   * Makes `fn` consume the named queue: an event source with partial batch responses and a
   * concurrency ceiling of its own, the consume grant (which includes changing a message's
   * visibility) and the URL. Refuses a queue whose visibility timeout does not exceed the
   * function's timeout, since a message would then be delivered again while its first delivery
   * still runs.
   */
  bindConsumer(
    fn: IFunction & { addEnvironment(key: string, value: string): unknown },
    name: QueueName,
    options: QueueConsumerOptions,
  ): SqsEventSource {
    const { queue } = this.queues[name];
    const visibility = queueVisibilitySeconds(queue);
    if (visibility <= options.functionTimeout.toSeconds()) {
      throw new QueueConfigurationError(
        `The ${name} queue's visibility timeout (${visibility} s) must exceed the timeout of ${fn.node.path} (${options.functionTimeout.toSeconds()} s), which consumes it`,
      );
    }
    const source = new SqsEventSource(queue, {
      batchSize: options.batchSize,
      maxConcurrency: options.maxConcurrency,
      reportBatchItemFailures: true,
      ...(options.maxBatchingWindow ? { maxBatchingWindow: options.maxBatchingWindow } : {}),
    });
    fn.addEventSource(source);
    fn.addEnvironment(queueUrlEnvVar(name), queue.queueUrl);
    return source;
  }
}

/** `tasks_high` → `TasksHigh`: construct ids stay stable and readable in the template. */
function queueConstructId(name: QueueName): string {
  return name
    .split('_')
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join('');
}

/** The visibility timeout set on the queue resource (SQS's default of 30 s when none is). */
function queueVisibilitySeconds(queue: Queue): number {
  const resource = queue.node.defaultChild as { visibilityTimeout?: number } | undefined;
  return resource?.visibilityTimeout ?? 30;
}
