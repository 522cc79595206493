import { join } from 'node:path';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { Architecture, type Code, LoggingFormat, Runtime, Tracing } from 'aws-cdk-lib/aws-lambda';
import {
  type ICommandHooks,
  NodejsFunction,
  type NodejsFunctionProps,
  OutputFormat,
} from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import type { BuildOptions } from 'esbuild';
import { aliasEsbuildArgs, bundleAliases, ESM_REQUIRE_BANNER } from './bundling.ts';
import { acknowledge } from './nag.ts';

/** The Lambda functions of a deployment and their entry files, relative to the project root. */
export const FUNCTION_ENTRIES = {
  api: 'functions/api.ts',
  executionApi: 'functions/execution-api.ts',
  scheduler: 'functions/scheduler.ts',
  worker: 'functions/worker.ts',
  registerDags: 'functions/register-dags.ts',
} as const;

export type UpdraftFunctionName = keyof typeof FUNCTION_ENTRIES;

/** The functions serving the router of `src/api` (bundled with `ZOD_WITHOUT_LOCALES_ALIAS`). */
export const API_FUNCTIONS: ReadonlySet<UpdraftFunctionName> = new Set(['api', 'executionApi']);

/**
 * The functions that use the table and bundle the AWS SDK (see `functionBundling`); the others
 * leave it to the Lambda runtime.
 */
export const SDK_BUNDLING_FUNCTIONS: ReadonlySet<UpdraftFunctionName> = new Set([
  'api',
  'executionApi',
  'scheduler',
  'registerDags',
]);

/**
 * The AWS SDK packages the functions of `SDK_BUNDLING_FUNCTIONS` leave to the runtime: the S3
 * client (the log bucket), imported on the first log call only (`src/aws/s3-log-store.ts`), and
 * the largest client: bundled, it would take the API functions over 1 MiB.
 */
export const RUNTIME_SDK_MODULES: readonly string[] = ['@aws-sdk/client-s3'];

/** How a function's bundle is built: what it leaves to the runtime, its aliases, and names. */
export interface FunctionBundling {
  readonly externalModules: readonly string[];
  readonly aliases: Readonly<Record<string, string>>;
  /**
   * Whether function and class names survive minification: in the worker, which bundles the DAG
   * code, a callback is resolved by its name, checked against the name the DAG was serialized
   * with (from the sources, at synth). The other functions look no name up, and their stack traces
   * are mapped by the source map; keeping names would add about 60 KiB to the API bundles. (The
   * AWS SDK tells its default logger apart by its class name: every client the functions make is
   * given a logger of its own, `sdkClientLogger`.)
   */
  readonly keepNames: boolean;
}

/**
 * The functions that use the table bundle the SDK, but for `RUNTIME_SDK_MODULES`, with the
 * environment-first credential provider (`LAMBDA_CREDENTIALS_ALIAS`): the runtime's SDK is
 * CommonJS spread over about a hundred files, and importing the DynamoDB client from it costs
 * 50–100 ms of a cold start, about twice as much as the same code minified into the bundle. The
 * worker leaves the whole SDK to the runtime: it signs its own Execution API calls, and imports
 * an SDK client only on first use (the SNS and SES notifiers of `src/sdk/notifiers.ts`).
 */
export function functionBundling(name: UpdraftFunctionName): FunctionBundling {
  const withoutZodLocales = API_FUNCTIONS.has(name);
  const keepNames = name === 'worker';
  if (!SDK_BUNDLING_FUNCTIONS.has(name)) {
    return { externalModules: ['@aws-sdk/*'], aliases: bundleAliases({ withoutZodLocales }), keepNames };
  }
  return {
    externalModules: RUNTIME_SDK_MODULES,
    aliases: bundleAliases({ withoutZodLocales, lambdaCredentials: true }),
    keepNames,
  };
}

/**
 * A function's bundle as esbuild options: what `bundledFunction` asks of `NodejsFunction`, for
 * the builds made without the CDK (the benchmark's, the tests'). The caller adds the entry, the
 * output and its own logging.
 */
export function functionBuildOptions(name: UpdraftFunctionName): BuildOptions {
  const plan = functionBundling(name);
  return {
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    minify: true,
    keepNames: plan.keepNames,
    sourcemap: true,
    sourcesContent: false,
    mainFields: ['module', 'main'],
    external: [...plan.externalModules],
    banner: { js: ESM_REQUIRE_BANNER },
    alias: { ...plan.aliases },
  };
}

/**
 * Code for a function in place of the esbuild bundle of its entry: for tests and for users who
 * build their handlers elsewhere. The code must export `handler` from `index` (`index.handler`).
 */
export type FunctionCodeOverride = (name: UpdraftFunctionName) => Code;

/** What every function shares: where the sources are, how they are built, how long logs stay. */
export interface FunctionDefaults {
  /** The project holding `functions/` and `package-lock.json`. */
  readonly projectRoot: string;
  readonly functionCode?: FunctionCodeOverride;
  readonly logRetention: RetentionDays;
}

