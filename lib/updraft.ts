import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Duration } from 'aws-cdk-lib';
import type { ThrottleSettings } from 'aws-cdk-lib/aws-apigatewayv2';
import type { IAlarmAction } from 'aws-cdk-lib/aws-cloudwatch';
import type { IVpc } from 'aws-cdk-lib/aws-ec2';
import type { ContainerImage } from 'aws-cdk-lib/aws-ecs';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import type { NodejsFunctionProps } from 'aws-cdk-lib/aws-lambda-nodejs';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { SETTING_ENV_VARS, type Settings, settingsSchema } from '#config/settings.ts';
import { QUEUE_NAMES, type QueueName } from '#queue/port.ts';
import { UpdraftPublicApi } from './api.ts';
import { UpdraftDagRegistration } from './dag-registration.ts';
import { checkTaskTimeouts, type SerializedDagsFolder, serializeDagsFolder } from './dags.ts';
import { UpdraftExecutionApi } from './execution-api.ts';
import {
  DEFAULT_LOG_RETENTION,
  type FunctionCodeOverride,
  type FunctionDefaults,
  MAX_LAMBDA_TIMEOUT,
} from './functions.ts';
import { UpdraftLogBucket, type UpdraftLogBucketOverrides } from './log-bucket.ts';
import { UpdraftObservability } from './observability.ts';
import { type UpdraftQueueOverrides, UpdraftQueues } from './queues.ts';
import { UpdraftScheduler } from './scheduler.ts';
import { UpdraftTable, type UpdraftTableOverrides } from './store-table.ts';
import { UpdraftTimers } from './timers.ts';
import { UpdraftTriggerer } from './triggerer.ts';
import {
  checkWorkerBundlesDags,
  DEFAULT_WORKER_BATCH_SIZE,
  DEFAULT_WORKER_CONCURRENCY,
  UpdraftWorkers,
  WORKER_QUEUES,
  type WorkerQueueName,
} from './workers.ts';

/** Size and code options shared by the function settings below. */
export interface FunctionSettings {
  readonly timeout?: Duration;
  readonly memorySize?: number;
  /** Merged over the construct's defaults (e.g. `reservedConcurrentExecutions`, `environment`). */
  readonly functionProps?: Partial<NodejsFunctionProps>;
}

export interface UpdraftProps {
  /** The DAGs folder, relative to the working directory: serialized at synth, bundled into the worker. */
  readonly dagsDir: string;
  /** The Updraft project holding `functions/` and `package-lock.json` (default: this package). */
  readonly projectRoot?: string;
  /** Code for the functions in place of their esbuild bundles (tests, prebuilt handlers). */
  readonly functionCode?: FunctionCodeOverride;
  /**
   * Engine settings for every function (`UPDRAFT_*` variables, see docs/configuration.md),
   * validated at synth. The scheduler tick and the queue receive limit follow the props below,
   * and the retention follows `retention`. Unless set here, `queuedTimeoutMs` and
   * `executionTokenTtlSeconds` take the deployment's values (`deploymentSettingDefaults`).
   */
  readonly settings?: Partial<Settings>;
  /**
   * How long finished runs (table time to live) and task logs (bucket lifecycle) are kept
   * (default 90 days). `settings.retentionDays`, if set, must say the same.
   */
  readonly retention?: Duration;
  /** Retention of the functions', the API's and the triggerer's CloudWatch logs (default one month). */
  readonly logRetention?: RetentionDays;
  /** Where every alarm notifies (e.g. `new SnsAction(topic)`). */
  readonly alarmActions?: readonly IAlarmAction[];
  /** Time limit of importing the DAGs folder at synth (default two minutes). */
  readonly dagParseTimeout?: Duration;

