import { Duration } from 'aws-cdk-lib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUE_NAMES } from '#queue/port.ts';
import { SCHEDULER_GAUGES } from '../../lib/observability.ts';
import {
  environmentOf,
  logicalIdOf,
  removeOutdirs,
  synthesizeTemplate,
  type TemplateOnly,
  testStackProps,
} from './helpers.ts';

afterAll(removeOutdirs);

describe('observability', () => {
  let synthesized: TemplateOnly;
  let functions: Record<string, string>;

  beforeAll(() => {
    synthesized = synthesizeTemplate(testStackProps());
    const { updraft } = synthesized.stack;
    functions = {
      'updraft-api': logicalIdOf(updraft.api.function),
      'updraft-execution-api': logicalIdOf(updraft.executionApi.function),
      'updraft-scheduler': logicalIdOf(updraft.scheduler.function),
      'updraft-worker': logicalIdOf(updraft.workers.function),
      'updraft-register-dags': logicalIdOf(updraft.dagRegistration.function),
    };
  });

  it('names each function for Powertools and publishes its metrics under the Updraft namespace', () => {
    for (const [service, fn] of Object.entries(functions)) {
      const environment = environmentOf(synthesized.template, fn);
      expect(environment.POWERTOOLS_SERVICE_NAME, fn).toBe(service);
      expect(environment.POWERTOOLS_METRICS_NAMESPACE, fn).toBe('Updraft');
    }
  });

  it('traces every function with X-Ray and runs it on Node.js 24, arm64, with JSON logs kept a month', () => {
    const resources = synthesized.template.findResources('AWS::Lambda::Function');
    const logGroups = synthesized.template.findResources('AWS::Logs::LogGroup');
    for (const fn of Object.values(functions)) {
      const properties = resources[fn]?.Properties;
      expect(properties.TracingConfig, fn).toEqual({ Mode: 'Active' });
      expect(properties.Runtime, fn).toBe('nodejs24.x');
      expect(properties.Architectures, fn).toEqual(['arm64']);
      expect(properties.LoggingConfig.LogFormat, fn).toBe('JSON');
      const logGroup = properties.LoggingConfig.LogGroup.Ref as string;
      expect(logGroups[logGroup]?.Properties.RetentionInDays, fn).toBe(30);
    }
  });

  it('alarms on starving tasks after 15 minutes of the scheduler gauge above zero', () => {
    synthesized.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'Updraft',
      MetricName: 'scheduler.tasks.starving',
      Dimensions: [{ Name: 'service', Value: 'updraft-scheduler' }],
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
      EvaluationPeriods: 15,
      Period: 60,
    });
  });

  it('reads the starving gauge by its Maximum, which a concurrent pass of a non-starving run cannot mask', () => {
    // Each scheduler invocation publishes the gauge for the runs it visited; the Minimum of a
    // minute would be 0 as soon as one pass of any other run published in it.
    synthesized.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'scheduler.tasks.starving',
      Statistic: 'Maximum',
    });
  });

  it('reads a minute without a scheduler pass as not starving', () => {
    synthesized.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'scheduler.tasks.starving',
      TreatMissingData: 'notBreaching',
    });
  });

  it('alarms when the triggerer has had no free capacity for 15 minutes, and not while none runs', () => {
    synthesized.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'Updraft',
      MetricName: 'triggerer.capacity_left',
      Threshold: 0,
      ComparisonOperator: 'LessThanOrEqualToThreshold',
      EvaluationPeriods: 3,
      Period: 300,
      TreatMissingData: 'notBreaching',
    });
  });

  it('has one dead-letter alarm per queue, a starving alarm and a triggerer capacity alarm (plus the scaling alarms)', () => {
    const alarms = Object.values(synthesized.template.findResources('AWS::CloudWatch::Alarm'));
    const deadLetter = alarms.filter(
      (alarm) => alarm.Properties.MetricName === 'ApproximateNumberOfMessagesVisible',
    );
    expect(deadLetter).toHaveLength(QUEUE_NAMES.length);
  });

  it('shows queue and dead-letter depths, function errors and durations, and the scheduler gauges on a dashboard', () => {
    const dashboards = Object.values(synthesized.template.findResources('AWS::CloudWatch::Dashboard'));
    expect(dashboards).toHaveLength(1);
    const body = JSON.stringify(dashboards[0]?.Properties.DashboardBody);
    for (const text of [
      'ApproximateNumberOfMessagesVisible',
      'ApproximateAgeOfOldestMessage',
      'Dead-letter queue depth',
      'Errors',
      'Duration',
      'Throttles',
      'triggerer.capacity_left',
      ...SCHEDULER_GAUGES,
    ]) {
      expect(body, text).toContain(text);
    }
  });
});

describe('observability with a slower tick', () => {
  it('reads the starving gauge over periods of the tick, so each period holds a pass', () => {
    const { template } = synthesizeTemplate(
      testStackProps({ scheduler: { tickInterval: Duration.minutes(5) } }),
    );
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'scheduler.tasks.starving',
      Period: 300,
      EvaluationPeriods: 3,
    });
  });
});
