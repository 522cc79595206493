import { Logger as PowertoolsLogger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import type { LogLevel as PowertoolsLogLevel } from '@aws-lambda-powertools/logger/types';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy, { type MiddyfiedHandler } from '@middy/core';
import type { Context } from 'aws-lambda';
import type { Logger } from '#engine/logger.ts';
import { MetricsRegistry } from '#metrics/registry.ts';

/** The CloudWatch namespace of every Updraft metric (the dashboard and alarms read it). */
export const METRICS_NAMESPACE = 'Updraft';

/** Powertools' logger, metrics (CloudWatch EMF) and tracer (X-Ray) of one function. */
export interface Observability {
  logger: PowertoolsLogger;
  metrics: Metrics;
  tracer: Tracer;
}

/**
 * The function's Powertools utilities: the ones given (tests pass a silent logger, a metrics
 * object that writes to a buffer), the others made for `service`. The log level follows
 * `UPDRAFT_LOG_LEVEL` as in standalone, else Powertools' own variables.
 */
export function createObservability(
  service: string,
  given: Partial<Observability> = {},
  env: NodeJS.ProcessEnv = process.env,
): Observability {
  const level = env.UPDRAFT_LOG_LEVEL?.toUpperCase() as PowertoolsLogLevel | undefined;
  return {
    logger:
      given.logger ?? new PowertoolsLogger({ serviceName: service, ...(level ? { logLevel: level } : {}) }),
    metrics: given.metrics ?? new Metrics({ namespace: METRICS_NAMESPACE, serviceName: service }),
    tracer: given.tracer ?? new Tracer({ serviceName: service }),
  };
}

/**
 * The one place the middlewares are put together, outermost first as Powertools documents:
 * the tracer's segment spans the whole invocation, the logger carries the request id, and the
 * metrics gathered during the invocation are flushed as one EMF line when it ends.
 */
export function withObservability<TEvent, TResult>(
  handler: (event: TEvent, context: Context, options: { signal: AbortSignal }) => Promise<TResult>,
  observability: Observability,
  options: { timeoutEarlyInMillis?: number } = {},
): MiddyfiedHandler<TEvent, TResult> {
  return middy<TEvent, TResult>(handler, {
    // The handlers that need an early stop arm their own (the worker hands tries back); a
    // cut-off answer from middy would skip the reports they still have to send.
    timeoutEarlyInMillis: options.timeoutEarlyInMillis ?? 0,
  })
    .use(captureLambdaHandler(observability.tracer, { captureResponse: false }))
    .use(injectLambdaContext(observability.logger, { resetKeys: true }))
    .use(logMetrics(observability.metrics, { captureColdStartMetric: true }));
}

/** The engine's logger over Powertools' one; a child adds its fields to every line it writes. */
export function engineLoggerOf(logger: PowertoolsLogger, fields: Record<string, unknown> = {}): Logger {
  // Children are not Powertools children: those would not carry the request id that the
  // middleware adds to this logger at each invocation.
  const extra = (more: Record<string, unknown> | undefined) => ({ ...fields, ...more });
  return {
    debug: (message, more) => logger.debug(message, extra(more)),
    info: (message, more) => logger.info(message, extra(more)),
    warn: (message, more) => logger.warn(message, extra(more)),
    error: (message, more) => logger.error(message, extra(more)),
    child: (more) => engineLoggerOf(logger, extra(more)),
  };
}

/**
 * The engine's metrics published as CloudWatch EMF by Powertools at the end of each invocation:
 * counters as `Count` sums, gauges as `Count` samples (CloudWatch's Maximum or Average reads
 * them). It is also a registry, since the API serves a snapshot and the worker takes one; on
 * Lambda that snapshot only covers this instance, CloudWatch has the totals.
 */
export class EmfMetricsRegistry extends MetricsRegistry {
  readonly #metrics: Metrics;

  constructor(metrics: Metrics) {
    super();
    this.#metrics = metrics;
  }

  override increment(name: string, by = 1): void {
    super.increment(name, by);
    this.#metrics.addMetric(name, MetricUnit.Count, by);
  }

  override gauge(name: string, value: number): void {
    super.gauge(name, value);
    this.#metrics.addMetric(name, MetricUnit.Count, value);
  }
}

/** The logger an AWS SDK client takes (`@smithy/types`' `Logger`). */
export interface SdkClientLogger {
  trace(...content: unknown[]): void;
  debug(...content: unknown[]): void;
  info(...content: unknown[]): void;
  warn(...content: unknown[]): void;
  error(...content: unknown[]): void;
}

/**
 * The logger given to every AWS SDK client the functions make: the SDK's own warnings and errors
 * (sockets at capacity, a request past its timeout) go to the function's log as warnings, and its
 * line per request (`info`, with the command's input and output) is dropped, as the SDK's default
 * does. Given explicitly because the SDK tells its default apart by its class name, which a
 * minified bundle does not keep: left to the default, a bundled client's HTTP handler would lose
 * those warnings.
 */
export function sdkClientLogger(logger: PowertoolsLogger): SdkClientLogger {
  const text = (content: unknown[]) =>
    content.map((part) => (typeof part === 'string' ? part : JSON.stringify(part))).join(' ');
  return {
    trace: () => {},
    debug: () => {},
    info: () => {},
    warn: (...content) => logger.warn('AWS SDK warning', { sdk: text(content) }),
    error: (...content) => logger.warn('AWS SDK error', { sdk: text(content) }),
  };
}
