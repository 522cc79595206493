import { formatDuration } from '#core/duration.ts';
import { DagValidationError } from './errors.ts';
import { BaseOperator, type OperatorContext } from './operator.ts';
import type { TaskOptions } from './options.ts';
import { fail } from './signals.ts';
import type { BaseTrigger, TriggerEvent, TriggerRunContext } from './triggers/base.ts';
import { type HttpCondition, HttpPollTrigger, parseHttpPollKwargs } from './triggers/http.ts';
import { DateTimeTrigger } from './triggers/temporal.ts';
import { epochMsOf, millisecondsOf } from './triggers/validation.ts';

/**
 * Sensors: operators that wait for something. Deferrable (the default), they hand the wait to a
 * triggerer (`return ctx.defer(...)`) and hold no worker slot meanwhile, resuming in
 * `executeComplete`. Not deferrable, they run the same trigger in the worker, sleeping between
 * pokes while holding the slot, and stop as soon as the try's signal aborts.
 */

interface SensorOptions {
  /** Wait on a triggerer (default true) rather than in the worker. */
  deferrable?: boolean;
}

const SENSOR_TIMED_OUT = Symbol('sensor timed out');
/** setTimeout fires at once beyond this (about 24.8 days): longer sleeps go in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

abstract class DeferrableSensor<O extends object> extends BaseOperator<O & SensorOptions> {
  get deferrable(): boolean {
    return this.options.deferrable ?? true;
  }

  /** What the task returns once the wait is over: the trigger event's payload becomes the XCom, or not. */
  abstract executeComplete(ctx: OperatorContext, event: unknown): Promise<unknown>;

  /** Waits until a moment; when it has passed already, succeeds without deferring. */
  protected async waitUntilMoment(ctx: OperatorContext, momentMs: number): Promise<unknown> {
    const moment = new Date(momentMs);
    if (Date.now() >= momentMs) {
      ctx.log.info(`${moment.toISOString()} has passed already`);
      return null;
    }
    return this.waitFor(ctx, new DateTimeTrigger({ moment }), null);
  }

  /** Defers on `trigger`, or runs it here when the sensor is not deferrable. */
  protected async waitFor(
    ctx: OperatorContext,
    trigger: BaseTrigger<object>,
    timeoutMs: number | null,
  ): Promise<unknown> {
    if (this.deferrable) return ctx.defer({ trigger, method: 'executeComplete', timeout: timeoutMs });
    const event = await runInWorker(trigger, ctx, timeoutMs);
    if (event === SENSOR_TIMED_OUT) {
      return fail(`${this.constructor.name} timed out after ${formatDuration(timeoutMs ?? 0)}`);
    }
    switch (event.type ?? 'resume') {
      case 'resume':
        return this.executeComplete(ctx, event.payload);
      case 'success':
        return event.payload;
      case 'failure':
        return fail(String(event.payload));
    }
  }
}

/**
 * Runs a trigger in the worker until its first event. Sleeps are timers that stop when the try's
 * signal aborts; the sensor's timeout is checked whenever the trigger sleeps.
 */
async function runInWorker(
  trigger: BaseTrigger<object>,
  ctx: OperatorContext,
  timeoutMs: number | null,
): Promise<TriggerEvent | typeof SENSOR_TIMED_OUT> {
  const deadline = timeoutMs === null ? Number.POSITIVE_INFINITY : Date.now() + timeoutMs;
  const runContext: TriggerRunContext = {
    log: ctx.log,
    signal: ctx.signal,
    now: () => Date.now(),
    async sleepUntil(atMs) {
      await sleepUntil(Math.min(atMs, deadline), ctx.signal);
      if (Date.now() >= deadline) throw SENSOR_TIMED_OUT;
    },
  };
  try {
    // Leaving the loop closes the generator, as a triggerer does once the first event is in.
    for await (const event of trigger.run(runContext)) return event;
    throw new Error(`${trigger.constructor.name} ended without an event`);
  } catch (error) {
    if (error === SENSOR_TIMED_OUT) return SENSOR_TIMED_OUT;
    throw error;
  } finally {
    await trigger.cleanup();
  }
}

function sleepUntil(atMs: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const arm = () => {
      const left = atMs - Date.now();
      if (left <= 0) {
        signal.removeEventListener('abort', onAbort);
        resolve();
        return;
      }
      timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    arm();
  });
}

