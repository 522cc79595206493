import { hostname as osHostname } from 'node:os';
import {
  TRIGGER_EVENT_TYPES,
  type TriggerEventBody,
  type TriggerEventType,
  type TriggerFailureBody,
  type TriggerWorkload,
} from '#contracts/triggers.ts';
import type { Logger } from '#engine/logger.ts';
import type { Metrics } from '#metrics/port.ts';
import { deserialize, serialize } from '#sdk/serde.ts';
import type { BaseTrigger, TriggerClass, TriggerEvent, TriggerRunContext } from '#sdk/triggers/base.ts';
import { triggerClassOf } from '#sdk/triggers/registry.ts';
import { LoopWatch } from './loop-watch.ts';
import { truncate } from './retry.ts';
import { TriggerTimers } from './timers.ts';
import { TriggerLog } from './trigger-log.ts';

/**
 * Runs trigger workloads, all on this event loop: each trigger's `run` generator is iterated until
 * its first event, then stopped; `cleanup` runs however it ends. The outcome (an event, or a
 * failure) goes to `reports`, never to the API directly: the triggerer's outbox owns delivery.
 * A trigger that holds the event loop is named when its step is measured (the synchronous part of
 * each `next()`), and caught by a lag check otherwise. See ADR.md beside this file.
 */

/** Where the runner hands what the API must learn; the triggerer's outbox implements it. */
export interface TriggerReports {
  event(triggerId: string, body: TriggerEventBody): void;
  failure(triggerId: string, body: TriggerFailureBody): void;
  log(triggerId: string, chunk: { seq: number; text: string }): void;
}

export interface TriggerRunnerOptions {
  /** Triggers run at most at once. */
  capacity: number;
  reports: TriggerReports;
  /** Classes serde may rebuild from kwargs (settings.allowedDeserializationClasses). */
  allowedDeserializationClasses: readonly string[];
  /** A step that holds the event loop longer than this is logged and counted. */
  blockedThresholdMs: number;
  log: Logger;
  metrics?: Metrics;
  /** Shared by every trigger; default: a new one on the runner's clock. */
  timers?: TriggerTimers;
  /** Epoch ms, the triggers' clock. */
  now?: () => number;
  /** Monotonic ms for step timing (default `performance.now`). */
  monotonic?: () => number;
  /** Named in the failure of a trigger that is not registered here. */
  hostname?: string;
  /** Finds a trigger class by its registered name (default: the SDK registry). */
  triggerClassOf?: (name: string) => TriggerClass | undefined;
  /** Largest log chunk, in UTF-8 bytes (settings.logChunkMaxBytes). */
  logChunkMaxBytes?: number;
  /** Largest log kept for one trigger run; later lines are dropped with a notice. */
  logMaxBytes?: number;
  /** The most a generator's `return()` and then `cleanup()` may each take before the runner moves on (3 s). */
  cleanupTimeoutMs?: number;
  /** Period of the event-loop lag check (default: half the threshold, within 10–1,000 ms). */
  lagCheckIntervalMs?: number;
}

type Outcome =
  | { kind: 'event'; type: TriggerEventType; payload: string }
  | {
      kind: 'failure';
      /** Read after the API's "Trigger <name> failed: ", so it does not name the trigger again. */
      error: string;
      /** What the trigger's log gets instead of the error (its stack). */
      detail?: string;
    }
  | { kind: 'cancelled' };

interface RunningTrigger {
  readonly workload: TriggerWorkload;
  readonly label: string;
  readonly controller: AbortController;
  readonly log: TriggerLog;
  /** Set once the outcome is known: a cancellation after it no longer suppresses the report. */
  settled: boolean;
  /** A cancel that wants the rest of the log shipped (the triggerer stops) or dropped (taken away). */
  discardLog: boolean;
  done: Promise<void>;
}

const FAILURE_MAX_CHARS = 10_000;

export class TriggerRunner {
  readonly #options: TriggerRunnerOptions;
  readonly #running = new Map<string, RunningTrigger>();
  readonly #timers: TriggerTimers;
  readonly #ownTimers: boolean;
  readonly #now: () => number;
  readonly #classOf: (name: string) => TriggerClass | undefined;
  readonly #hostname: string;
  readonly #cleanupTimeoutMs: number;
  readonly #watch: LoopWatch;

