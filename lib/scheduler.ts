import { Duration } from 'aws-cdk-lib';
import { Rule, Schedule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import type { NodejsFunction, NodejsFunctionProps } from 'aws-cdk-lib/aws-lambda-nodejs';
import { Construct } from 'constructs';
import { createUpdraftFunction, type FunctionDefaults } from './functions.ts';
import type { UpdraftQueues } from './queues.ts';

export interface UpdraftSchedulerProps {
  readonly defaults: FunctionDefaults;
  readonly queues: UpdraftQueues;
  readonly timeout: Duration;
  readonly memorySize: number;
  /** Period of the tick: due runs, reconciliation, deadlines (EventBridge allows one minute or more). */
  readonly tickInterval: Duration;
  /**
   * Scheduling requests handled by one invocation at most (1–10 without a batching window of a
   * second or more, 1–10,000 with one; default 100 with such a window, else 10).
   */
  readonly batchSize?: number;
  /** How long the event source gathers requests before invoking with fewer than a full batch. */
  readonly maxBatchingWindow: Duration;
  /** Scheduler invocations running at once for scheduling requests (2–1000). */
  readonly maxConcurrency: number;
  readonly functionProps?: Partial<NodejsFunctionProps>;
  readonly environment?: Record<string, string>;
}

export class SchedulerConfigurationError extends Error {
  override name = 'SchedulerConfigurationError';
}

/** SQS event source limits (AWS Lambda): batch sizes without a batching window of 1 s or more and with one, and the longest window. */
const MAX_BATCH_WITHOUT_WINDOW = 10;
const MAX_BATCH_WITH_WINDOW = 10_000;
const MAX_BATCHING_WINDOW_SECONDS = 300;
/**
 * The default batch with a window, as standalone's UPDRAFT_SCHEDULER_BATCH_SIZE: under load one
 * invocation serves each run once for up to 100 requests; the window, not the size, bounds how
 * long a request waits.
 */
const DEFAULT_BATCH_WITH_WINDOW = 100;

/**
 * The scheduler: one Lambda function invoked two ways. An EventBridge rule sends the periodic
 * tick (new runs due by their schedules, timeouts, zombies, deadlines), and the scheduling-request
 * queue brings event-driven passes after each task state change, so downstream tasks start
 * without waiting for a tick.
 */
export class UpdraftScheduler extends Construct {
  readonly function: NodejsFunction;
  readonly tickRule: Rule;

  constructor(scope: Construct, id: string, props: UpdraftSchedulerProps) {
    super(scope, id);
    const windowSeconds = props.maxBatchingWindow.toMilliseconds() / 1000;
    if (
      !Number.isInteger(windowSeconds) ||
      windowSeconds < 0 ||
      windowSeconds > MAX_BATCHING_WINDOW_SECONDS
    ) {
      throw new SchedulerConfigurationError(
        `scheduler.maxBatchingWindow ${props.maxBatchingWindow.toHumanString()} is not a whole number of seconds from 0 to ${MAX_BATCHING_WINDOW_SECONDS} (what an SQS event source takes)`,
      );
    }
    const windowed = windowSeconds >= 1;
    const largest = windowed ? MAX_BATCH_WITH_WINDOW : MAX_BATCH_WITHOUT_WINDOW;
    const batchSize = props.batchSize ?? (windowed ? DEFAULT_BATCH_WITH_WINDOW : MAX_BATCH_WITHOUT_WINDOW);
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > largest) {
      throw new SchedulerConfigurationError(
        `scheduler.batchSize ${JSON.stringify(batchSize)} is not a whole number from 1 to ${largest} (an SQS event source delivers at most ${MAX_BATCH_WITHOUT_WINDOW} messages an invocation without a batching window of at least one second, and ${MAX_BATCH_WITH_WINDOW} with one; scheduler.maxBatchingWindow is ${windowSeconds} s)`,
      );
    }
    if (props.tickInterval.toSeconds() < 60 || props.tickInterval.toSeconds() % 60 !== 0) {
      throw new SchedulerConfigurationError(
        `The scheduler tick must be a whole number of minutes (EventBridge rates start at one minute), got ${props.tickInterval.toHumanString()}`,
      );
    }
    this.function = createUpdraftFunction(this, 'Function', props.defaults, {
      name: 'scheduler',
      description: 'Updraft scheduler: the periodic tick and the event-driven scheduling passes',
      timeout: props.timeout,
      memorySize: props.memorySize,
      ...(props.environment ? { environment: props.environment } : {}),
      ...(props.functionProps ? { overrides: props.functionProps } : {}),
    });
    this.tickRule = new Rule(this, 'Tick', {
      description: 'Updraft scheduler tick',
      schedule: Schedule.rate(props.tickInterval),
      targets: [
        // A missed tick is made up by the next one: no retries beyond the next period.
        new LambdaFunction(this.function, { retryAttempts: 2, maxEventAge: Duration.minutes(1) }),
      ],
    });
    props.queues.bindConsumer(this.function, 'scheduler', {
      functionTimeout: props.timeout,
      batchSize,
      maxBatchingWindow: props.maxBatchingWindow,
      maxConcurrency: props.maxConcurrency,
    });
  }
}
