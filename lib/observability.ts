import { Duration } from 'aws-cdk-lib';
import {
  Alarm,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  type IAlarmAction,
  type IMetric,
  Metric,
  TextWidget,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';
import { QUEUE_NAMES } from '#queue/port.ts';
import { METRICS_NAMESPACE, SERVICE_NAMES } from './functions.ts';
import type { UpdraftQueues } from './queues.ts';

/** Gauges the scheduler publishes as CloudWatch EMF (Airflow's names). */
export const SCHEDULER_GAUGES = [
  'scheduler.tasks.executable',
  'scheduler.tasks.starving',
  'dag_runs.queued',
  'dag_runs.running',
  'triggers.waiting',
] as const;
/** Counters the scheduler publishes as CloudWatch EMF. */
export const SCHEDULER_COUNTERS = [
  'scheduler.passes',
  'scheduler.zombies_killed',
  'scheduler.workloads_never_started',
] as const;

export interface UpdraftObservabilityProps {
  readonly queues: UpdraftQueues;
  readonly functions: Readonly<Record<string, IFunction>>;
  readonly triggererCapacity: IMetric;
  readonly alarmActions?: readonly IAlarmAction[];
  /** Minutes tasks must stay starving before the alarm fires (default 15): short starvation is normal under load. */
  readonly starvingMinutes?: number;
  /**
   * Period of the scheduler's tick (default one minute): the starving alarm reads the gauge over
   * periods of this length, so each period holds a tick's pass.
   */
  readonly tickInterval?: Duration;
}

/**
 * A metric the scheduler publishes as EMF: Powertools adds the `service` dimension, the
 * publishing function's service name.
 */
export function schedulerMetric(metricName: string, statistic: string, period = Duration.minutes(5)): Metric {
  return new Metric({
    namespace: METRICS_NAMESPACE,
    metricName,
    dimensionsMap: { service: SERVICE_NAMES.scheduler },
    statistic,
    period,
  });
}

/**
 * What an operator looks at: a dashboard of queue and dead-letter depths, function errors and
 * durations, and the scheduler's gauges; alarms on starving tasks and triggerer capacity (the
 * dead-letter alarms belong to the queues).
 */
export class UpdraftObservability extends Construct {
  readonly dashboard: Dashboard;
  readonly starvingAlarm: Alarm;
  readonly triggererCapacityAlarm: Alarm;

  constructor(scope: Construct, id: string, props: UpdraftObservabilityProps) {
    super(scope, id);
    const queues = QUEUE_NAMES.map((name) => ({ name, ...props.queues.queues[name] }));
    const functions = Object.entries(props.functions);

    const starvingMinutes = props.starvingMinutes ?? 15;
    const period = Duration.minutes(Math.max(1, props.tickInterval?.toMinutes() ?? 1));
    // Each scheduler invocation publishes the gauge for the runs it visited, so concurrent
    // invocations publish different values in one period: the Maximum is above 0 when any of
    // them saw a starving task, where the Minimum would be masked by one pass of another run.
    // A period without any pass is missing data, read as not starving: the alarm needs
    // `starvingMinutes` of consecutive periods in which a pass saw starving tasks.
    this.starvingAlarm = new Alarm(this, 'StarvingTasksAlarm', {
      alarmDescription: `Task instances have been ready but starving (pool or concurrency limits) for ${starvingMinutes} minutes`,
      metric: schedulerMetric('scheduler.tasks.starving', 'Maximum', period),
      threshold: 0,
      comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: Math.max(1, Math.ceil(starvingMinutes / period.toMinutes())),
      treatMissingData: TreatMissingData.NOT_BREACHING,
    });
    this.triggererCapacityAlarm = new Alarm(this, 'TriggererCapacityAlarm', {
      alarmDescription:
        'The triggerer has had no free trigger slot for 15 minutes: triggers are waiting for a slot in its one task',
      metric: props.triggererCapacity,
      threshold: 0,
      comparisonOperator: ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 3,
      // No triggerer task running publishes nothing; that is the idle state, not a problem.
      treatMissingData: TreatMissingData.NOT_BREACHING,
    });
    for (const alarm of [this.starvingAlarm, this.triggererCapacityAlarm]) {
      for (const action of props.alarmActions ?? []) alarm.addAlarmAction(action);
    }

    this.dashboard = new Dashboard(this, 'Dashboard', { defaultInterval: Duration.hours(3) });
    this.dashboard.addWidgets(
      new TextWidget({
        markdown:
          '# Updraft\nQueues, functions and scheduler gauges. Metrics under the `Updraft` namespace are published as CloudWatch EMF by the functions, with the dimension `service` naming the function (`updraft-scheduler` for the scheduler gauges).',
        width: 24,
        height: 2,
      }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({
        title: 'Queue depth (visible messages)',
        left: queues.map(({ name, queue }) =>
          queue.metricApproximateNumberOfMessagesVisible({ label: name, statistic: 'Maximum' }),
        ),
        width: 8,
      }),
      new GraphWidget({
        title: 'Oldest message age (s)',
        left: queues.map(({ name, queue }) =>
          queue.metricApproximateAgeOfOldestMessage({ label: name, statistic: 'Maximum' }),
        ),
        width: 8,
      }),
      new GraphWidget({
        title: 'Dead-letter queue depth',
        left: queues.map(({ name, deadLetterQueue }) =>
          deadLetterQueue.metricApproximateNumberOfMessagesVisible({ label: name, statistic: 'Maximum' }),
        ),
        width: 8,
      }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({
        title: 'Function errors',
        left: functions.map(([name, fn]) => fn.metricErrors({ label: name })),
        width: 8,
      }),
      new GraphWidget({
        title: 'Function duration p95 (ms)',
        left: functions.map(([name, fn]) => fn.metricDuration({ label: name, statistic: 'p95' })),
        width: 8,
      }),
      new GraphWidget({
        title: 'Function throttles',
        left: functions.map(([name, fn]) => fn.metricThrottles({ label: name })),
        width: 8,
      }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({
        title: 'Scheduler gauges',
        left: SCHEDULER_GAUGES.map((name) => schedulerMetric(name, 'Maximum', Duration.minutes(1))),
        width: 8,
      }),
      new GraphWidget({
        title: 'Scheduler counters',
        left: SCHEDULER_COUNTERS.map((name) => schedulerMetric(name, 'Sum', Duration.minutes(1))),
        width: 8,
      }),
      new GraphWidget({
        title: 'Triggerer capacity left',
        left: [props.triggererCapacity],
        width: 8,
      }),
    );
  }
}