/**
 * Powertools' service name of each function: the `service` dimension of the metrics it publishes
 * and a field of every log line. The handlers name themselves the same way.
 */
export const SERVICE_NAMES: Readonly<Record<UpdraftFunctionName, string>> = {
  api: 'updraft-api',
  executionApi: 'updraft-execution-api',
  scheduler: 'updraft-scheduler',
  worker: 'updraft-worker',
  registerDags: 'updraft-register-dags',
};
/** The triggerer container's service name. */
export const TRIGGERER_SERVICE_NAME = 'updraft-triggerer';
/** The CloudWatch namespace of every Updraft metric. */
export const METRICS_NAMESPACE = 'Updraft';

export interface UpdraftFunctionOptions {
  readonly name: UpdraftFunctionName;
  readonly description: string;
  readonly timeout: Duration;
  readonly memorySize: number;
  readonly environment?: Record<string, string>;
  /** The entry file to bundle, in place of the function's own under `functions/`. */
  readonly entry?: string;
  /** Commands run after esbuild, given the bundle's output directory (e.g. adding a data file). */
  readonly afterBundling?: (outputDir: string) => string[];
  /**
   * Merged over the defaults; a user's props win except for the description, timeout (set with
   * `timeout`), code, entry and handler. `bundling` is merged one level down: an `esbuildArgs` or
   * `externalModules` given here replaces the aliases and externals of `functionBundling`.
   */
  readonly overrides?: Partial<NodejsFunctionProps>;
}

/**
 * One Updraft function with the secure, observable defaults: Node.js 24 on arm64, X-Ray tracing,
 * JSON logs into a log group with a retention, Powertools environment, and an esbuild bundle
 * (ESM, minified, source maps; the AWS SDK bundled or left to the runtime as `functionBundling`
 * says).
 */
export function createUpdraftFunction(
  scope: Construct,
  id: string,
  defaults: FunctionDefaults,
  options: UpdraftFunctionOptions,
): NodejsFunction {
  const logGroup = new LogGroup(scope, `${id}Logs`, {
    retention: defaults.logRetention,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  const props: NodejsFunctionProps = {
    runtime: Runtime.NODEJS_24_X,
    architecture: Architecture.ARM_64,
    tracing: Tracing.ACTIVE,
    loggingFormat: LoggingFormat.JSON,
    logGroup,
    ...options.overrides,
    description: options.description,
    timeout: options.timeout,
    memorySize: options.overrides?.memorySize ?? options.memorySize,
    environment: {
      POWERTOOLS_SERVICE_NAME: SERVICE_NAMES[options.name],
      POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
      NODE_OPTIONS: '--enable-source-maps',
      ...options.environment,
      ...options.overrides?.environment,
    },
  };
  const override = defaults.functionCode?.(options.name);
  const fn = override
    ? new NodejsFunction(scope, id, { ...props, code: override, handler: 'index.handler' })
    : bundledFunction(scope, id, defaults, options, props);
  acknowledge(fn, [
    {
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
      reason:
        "Lambda's managed basic execution policy only lets the function write its own CloudWatch logs; it is what every Lambda function needs.",
    },
    {
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'X-Ray tracing: xray:PutTraceSegments and xray:PutTelemetryRecords accept no resource but "*". The infra tests check that no other action is granted on "*".',
    },
  ]);
  return fn;
}

function bundledFunction(
  scope: Construct,
  id: string,
  defaults: FunctionDefaults,
  options: UpdraftFunctionOptions,
  props: NodejsFunctionProps,
): NodejsFunction {
  const afterBundling = options.afterBundling;
  const plan = functionBundling(options.name);
  const commandHooks: ICommandHooks = {
    beforeBundling: () => [],
    beforeInstall: () => [],
    afterBundling: (_inputDir, outputDir) => afterBundling?.(outputDir) ?? [],
  };
  return new NodejsFunction(scope, id, {
    ...props,
    entry: options.entry ?? join(defaults.projectRoot, FUNCTION_ENTRIES[options.name]),
    handler: 'handler',
    projectRoot: defaults.projectRoot,
    depsLockFilePath: join(defaults.projectRoot, 'package-lock.json'),
    bundling: {
      format: OutputFormat.ESM,
      target: 'node24',
      minify: true,
      keepNames: plan.keepNames,
      sourceMap: true,
      sourcesContent: false,
      mainFields: ['module', 'main'],
      externalModules: [...plan.externalModules],
      banner: ESM_REQUIRE_BANNER,
      esbuildArgs: aliasEsbuildArgs(plan.aliases),
      commandHooks,
      ...options.overrides?.bundling,
    },
  });
}

/** A shell word for a path or argument in a bundling command. */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

export const DEFAULT_LOG_RETENTION = RetentionDays.ONE_MONTH;
export const MAX_LAMBDA_TIMEOUT = Duration.minutes(15);