  readonly store?: { readonly tableProps?: UpdraftTableOverrides };
  readonly queues?: {
    /** Receives before a message is dead-lettered (default: the queueMaxReceives setting, 5). */
    readonly maxReceiveCount?: number;
    readonly queueProps?: Partial<Record<QueueName, UpdraftQueueOverrides>>;
  };
  readonly scheduler?: FunctionSettings & {
    /** Period of the tick, whole minutes (default one minute). */
    readonly tickInterval?: Duration;
    /** Scheduling requests one invocation takes at most (default 100; 10 with a window under a second). */
    readonly batchSize?: number;
    /** How long the event source gathers requests before invoking with fewer (default one second; whole seconds, 0 to 300). */
    readonly maxBatchingWindow?: Duration;
    readonly maxConcurrency?: number;
  };
  readonly workers?: FunctionSettings & {
    readonly maxConcurrency?: Partial<Record<WorkerQueueName, number>>;
    /**
     * Workloads one invocation takes from a queue and runs side by side (default 10, at most 10):
     * 1 gives each task an execution environment and the whole function timeout to itself.
     */
    readonly batchSize?: number;
    /** A worker entry bundling `dagsDir`, when it is not the project's `dags/` (see UpdraftWorkersProps.entry). */
    readonly entry?: string;
  };
  /**
   * What the built-in notifiers (`snsNotifier`, `sesEmailNotifier`) may reach: the worker function
   * and the triggerer's task role (async callbacks run there) get `sns:Publish` on these topics
   * and `ses:SendEmail` on these identities, and nothing more.
   */
  readonly notifiers?: {
    readonly snsTopicArns?: readonly string[];
    readonly sesIdentityArns?: readonly string[];
  };
  /**
   * Environment variables the DAG code reads where it runs (a notifier's `urlFromEnv`, a callback's
   * endpoint): set on the worker function and on the triggerer container (async callbacks run
   * there). Engine settings go in `settings`; names starting with `UPDRAFT_` or `AWS_` are refused.
   */
  readonly dagEnvironment?: Readonly<Record<string, string>>;
  readonly api?: FunctionSettings & { readonly throttle?: ThrottleSettings };
  readonly executionApi?: FunctionSettings;
  readonly logs?: { readonly bucketProps?: UpdraftLogBucketOverrides; readonly serverAccessLogs?: boolean };
  readonly triggerer?: {
    readonly image?: ContainerImage;
    readonly vpc?: IVpc;
    /** 0 or 1: the service runs at most one task. */
    readonly desiredCount?: number;
    readonly cpu?: number;
    readonly memoryLimitMiB?: number;
  };
}

export class UpdraftConfigurationError extends Error {
  override name = 'UpdraftConfigurationError';
}

/**
 * How long a workload may wait in its task queue before the scheduler sends it again, unless
 * `settings.queuedTimeoutMs` says otherwise: SQS keeps a workload while every worker slot of its
 * queue is busy, each slot for up to a worker timeout, so a wait of twice that (and at least
 * 30 minutes) is a full backlog cycle, not a lost workload.
 */
export const MIN_DEPLOYED_QUEUED_TIMEOUT = Duration.minutes(30);
/**
 * The token lifetime over the queued timeout. The settings require the timeout below half the
 * lifetime (a workload's token, issued when it is queued, must outlive its wait before it is
 * sent again); at four times, half the lifetime is twice the timeout, which leaves as much again
 * for a late tick or a redelivery.
 */
const TOKEN_TTL_PER_QUEUED_TIMEOUT = 4;

const PACKAGE_ROOT = fileURLToPath(new URL('..', import.meta.url));
/** AWS's guidance for SQS event sources: a visibility timeout of six times the function's timeout. */
const VISIBILITY_PER_FUNCTION_TIMEOUT = 6;
const MAX_VISIBILITY = Duration.hours(12);

/**
 * Updraft on AWS: the store, queues, scheduler, APIs, workers, log bucket, triggerer, durable
 * timers, deploy-time DAG registration and observability, one construct each, wired with the
 * least access each needs. Drop it into any stack:
 *
 *     new Updraft(this, 'Orchestrator', { dagsDir: 'dags' });
 */
export class Updraft extends Construct {
  readonly store: UpdraftTable;
  readonly queues: UpdraftQueues;
  readonly logs: UpdraftLogBucket;
  readonly timers: UpdraftTimers;
  readonly executionApi: UpdraftExecutionApi;
  readonly api: UpdraftPublicApi;
  readonly scheduler: UpdraftScheduler;
  readonly workers: UpdraftWorkers;
  readonly triggerer: UpdraftTriggerer;
  readonly dagRegistration: UpdraftDagRegistration;
  readonly observability: UpdraftObservability;
  /** The DAGs as serialized at synth, registered at deploy. */
  readonly serializedDags: SerializedDagsFolder;

