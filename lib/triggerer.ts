import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { AdjustmentType } from 'aws-cdk-lib/aws-applicationautoscaling';
import { Metric } from 'aws-cdk-lib/aws-cloudwatch';
import {
  FlowLogDestination,
  type IVpc,
  Peer,
  Port,
  SecurityGroup,
  SubnetType,
  Vpc,
} from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import {
  AwsLogDriver,
  Cluster,
  ContainerImage,
  ContainerInsights,
  CpuArchitecture,
  FargateService,
  FargateTaskDefinition,
  OperatingSystemFamily,
} from 'aws-cdk-lib/aws-ecs';
import { Role } from 'aws-cdk-lib/aws-iam';
import { FilterPattern, LogGroup, MetricFilter, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { UpdraftExecutionApi } from './execution-api.ts';
import { METRICS_NAMESPACE, SERVICE_NAMES, TRIGGERER_SERVICE_NAME } from './functions.ts';
import { acknowledge } from './nag.ts';
import { stageTriggererContext } from './triggerer-image.ts';

/** Gauge the triggerer scales on: triggers stored and waiting for an event. */
export const TRIGGERS_WAITING_METRIC = 'triggers.waiting';
/** Gauge of free trigger slots in the running triggerers (Airflow's triggerer.capacity_left). */
export const TRIGGERER_CAPACITY_METRIC = 'triggerer.capacity_left';
/**
 * The field of the triggerer's JSON log lines the capacity gauge is read from: a metric filter on
 * its log group turns it into the metric, so the task role needs no CloudWatch permission.
 */
export const TRIGGERER_CAPACITY_LOG_FIELD = 'triggererCapacityLeft';

export interface UpdraftTriggererProps {
  readonly projectRoot: string;
  readonly executionApi: UpdraftExecutionApi;
  /** The image; default: built from functions/triggerer/Dockerfile with the bundled entry. */
  readonly image?: ContainerImage;
  /** A VPC with public subnets; default: a new one with two public subnets and no NAT gateway. */
  readonly vpc?: IVpc;
  /**
   * Tasks at deploy, 0 or 1 (default 0: nothing runs, and nothing is billed, until a trigger
   * waits). The service runs at most one task.
   */
  readonly desiredCount?: number;
  /** Fargate CPU units (default 256 = 0.25 vCPU) and memory in MiB (default 512). */
  readonly cpu?: number;
  readonly memoryLimitMiB?: number;
  readonly logRetention: RetentionDays;
  /** Variables for the container: the deployment's settings, and the DAG code's own (dagEnvironment). */
  readonly environment?: Readonly<Record<string, string>>;
  /**
   * The scheduler tick's period, which publishes `triggers.waiting`: the scaling alarms use it as
   * theirs, so every period has a value (default one minute).
   */
  readonly tickInterval?: Duration;
}

/**
 * The triggerer: an ECS Fargate service running the triggerer container, with no access to the
 * table. Its task role may only invoke the Execution API's function URL, its security group only
 * opens outbound HTTPS, and it has no inbound port. It scales between zero and one task on the
 * `triggers.waiting` gauge: zero tasks while no trigger waits, one while any does. One task
 * holds every waiting trigger; more would need the triggers shared out among tasks, which the
 * triggerer does not do yet.
 */
export class TriggererConfigurationError extends Error {
  override name = 'TriggererConfigurationError';
}

export class UpdraftTriggerer extends Construct {
  readonly cluster: Cluster;
  readonly service: FargateService;
  readonly taskDefinition: FargateTaskDefinition;
  readonly securityGroup: SecurityGroup;
  readonly logGroup: LogGroup;
  readonly capacityMetric: Metric;

  constructor(scope: Construct, id: string, props: UpdraftTriggererProps) {
    super(scope, id);
    const desiredCount = props.desiredCount ?? 0;
    if (desiredCount !== 0 && desiredCount !== 1) {
      throw new TriggererConfigurationError(
        `triggerer.desiredCount is ${desiredCount}: it must be 0 or 1. The triggerer service runs at most one task (auto scaling keeps it between 0 and 1), since one task holds every waiting trigger.`,
      );
    }
    const vpc = props.vpc ?? this.#createVpc(props.logRetention);
    this.cluster = new Cluster(this, 'Cluster', { vpc, containerInsightsV2: ContainerInsights.ENABLED });
    this.taskDefinition = new FargateTaskDefinition(this, 'TaskDefinition', {
      cpu: props.cpu ?? 256,
      memoryLimitMiB: props.memoryLimitMiB ?? 512,
      runtimePlatform: {
        cpuArchitecture: CpuArchitecture.ARM64,
        operatingSystemFamily: OperatingSystemFamily.LINUX,
      },
    });
    this.logGroup = new LogGroup(this, 'Logs', {
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const image =
      props.image ??
      ContainerImage.fromAsset(stageTriggererContext(props.projectRoot), { platform: Platform.LINUX_ARM64 });
    const container = this.taskDefinition.addContainer('Triggerer', {
      image,
      logging: new AwsLogDriver({ logGroup: this.logGroup, streamPrefix: 'triggerer' }),
      environment: {
        ...props.environment,
        AWS_REGION: Stack.of(this).region,
        POWERTOOLS_SERVICE_NAME: TRIGGERER_SERVICE_NAME,
        POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
      },
      readonlyRootFilesystem: true,
    });
    const taskRole = this.taskDefinition.taskRole;
    if (!(taskRole instanceof Role))
      throw new TriggererConfigurationError('The task definition made no task role');
    props.executionApi.bindTriggerer({
      grantee: taskRole,
      addEnvironment: (name, value) => container.addEnvironment(name, value),
    });
    if (this.taskDefinition.executionRole) {
      acknowledge(this.taskDefinition.executionRole, [
        {
          id: 'AwsSolutions-IAM5[Resource::*]',
          reason:
            'The execution role (ECS pulling the image, not the triggerer) needs ecr:GetAuthorizationToken, which accepts no resource but "*"; its image pulls are limited to the image repository.',
        },
      ]);
    }
    acknowledge(this.taskDefinition, [
      {
        id: 'AwsSolutions-ECS2',
        reason:
          'The variables are resource names and URLs (the Execution API URL, the region), no secrets: the task reaches the API with its role, whose signed registration is its credential.',
      },
    ]);

    this.securityGroup = new SecurityGroup(this, 'SecurityGroup', {
      vpc,
      description:
        'Updraft triggerer: outbound HTTPS only (the Execution API, ECR, CloudWatch Logs), no inbound',
      allowAllOutbound: false,
    });
    this.securityGroup.addEgressRule(
      Peer.anyIpv4(),
      Port.tcp(443),
      'HTTPS to AWS endpoints and the Execution API',
    );
    const publicSubnets = props.vpc === undefined || vpc.privateSubnets.length === 0;
    this.service = new FargateService(this, 'Service', {
      cluster: this.cluster,
      taskDefinition: this.taskDefinition,
      desiredCount,
      securityGroups: [this.securityGroup],
      // Without a NAT gateway a task reaches AWS through a public IP; nothing can connect to it.
      assignPublicIp: publicSubnets,
      vpcSubnets: { subnetType: publicSubnets ? SubnetType.PUBLIC : SubnetType.PRIVATE_WITH_EGRESS },
      // Triggers are claimed with heartbeats over the API, so two triggerers overlapping during a
      // deploy share the work instead of doubling it.
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      circuitBreaker: { rollback: true },
    });

    const scaling = this.service.autoScaleTaskCount({ minCapacity: 0, maxCapacity: 1 });
    scaling.scaleOnMetric('ScaleOnWaitingTriggers', {
      metric: new Metric({
        namespace: METRICS_NAMESPACE,
        metricName: TRIGGERS_WAITING_METRIC,
        // The scheduler counts waiting triggers on its tick.
        dimensionsMap: { service: SERVICE_NAMES.scheduler },
        statistic: 'Maximum',
        period: Duration.minutes(Math.max(1, props.tickInterval?.toMinutes() ?? 1)),
      }),
      adjustmentType: AdjustmentType.EXACT_CAPACITY,
      scalingSteps: [
        { upper: 0, change: 0 },
        { lower: 1, change: 1 },
      ],
      cooldown: Duration.minutes(5),
    });

    new MetricFilter(this, 'CapacityFilter', {
      logGroup: this.logGroup,
      filterPattern: FilterPattern.numberValue(`$.${TRIGGERER_CAPACITY_LOG_FIELD}`, '>=', 0),
      metricNamespace: METRICS_NAMESPACE,
      metricName: TRIGGERER_CAPACITY_METRIC,
      metricValue: `$.${TRIGGERER_CAPACITY_LOG_FIELD}`,
    });
    this.capacityMetric = new Metric({
      namespace: METRICS_NAMESPACE,
      metricName: TRIGGERER_CAPACITY_METRIC,
      statistic: 'Minimum',
      period: Duration.minutes(5),
    });
  }

  /** Two public subnets and no NAT gateway: a task costs only itself, and has no inbound path. */
  #createVpc(logRetention: RetentionDays): Vpc {
    const vpc = new Vpc(this, 'Vpc', {
      maxAzs: 2,
      natGateways: 0,
      subnetConfiguration: [{ name: 'Public', subnetType: SubnetType.PUBLIC, cidrMask: 24 }],
    });
    const flowLogs = new LogGroup(this, 'FlowLogs', {
      retention: logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    vpc.addFlowLog('FlowLog', { destination: FlowLogDestination.toCloudWatchLogs(flowLogs) });
    return vpc;
  }
}
