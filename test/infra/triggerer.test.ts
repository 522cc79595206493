import { Duration } from 'aws-cdk-lib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TRIGGERER_CAPACITY_LOG_FIELD, TriggererConfigurationError } from '../../lib/triggerer.ts';
import {
  environmentOf,
  logicalIdOf,
  removeOutdirs,
  synthesizeTemplate,
  type TemplateOnly,
  testStackProps,
} from './helpers.ts';

afterAll(removeOutdirs);

describe('UpdraftTriggerer', () => {
  let synthesized: TemplateOnly;

  beforeAll(() => {
    synthesized = synthesizeTemplate(testStackProps());
  });

  it('runs no task until a trigger waits: desired count 0', () => {
    synthesized.template.hasResourceProperties('AWS::ECS::Service', {
      LaunchType: 'FARGATE',
      DesiredCount: 0,
      DeploymentConfiguration: {
        MinimumHealthyPercent: 100,
        MaximumPercent: 200,
        DeploymentCircuitBreaker: { Enable: true, Rollback: true },
      },
    });
  });

  it('runs a quarter vCPU arm64 task with a read-only root file system and logs to CloudWatch', () => {
    synthesized.template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      Cpu: '256',
      Memory: '512',
      RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
      ContainerDefinitions: [
        {
          ReadonlyRootFilesystem: true,
          LogConfiguration: { LogDriver: 'awslogs' },
        },
      ],
    });
  });

  it('tells the container the Execution API URL and its region', () => {
    const url = logicalIdOf(synthesized.stack.updraft.executionApi.url);
    const definition = Object.values(synthesized.template.findResources('AWS::ECS::TaskDefinition'))[0];
    const environment = definition?.Properties.ContainerDefinitions[0].Environment as {
      Name: string;
      Value: unknown;
    }[];
    const byName = Object.fromEntries(environment.map(({ Name, Value }) => [Name, Value]));
    expect(byName.UPDRAFT_EXECUTION_API_URL).toEqual({ 'Fn::GetAtt': [url, 'FunctionUrl'] });
    expect(byName.AWS_REGION).toEqual({ Ref: 'AWS::Region' });
    // No stored credential: its signed registration is one (below).
    expect(byName.UPDRAFT_TRIGGERER_TOKEN).toBeUndefined();
  });

  it("gives the Execution API function the task role's id: a registration signed by that role is the triggerer's credential", () => {
    const executionApi = synthesized.stack.updraft.executionApi.function;
    const role = synthesized.stack.updraft.triggerer.taskDefinition.taskRole;
    expect(environmentOf(synthesized.template, logicalIdOf(executionApi)).UPDRAFT_TRIGGERER_ROLE_ID).toEqual({
      'Fn::GetAtt': [logicalIdOf(role), 'RoleId'],
    });
  });

  it('places tasks in public subnets with a public IP and no NAT gateway, so an idle VPC costs nothing', () => {
    synthesized.template.hasResourceProperties('AWS::ECS::Service', {
      NetworkConfiguration: { AwsvpcConfiguration: { AssignPublicIp: 'ENABLED' } },
    });
    synthesized.template.resourceCountIs('AWS::EC2::NatGateway', 0);
    synthesized.template.resourceCountIs('AWS::EC2::FlowLog', 1);
  });

  it('scales between 0 and 1 tasks on the triggers.waiting gauge', () => {
    synthesized.template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      MinCapacity: 0,
      MaxCapacity: 1,
      ScalableDimension: 'ecs:service:DesiredCount',
    });
    synthesized.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'Updraft',
      MetricName: 'triggers.waiting',
      Dimensions: [{ Name: 'service', Value: 'updraft-scheduler' }],
    });
    const policies = Object.values(
      synthesized.template.findResources('AWS::ApplicationAutoScaling::ScalingPolicy'),
    );
    const adjustments = policies.map((policy) => policy.Properties.StepScalingPolicyConfiguration);
    expect(adjustments.map((configuration) => configuration.AdjustmentType)).toEqual([
      'ExactCapacity',
      'ExactCapacity',
    ]);
    const capacities = adjustments.flatMap((configuration) =>
      configuration.StepAdjustments.map((step: { ScalingAdjustment: number }) => step.ScalingAdjustment),
    );
    expect(capacities.sort()).toEqual([0, 1]);
  });

  it("scales on the gauge at the tick's period, so no period lacks the value (one minute by default)", () => {
    const periodsOf = (template: TemplateOnly['template']) =>
      Object.values(template.findResources('AWS::CloudWatch::Alarm'))
        .filter((alarm) => alarm.Properties.MetricName === 'triggers.waiting')
        .map((alarm) => alarm.Properties.Period);
    const slow = synthesizeTemplate(testStackProps({ scheduler: { tickInterval: Duration.minutes(5) } }));
    expect([periodsOf(synthesized.template), periodsOf(slow.template)]).toEqual([
      [60, 60],
      [300, 300],
    ]);
  });

  it('reads the capacity gauge from the triggerer log with a metric filter, not a CloudWatch permission', () => {
    synthesized.template.hasResourceProperties('AWS::Logs::MetricFilter', {
      FilterPattern: `{ $.${TRIGGERER_CAPACITY_LOG_FIELD} >= 0 }`,
      MetricTransformations: [
        {
          MetricNamespace: 'Updraft',
          MetricName: 'triggerer.capacity_left',
          MetricValue: `$.${TRIGGERER_CAPACITY_LOG_FIELD}`,
        },
      ],
    });
  });

  it('takes the desired count from its props, and still scales to one task at most', () => {
    const { template } = synthesizeTemplate(testStackProps({ triggerer: { desiredCount: 1 } }));
    template.hasResourceProperties('AWS::ECS::Service', { DesiredCount: 1 });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      MinCapacity: 0,
      MaxCapacity: 1,
    });
  });

  it('refuses a desired count above 1, which auto scaling would cut back to one task', () => {
    expect(() => synthesizeTemplate(testStackProps({ triggerer: { desiredCount: 2 } }))).toThrow(
      TriggererConfigurationError,
    );
    expect(() => synthesizeTemplate(testStackProps({ triggerer: { desiredCount: 2 } }))).toThrow(
      /triggerer\.desiredCount is 2: it must be 0 or 1/,
    );
  });
});