  constructor(scope: Construct, id: string, props: UpdraftProps) {
    super(scope, id);
    const projectRoot = props.projectRoot ?? PACKAGE_ROOT;
    const dagsDir = resolve(props.dagsDir);
    const logRetention = props.logRetention ?? DEFAULT_LOG_RETENTION;
    const retention = props.retention ?? Duration.days(90);
    const defaults: FunctionDefaults = {
      projectRoot,
      logRetention,
      ...(props.functionCode ? { functionCode: props.functionCode } : {}),
    };

    const schedulerTimeout = props.scheduler?.timeout ?? Duration.minutes(1);
    const workerTimeout = props.workers?.timeout ?? MAX_LAMBDA_TIMEOUT;
    const tickInterval = props.scheduler?.tickInterval ?? Duration.minutes(1);
    checkRetentionSetting(props.settings, retention);
    const settings = resolveSettings(props.settings, {
      defaults: deploymentSettingDefaults(props.settings, workerTimeout),
      forced: {
        schedulerTickMs: tickInterval.toMilliseconds(),
        ...(props.queues?.maxReceiveCount === undefined
          ? {}
          : { queueMaxReceives: props.queues.maxReceiveCount }),
      },
    });
    // The retention is given to the functions with the table only, by the table's binding.
    const { retentionDays: _retentionDays, ...shared } = settings.explicit;
    const environment = settingsEnvironment(shared);
    const dagEnvironment = checkDagEnvironment(props.dagEnvironment ?? {});

    checkWorkerBundlesDags({ ...defaults, dagsDir, entry: props.workers?.entry });
    this.serializedDags = serializeDagsFolder(dagsDir, {
      timeoutMs: (props.dagParseTimeout ?? Duration.minutes(2)).toMilliseconds(),
    });
    checkTaskTimeouts(
      this.serializedDags.dags.map(({ dag }) => dag),
      workerTimeout.toSeconds(),
      settings.resolved.callbackExecutionTimeoutMs,
    );

    this.store = new UpdraftTable(this, 'Store', { ...props.store, retention });
    this.queues = new UpdraftQueues(this, 'Queues', {
      maxReceiveCount: settings.resolved.queueMaxReceives,
      visibilityTimeouts: visibilityTimeouts({ scheduler: schedulerTimeout, worker: workerTimeout }),
      ...(props.queues?.queueProps ? { queueProps: props.queues.queueProps } : {}),
      ...(props.alarmActions ? { alarmActions: props.alarmActions } : {}),
    });
    this.logs = new UpdraftLogBucket(this, 'Logs', {
      retention,
      ...(props.logs?.bucketProps ? { bucketProps: props.logs.bucketProps } : {}),
      ...(props.logs?.serverAccessLogs === undefined
        ? {}
        : { serverAccessLogs: props.logs.serverAccessLogs }),
    });
    this.timers = new UpdraftTimers(this, 'Timers', { targetQueue: this.queues.queues.scheduler.queue });

    this.executionApi = new UpdraftExecutionApi(this, 'ExecutionApi', {
      defaults,
      timeout: props.executionApi?.timeout ?? Duration.seconds(30),
      memorySize: props.executionApi?.memorySize ?? 512,
      environment,
      ...(props.executionApi?.functionProps ? { functionProps: props.executionApi.functionProps } : {}),
    });
    this.store.bindReadWrite(this.executionApi.function);
    this.logs.bindWriter(this.executionApi.function);
    // Reports and trigger events that owe callbacks send their workloads before they answer.
    this.queues.bindSender(this.executionApi.function, 'scheduler', 'callbacks');

    this.api = new UpdraftPublicApi(this, 'Api', {
      defaults,
      timeout: props.api?.timeout ?? Duration.seconds(29),
      memorySize: props.api?.memorySize ?? 1024,
      accessLogRetention: logRetention,
      environment,
      ...(props.api?.throttle ? { throttle: props.api.throttle } : {}),
      ...(props.api?.functionProps ? { functionProps: props.api.functionProps } : {}),
    });
    this.store.bindReadWrite(this.api.function);
    this.logs.bindReader(this.api.function);
    this.queues.bindSender(this.api.function, 'scheduler');

    this.scheduler = new UpdraftScheduler(this, 'Scheduler', {
      defaults,
      queues: this.queues,
      timeout: schedulerTimeout,
      memorySize: props.scheduler?.memorySize ?? 512,
      tickInterval,
      ...(props.scheduler?.batchSize === undefined ? {} : { batchSize: props.scheduler.batchSize }),
      maxBatchingWindow: props.scheduler?.maxBatchingWindow ?? Duration.seconds(1),
      maxConcurrency: props.scheduler?.maxConcurrency ?? 5,
      environment,
      ...(props.scheduler?.functionProps ? { functionProps: props.scheduler.functionProps } : {}),
    });
    this.store.bindReadWrite(this.scheduler.function);
    this.queues.bindSender(this.scheduler.function, ...QUEUE_NAMES);
    this.timers.bindTimerSetter(this.scheduler.function);
    this.executionApi.bindKeyringReader(this.scheduler.function);

    this.workers = new UpdraftWorkers(this, 'Workers', {
      defaults,
      queues: this.queues,
      executionApi: this.executionApi,
      timeout: workerTimeout,
      memorySize: props.workers?.memorySize ?? 1024,
      maxConcurrency: { ...DEFAULT_WORKER_CONCURRENCY, ...props.workers?.maxConcurrency },
      batchSize: props.workers?.batchSize ?? DEFAULT_WORKER_BATCH_SIZE,
      dagsDir,
      environment: { ...environment, ...dagEnvironment },
      ...(props.workers?.entry === undefined ? {} : { entry: props.workers.entry }),
      ...(props.workers?.functionProps ? { functionProps: props.workers.functionProps } : {}),
    });
    this.triggerer = new UpdraftTriggerer(this, 'Triggerer', {
      projectRoot,
      executionApi: this.executionApi,
      logRetention,
      tickInterval,
      // The engine settings apply to the triggerer too (its callback capacity, its timings).
      environment: { ...environment, ...dagEnvironment },
      ...props.triggerer,
    });

    // Callbacks run on workers and (async ones) on the triggerer: both may reach the notifiers.
    const snsTopics = props.notifiers?.snsTopicArns ?? [];
    const sesIdentities = props.notifiers?.sesIdentityArns ?? [];
    const notifierGrants = [
      ...(snsTopics.length > 0
        ? [new PolicyStatement({ actions: ['sns:Publish'], resources: [...snsTopics] })]
        : []),
      ...(sesIdentities.length > 0
        ? [new PolicyStatement({ actions: ['ses:SendEmail'], resources: [...sesIdentities] })]
        : []),
    ];
    for (const statement of notifierGrants) {
      this.workers.function.addToRolePolicy(statement);
      this.triggerer.taskDefinition.addToTaskRolePolicy(statement);
    }

    this.dagRegistration = new UpdraftDagRegistration(this, 'DagRegistration', {
      defaults,
      store: this.store,
      serialized: this.serializedDags,
      logRetention,
      environment,
    });

    this.observability = new UpdraftObservability(this, 'Observability', {
      queues: this.queues,
      functions: {
        api: this.api.function,
        executionApi: this.executionApi.function,
        scheduler: this.scheduler.function,
        worker: this.workers.function,
      },
      triggererCapacity: this.triggerer.capacityMetric,
      tickInterval,
      ...(props.alarmActions ? { alarmActions: props.alarmActions } : {}),
    });
  }
}