function invalid(sensor: string, options: { id?: unknown }, error: unknown): DagValidationError {
  return new DagValidationError(`${sensor} '${String(options?.id)}': ${(error as Error).message}`, {
    cause: error,
  });
}

export interface TimeDeltaSensorOptions extends SensorOptions {
  /** Milliseconds or a duration such as '30s', '5m', '1h' after the run's data interval. */
  delta: number | string;
}

/**
 * Airflow's TimeDeltaSensor: waits until `delta` after the end of the run's data interval (its
 * logical date when the run has no interval), so a retry or a rerun waits for the same moment.
 */
export class TimeDeltaSensor extends DeferrableSensor<TimeDeltaSensorOptions> {
  readonly deltaMs: number;

  constructor(options: TaskOptions & TimeDeltaSensorOptions) {
    super(options);
    try {
      this.deltaMs = millisecondsOf(options.delta, 'delta');
    } catch (error) {
      throw invalid('TimeDeltaSensor', options, error);
    }
  }

  async execute(ctx: OperatorContext): Promise<unknown> {
    const base = Date.parse(ctx.dataIntervalEnd ?? ctx.logicalDate);
    return this.waitUntilMoment(ctx, base + this.deltaMs);
  }

  async executeComplete(): Promise<null> {
    return null;
  }
}

export interface DateTimeSensorOptions extends SensorOptions {
  /** A Date or an ISO-8601 string. */
  targetTime: Date | string;
}

/** Airflow's DateTimeSensor: waits until `targetTime`. */
export class DateTimeSensor extends DeferrableSensor<DateTimeSensorOptions> {
  readonly targetMs: number;

  constructor(options: TaskOptions & DateTimeSensorOptions) {
    super(options);
    try {
      this.targetMs = epochMsOf(options.targetTime, 'targetTime');
    } catch (error) {
      throw invalid('DateTimeSensor', options, error);
    }
  }

  async execute(ctx: OperatorContext): Promise<unknown> {
    return this.waitUntilMoment(ctx, this.targetMs);
  }

  async executeComplete(): Promise<null> {
    return null;
  }
}

export interface HttpSensorOptions extends SensorOptions {
  url: string;
  method?: 'GET' | 'HEAD';
  headers?: Record<string, string>;
  /** When the response counts (default: status 200). See HttpPollTrigger. */
  condition?: HttpCondition;
  /** Between polls (default 5000, at least 100). */
  pokeIntervalMs?: number;
  /** One request, body included (default 10000). */
  requestTimeoutMs?: number;
  /** The whole wait: milliseconds or a duration such as '1h'; null for none. Default 7 days, as in Airflow. */
  timeout?: number | string | null;
}

const DEFAULT_SENSOR_TIMEOUT_MS = 7 * 24 * 3_600_000;

/**
 * Polls a URL until the response matches `condition`; the matching `{ status, body }` becomes its
 * XCom. Once the timeout passes it fails without retrying (Airflow's sensor timeout).
 */
export class HttpSensor extends DeferrableSensor<HttpSensorOptions> {
  readonly timeoutMs: number | null;
  readonly #triggerKwargs: ConstructorParameters<typeof HttpPollTrigger>[0];

  constructor(options: TaskOptions & HttpSensorOptions) {
    super(options);
    try {
      this.#triggerKwargs = parseHttpPollKwargs({
        url: options.url,
        method: options.method,
        headers: options.headers,
        intervalMs: options.pokeIntervalMs,
        requestTimeoutMs: options.requestTimeoutMs,
        condition: options.condition,
      });
      const timeout = options.timeout === undefined ? DEFAULT_SENSOR_TIMEOUT_MS : options.timeout;
      this.timeoutMs = timeout === null ? null : millisecondsOf(timeout, 'timeout');
      if (this.timeoutMs === 0) throw new RangeError('timeout must be positive (or null for none)');
    } catch (error) {
      throw invalid('HttpSensor', options, error);
    }
  }

  async execute(ctx: OperatorContext): Promise<unknown> {
    return this.waitFor(ctx, new HttpPollTrigger(this.#triggerKwargs), this.timeoutMs);
  }

  async executeComplete(_ctx: OperatorContext, event: unknown): Promise<unknown> {
    return event;
  }
}