  constructor(options: TriggerRunnerOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#ownTimers = options.timers === undefined;
    this.#timers = options.timers ?? new TriggerTimers({ now: this.#now });
    this.#classOf = options.triggerClassOf ?? triggerClassOf;
    this.#hostname = options.hostname ?? osHostname();
    this.#cleanupTimeoutMs = options.cleanupTimeoutMs ?? 3_000;
    this.#watch = new LoopWatch({
      thresholdMs: options.blockedThresholdMs,
      log: options.log,
      metrics: options.metrics,
      monotonic: options.monotonic,
      intervalMs: options.lagCheckIntervalMs,
      idle: () => this.#running.size === 0,
    });
    this.#publishGauges();
  }

  get running(): number {
    return this.#running.size;
  }

  get capacityLeft(): number {
    return Math.max(0, this.#options.capacity - this.#running.size);
  }

  /** Times a trigger was found holding the event loop. */
  get blockedCount(): number {
    return this.#watch.count;
  }

  has(triggerId: string): boolean {
    return this.#running.has(triggerId);
  }

  runningIds(): string[] {
    return [...this.#running.keys()];
  }

  /** Starts the workload; false when the runner is full or already runs that trigger. */
  start(workload: TriggerWorkload): boolean {
    if (this.#running.has(workload.trigger_id) || this.capacityLeft === 0) return false;
    const entry: RunningTrigger = {
      workload,
      label: `${workload.name} (trigger ${workload.trigger_id})`,
      controller: new AbortController(),
      log: new TriggerLog({
        now: this.#now,
        chunkMaxBytes: this.#options.logChunkMaxBytes,
        maxBytes: this.#options.logMaxBytes,
        ship: (chunk) => this.#options.reports.log(workload.trigger_id, chunk),
      }),
      settled: false,
      discardLog: false,
      done: Promise.resolve(),
    };
    this.#running.set(workload.trigger_id, entry);
    this.#publishGauges();
    entry.done = this.#run(entry);
    return true;
  }

  /**
   * Stops a trigger without reporting it (unless its outcome is already known); resolves once its
   * cleanup ran. `discardLog`: the rest of its log is dropped (the trigger was taken away) rather
   * than shipped.
   */
  async cancel(triggerId: string, options: { reason?: string; discardLog?: boolean } = {}): Promise<void> {
    const entry = this.#running.get(triggerId);
    if (!entry) return;
    if (!entry.settled) {
      entry.discardLog = options.discardLog ?? false;
      entry.controller.abort(options.reason ?? 'The trigger was cancelled');
    }
    await entry.done;
  }

  async cancelAll(options: { reason?: string; discardLog?: boolean } = {}): Promise<void> {
    await Promise.all(this.runningIds().map((id) => this.cancel(id, options)));
  }

  /** Ships every trigger's buffered log lines as chunks. */
  flushLogs(): void {
    for (const entry of this.#running.values()) entry.log.flush();
  }

  /** Stops the lag check (and the timers, when the runner made its own); call after `cancelAll`. */
  close(): void {
    this.#watch.close();
    if (this.#ownTimers) this.#timers.close();
  }

  async #run(entry: RunningTrigger): Promise<void> {
    const { workload } = entry;
    const holder: { trigger?: BaseTrigger<object>; iterator?: AsyncGenerator<TriggerEvent, void, void> } = {};
    let outcome: Outcome;
    try {
      outcome = await this.#execute(entry, holder);
    } catch (error) {
      outcome = entry.controller.signal.aborted
        ? { kind: 'cancelled' }
        : {
            kind: 'failure',
            error: messageOf(error),
            detail: stackOf(error),
          };
    }
    entry.settled = true;
    if (holder.iterator) await this.#bounded(holder.iterator.return(), entry, 'stopping its run generator');
    if (holder.trigger) await this.#bounded(holder.trigger.cleanup(), entry, 'its cleanup');
    this.#running.delete(workload.trigger_id);
    this.#publishGauges();
    const { reports, metrics } = this.#options;
    switch (outcome.kind) {
      case 'cancelled':
        if (entry.discardLog) entry.log.discard();
        else entry.log.flush();
        return;
      case 'event':
        metrics?.increment('triggers.succeeded');
        reports.event(workload.trigger_id, {
          type: outcome.type,
          payload: outcome.payload,
          ...entry.log.final(),
        });
        return;
      case 'failure':
        metrics?.increment('triggers.failed');
        entry.log.write('ERROR', outcome.detail ?? outcome.error);
        this.#options.log.warn('A trigger failed', { trigger: entry.label, error: outcome.error });
        reports.failure(workload.trigger_id, {
          error: truncate(outcome.error, FAILURE_MAX_CHARS),
          ...entry.log.final(),
        });
        return;
    }
  }

  async #execute(
    entry: RunningTrigger,
    holder: { trigger?: BaseTrigger<object>; iterator?: AsyncGenerator<TriggerEvent, void, void> },
  ): Promise<Outcome> {
    const { workload, controller } = entry;
    const signal = controller.signal;
    const stepStart = this.#watch.now();
    let kwargs: unknown;
    try {
      kwargs = deserialize(workload.kwargs, { allowed: this.#options.allowedDeserializationClasses });
    } catch (error) {
      return {
        kind: 'failure',
        error: `its kwargs cannot be read: ${messageOf(error)}`,
      };
    }
    const cls = this.#classOf(workload.name);
    if (!cls) {
      return {
        kind: 'failure',
        error: `trigger "${workload.name}" is not registered on this triggerer (${this.#hostname}): list the module that registers it in triggerModules (UPDRAFT_TRIGGER_MODULES)`,
      };
    }
    holder.trigger = new cls(kwargs as never, { queue: workload.queue });
    const iterator = holder.trigger.run(this.#contextOf(entry));
    holder.iterator = iterator;
    this.#measure(entry, this.#watch.now() - stepStart);
    // The first event ends the wait: one `next()` is all a trigger gets.
    if (signal.aborted) return { kind: 'cancelled' };
    this.#watch.resumed(entry.label);
    const before = this.#watch.now();
    const step = iterator.next();
    this.#measure(entry, this.#watch.now() - before);
    const result = await untilAborted(step, signal);
    if (result === ABORTED) return { kind: 'cancelled' };
    if (result.done) return { kind: 'failure', error: 'it ended without firing an event' };
    return this.#eventOutcome(result.value);
  }

  #eventOutcome(event: unknown): Outcome {
    if (typeof event !== 'object' || event === null || !('payload' in event)) {
      return {
        kind: 'failure',
        error: 'it yielded something that is not a TriggerEvent ({ type?, payload })',
      };
    }
    const type = (event as TriggerEvent).type ?? 'resume';
    if (!(TRIGGER_EVENT_TYPES as readonly string[]).includes(type)) {
      return {
        kind: 'failure',
        error: `it yielded an event of unknown type ${JSON.stringify(type)}; expected one of ${TRIGGER_EVENT_TYPES.join(', ')}`,
      };
    }
    try {
      return {
        kind: 'event',
        type,
        payload: serialize((event as TriggerEvent).payload, { root: 'payload' }),
      };
    } catch (error) {
      return {
        kind: 'failure',
        error: `its event cannot be sent: ${messageOf(error)}`,
      };
    }
  }

  #contextOf(entry: RunningTrigger): TriggerRunContext {
    const signal = entry.controller.signal;
    const write = (level: string) => (message: string, fields?: Record<string, unknown>) => {
      entry.log.write(level, fields ? `${message} ${safeJson(fields)}` : message);
    };
    return {
      log: { debug: write('DEBUG'), info: write('INFO'), warn: write('WARNING'), error: write('ERROR') },
      signal,
      sleepUntil: async (atMs: number) => {
        await this.#timers.sleepUntil(atMs, signal);
        this.#watch.resumed(entry.label);
      },
      now: this.#now,
    };
  }

  /** One synchronous step of a trigger: over the threshold, it held every other trigger. */
  #measure(entry: RunningTrigger, heldMs: number): void {
    if (!this.#watch.step(entry.label, heldMs)) return;
    entry.log.write(
      'WARNING',
      `This trigger held the triggerer's event loop for ${Math.round(heldMs)} ms in one step, stalling every other trigger: await instead of blocking`,
    );
  }

  async #bounded(work: Promise<unknown>, entry: RunningTrigger, what: string): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.#cleanupTimeoutMs);
    });
    try {
      const result = await Promise.race([work.then(() => 'done' as const), timedOut]);
      if (result === 'timeout') {
        this.#options.log.warn(`Trigger ${entry.label} took over ${this.#cleanupTimeoutMs} ms in ${what}`);
      }
    } catch (error) {
      this.#options.log.warn(`Trigger ${entry.label} failed in ${what}`, { error: messageOf(error) });
    } finally {
      clearTimeout(timer);
    }
  }

  #publishGauges(): void {
    // triggerer.capacity_left counts more than what runs here: the triggerer publishes it.
    this.#options.metrics?.gauge('triggers.running', this.#running.size);
  }
}

const ABORTED = Symbol('aborted');

/** The step's result, or ABORTED as soon as the signal aborts (a trigger ignoring it is not waited for). */
function untilAborted<T>(step: Promise<T>, signal: AbortSignal): Promise<T | typeof ABORTED> {
  if (signal.aborted) {
    step.catch(() => undefined);
    return Promise.resolve(ABORTED);
  }
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      step.catch(() => undefined);
      resolve(ABORTED);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    step.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function stackOf(error: unknown): string {
  return error instanceof Error ? (error.stack ?? `${error.name}: ${error.message}`) : String(error);
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch {
    return '[fields not serializable]';
  }
}