/**
 * The deployment's own values of settings whose standalone defaults do not fit it, for those the
 * user leaves unset. A workload waits in its SQS queue while every worker slot of the queue is
 * busy; standalone's queued timeout (two minutes, five sends) would fail it as never started
 * behind a backlog of long tasks. The token lifetime follows the queued timeout, which the
 * settings require to stay below half of it.
 */
export function deploymentSettingDefaults(
  user: Partial<Settings> | undefined,
  workerTimeout: Duration,
): Partial<Settings> {
  const queuedTimeoutMs =
    user?.queuedTimeoutMs ??
    Math.max(MIN_DEPLOYED_QUEUED_TIMEOUT.toMilliseconds(), 2 * workerTimeout.toMilliseconds());
  const standaloneTokenTtl = settingsSchema.parse({}).executionTokenTtlSeconds;
  return {
    queuedTimeoutMs,
    executionTokenTtlSeconds: Math.max(
      standaloneTokenTtl,
      Math.ceil((TOKEN_TTL_PER_QUEUED_TIMEOUT * Number(queuedTimeoutMs)) / 1000),
    ),
  };
}

/**
 * The deployment's defaults, then the user's settings, then what the deployment sets itself
 * (tick period, receive limit), validated with the engine's schema so a bad combination fails the
 * synth rather than the first invocation.
 */
function resolveSettings(
  user: Partial<Settings> | undefined,
  deployment: { defaults: Partial<Settings>; forced: Partial<Settings> },
): { explicit: Partial<Settings>; resolved: Settings } {
  const explicit: Partial<Settings> = { ...deployment.defaults, ...user, ...deployment.forced };
  const parsed = settingsSchema.safeParse(explicit);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new UpdraftConfigurationError(`Invalid Updraft settings: ${problems.join('; ')}`);
  }
  return { explicit, resolved: parsed.data };
}

/**
 * On a deployment the `retention` prop is the one retention: the table's time to live and the
 * log bucket's lifecycle both follow it. A `settings.retentionDays` that says otherwise is
 * refused rather than silently replaced.
 */
function checkRetentionSetting(user: Partial<Settings> | undefined, retention: Duration): void {
  const setting = user?.retentionDays;
  if (setting === undefined) return;
  const days = retention.toDays({ integral: false });
  if (Number(setting) === days) return;
  const instead =
    Number(setting) > 0
      ? `Set retention: Duration.days(${setting}) instead, or leave settings.retentionDays out.`
      : 'A deployment always expires runs and logs (0, keeping them for good, is for standalone): leave settings.retentionDays out.';
  throw new UpdraftConfigurationError(
    `settings.retentionDays (${SETTING_ENV_VARS.retentionDays}) is ${setting}, but the retention prop is ${days} days: on a deployment the retention prop sets both the table's time to live and the log bucket's lifecycle. ${instead}`,
  );
}

/** Standalone-only settings have no meaning in a Lambda function and are refused rather than ignored. */
const STANDALONE_ONLY: readonly (keyof Settings)[] = [
  'home',
  'host',
  'port',
  'apiUrl',
  'dagsFolder',
  'workerSlots',
];

function checkDagEnvironment(variables: Readonly<Record<string, string>>): Record<string, string> {
  for (const name of Object.keys(variables)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new UpdraftConfigurationError(`dagEnvironment: ${JSON.stringify(name)} is not a variable name`);
    }
    if (name.startsWith('UPDRAFT_') || name.startsWith('AWS_')) {
      throw new UpdraftConfigurationError(
        `dagEnvironment: ${name} is refused (UPDRAFT_ settings go in 'settings'; AWS_ variables belong to the runtime)`,
      );
    }
  }
  return { ...variables };
}

function settingsEnvironment(settings: Partial<Settings>): Record<string, string> {
  const environment: Record<string, string> = {};
  for (const [key, value] of Object.entries(settings) as [keyof Settings, unknown][]) {
    if (value === undefined) continue;
    if (STANDALONE_ONLY.includes(key)) {
      throw new UpdraftConfigurationError(
        `The setting ${key} (${SETTING_ENV_VARS[key]}) is for standalone mode only and cannot be set on a deployment`,
      );
    }
    environment[SETTING_ENV_VARS[key]] = typeof value === 'object' ? JSON.stringify(value) : String(value);
  }
  return environment;
}

/**
 * Each queue's visibility timeout: six times its consumer's timeout (AWS's guidance, so a
 * message stays hidden through the event source's retries of a throttled invocation), at most
 * SQS's twelve hours. Workers consume the callback and task queues, the scheduler its own.
 */
function visibilityTimeouts(consumers: {
  scheduler: Duration;
  worker: Duration;
}): Record<QueueName, Duration> {
  const of = (timeout: Duration) =>
    Duration.seconds(
      Math.min(MAX_VISIBILITY.toSeconds(), timeout.toSeconds() * VISIBILITY_PER_FUNCTION_TIMEOUT),
    );
  const timeouts = {} as Record<QueueName, Duration>;
  for (const name of QUEUE_NAMES) {
    timeouts[name] = of(
      (WORKER_QUEUES as readonly string[]).includes(name) ? consumers.worker : consumers.scheduler,
    );
  }
  return timeouts;
}
