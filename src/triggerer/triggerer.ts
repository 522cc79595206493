import { hostname as osHostname } from 'node:os';
import { REQUEST_ENVELOPE_BYTES, type Settings } from '#config/settings.ts';
import { TRIGGER_EVENTS_PER_CALL } from '#contracts/triggers.ts';
import type { Logger } from '#engine/logger.ts';
import { HttpAbortedError, HttpError } from '#http/errors.ts';
import type { Metrics } from '#metrics/port.ts';
import { systemClock, type WorkerClock } from '#worker/clock.ts';
import { TriggererCallbacks, type TriggererCallbacksOptions } from './callbacks.ts';
import { TriggerClaims } from './claims.ts';
import type { TriggererClient } from './client.ts';
import { RegistrationRefusedError } from './errors.ts';
import { ReportOutbox } from './outbox.ts';
import { type Backoff, backoffDelay, isRefusal, messageOf, WarningThrottle } from './retry.ts';
import { TriggerRunner, type TriggerRunnerOptions } from './runner.ts';
import { TriggerTimers } from './timers.ts';

/**
 * The triggerer: registers a job over the Execution API and heartbeats it; while it has free
 * capacity, claims triggers and fetches their workloads; runs them (TriggerRunner); asks now and
 * then which of its triggers to stop; hands events, failures and log chunks to an outbox that
 * delivers them despite transient failures. It holds no store connection. See ADR.md.
 */

/**
 * The field of the periodic status line that carries the free capacity: the ECS deployment's
 * metric filter reads it (lib/triggerer.ts, TRIGGERER_CAPACITY_LOG_FIELD; keep the two equal).
 */
export const CAPACITY_LOG_FIELD = 'triggererCapacityLeft';

export type TriggererApi = Pick<
  TriggererClient,
  | 'job'
  | 'register'
  | 'heartbeat'
  | 'complete'
  | 'load'
  | 'workloads'
  | 'cleanup'
  | 'held'
  | 'event'
  | 'events'
  | 'failure'
  | 'logs'
  | 'claimCallbacks'
>;

export type TriggererSettings = Pick<
  Settings,
  | 'triggererCapacity'
  | 'triggerQueues'
  | 'triggererLoadIntervalMs'
  | 'triggerCleanupIntervalMs'
  | 'triggerBlockedThresholdMs'
  | 'allowedDeserializationClasses'
> &
  Partial<
    Pick<
      Settings,
      | 'logChunkMaxBytes'
      | 'logMaxBytes'
      | 'triggererCallbackCapacity'
      | 'triggererReportsInFlight'
      | 'triggererEventsPerCall'
      | 'requestMaxBytes'
    >
  >;

export interface TriggererOptions {
  client: TriggererApi;
  settings: TriggererSettings;
  log: Logger;
  metrics?: Metrics;
  hostname?: string;
  /** Time and waits; the real clock by default. */
  clock?: WorkerClock;
  /** In [0, 1): the jitter of every backoff. */
  random?: () => number;
  /** Backoff of a report after a transient failure (default 250 ms doubling to 30 s). */
  reportRetry?: Backoff;
  /** Backoff of the registration while the API is unreachable (default 500 ms doubling to 30 s). */
  registerRetry?: Backoff;
  /** Timeout of one API call (default 10 s; a heartbeat's is at most a third of the job's timeout). */
  callTimeoutMs?: number;
  /**
   * How long a graceful stop may spend delivering what is left (default 3 s). With the cleanups'
   * bound (3 s) and the completion (about 3 s at most) a stop ends within about 9 s: standalone
   * kills its triggerer 10 s after SIGTERM.
   */
  stopFlushMs?: number;
  /** How often buffered trigger log lines are shipped (default 5 s). */
  logFlushIntervalMs?: number;
  /** Period of the status line with the free capacity (default 60 s). */
  statusLogIntervalMs?: number;
  /**
   * Runs the async callbacks placed on triggerers (claimed with the job's token, started and
   * reported under their own tokens); without it this triggerer claims no callbacks.
   */
  callbacks?: Pick<TriggererCallbacksOptions, 'execution' | 'executor'>;
  /** Passed on to the runner (its timers, cleanup bound, lag check period). */
  runner?: Partial<
    Pick<TriggerRunnerOptions, 'timers' | 'cleanupTimeoutMs' | 'lagCheckIntervalMs' | 'monotonic'>
  >;
}

export class Triggerer {
  readonly #options: TriggererOptions;
  readonly #client: TriggererApi;
  readonly #log: Logger;
  readonly #clock: WorkerClock;
  readonly #random: () => number;
  readonly #hostname: string;
  readonly #callTimeoutMs: number;
  readonly #timers: TriggerTimers;
  readonly #outbox: ReportOutbox;
  readonly #runner: TriggerRunner;
  /** Aborted by `stop()`: ends the loops' waits and the calls they make. */
  readonly #stop = new AbortController();
  #graceful = true;
  #job: { jobId: string; intervalMs: number; timeoutMs: number } | undefined;
  /** Counts registrations and job losses: an answer to a call of an earlier job is ignored. */
  #epoch = 0;
  readonly #claims: TriggerClaims;
  readonly #callbacks: TriggererCallbacks | undefined;
  readonly #warnings: WarningThrottle;
  #running: Promise<void> | undefined;

  constructor(options: TriggererOptions) {
    this.#options = options;
    this.#client = options.client;
    this.#log = options.log;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#hostname = options.hostname ?? osHostname();
    // AbortSignal.timeout takes whole milliseconds only.
    this.#callTimeoutMs = Math.max(1, Math.floor(options.callTimeoutMs ?? 10_000));
    const { settings } = options;
    this.#timers = options.runner?.timers ?? new TriggerTimers({ now: () => this.#clock.now() });
    this.#outbox = new ReportOutbox({
      client: this.#client,
      log: this.#log,
      metrics: options.metrics,
      clock: this.#clock,
      random: this.#random,
      retry: options.reportRetry ?? { baseDelayMs: 250, maxDelayMs: 30_000 },
      callTimeoutMs: this.#callTimeoutMs,
      maxInFlight: Math.max(1, options.settings.triggererReportsInFlight ?? 64),
      eventsPerCall: settings.triggererEventsPerCall ?? TRIGGER_EVENTS_PER_CALL,
      eventCallMaxBytes: (settings.requestMaxBytes ?? 1024 * 1024) - REQUEST_ENVELOPE_BYTES,
      logBatchMaxBytes: settings.logChunkMaxBytes ?? 128 * 1024,
      logBacklogMaxBytes: 32 * 1024 * 1024,
      currentJob: () => this.#job?.jobId,
      onTakenOver: (triggerId) => {
        if (this.#job) this.#claims.takenOver(triggerId);
      },
      onRefused: (triggerId) => {
        if (this.#job) this.#claims.refused(triggerId);
      },
    });
    this.#runner = new TriggerRunner({
      ...options.runner,
      capacity: settings.triggererCapacity,
      reports: this.#outbox,
      allowedDeserializationClasses: settings.allowedDeserializationClasses,
      blockedThresholdMs: settings.triggerBlockedThresholdMs,
      log: this.#log,
      metrics: options.metrics,
      timers: this.#timers,
      now: () => this.#clock.now(),
      hostname: this.#hostname,
      logChunkMaxBytes: settings.logChunkMaxBytes,
      logMaxBytes: settings.logMaxBytes,
    });
    this.#claims = new TriggerClaims({
      client: this.#client,
      runner: this.#runner,
      outbox: this.#outbox,
      queues: settings.triggerQueues,
      callTimeoutMs: this.#callTimeoutMs,
      epoch: () => this.#epoch,
      metrics: options.metrics,
    });
    this.#callbacks = options.callbacks
      ? new TriggererCallbacks({
          ...options.callbacks,
          claim: (limit, callOptions) => this.#client.claimCallbacks(limit, callOptions),
          capacity: settings.triggererCallbackCapacity ?? 100,
          log: this.#log,
          clock: this.#clock,
          metrics: options.metrics,
          callTimeoutMs: this.#callTimeoutMs,
        })
      : undefined;
    this.#warnings = new WarningThrottle(() => this.#clock.now());
  }

  /** Callback attempts running here. */
  get runningCallbacks(): number {
    return this.#callbacks?.running ?? 0;
  }

  /** The registered job's id; undefined before the registration and while registering again. */
  get jobId(): string | undefined {
    return this.#job?.jobId;
  }

  get running(): number {
    return this.#runner.running;
  }

  /** Events and failures not yet delivered, and log chunks waiting. */
  get outboxSize(): { reports: number; logChunks: number } {
    return this.#outbox.size;
  }

  /** Reports the API refused (non-transient 4xx), logged and dropped. */
  get reportsRefused(): number {
    return this.#outbox.refused;
  }

  /** Times a trigger held the event loop over the threshold. */
  get blockedCount(): number {
    return this.#runner.blockedCount;
  }

  /**
   * Registers and runs until `stop()`; resolves once stopped. Rejects with
   * RegistrationRefusedError when the API refuses the registration (a wrong credential).
   */
  run(): Promise<void> {
    this.#running ??= this.#main();
    return this.#running;
  }

  /**
   * Graceful (the default; SIGTERM): stops claiming, cancels every trigger (their cleanups run),
   * delivers what is left for a short while, completes the job (the API releases its triggers at
   * once). Not graceful: the same without the delivery and the completion, as after a crash; the
   * API gives the job's triggers to another triggerer once its heartbeat times out.
   */
  async stop(options: { graceful?: boolean } = {}): Promise<void> {
    if (!this.#stop.signal.aborted) {
      this.#graceful = options.graceful ?? true;
      this.#stop.abort('The triggerer is stopping');
    }
    await this.run().catch(() => undefined);
  }

  async #main(): Promise<void> {
    const signal = this.#stop.signal;
    let fatal: unknown;
    try {
      if (await this.#register()) {
        const outbox = this.#outbox.run(signal);
        await Promise.all([this.#heartbeatLoop(), this.#loadLoop(), this.#cleanupLoop(), this.#flushLoop()]);
        await outbox;
      }
    } catch (error) {
      fatal = error;
      if (!signal.aborted) {
        this.#graceful = false;
        this.#stop.abort(error);
      }
    }
    await this.#shutDown();
    if (fatal) throw fatal;
  }

  async #shutDown(): Promise<void> {
    const graceful = this.#graceful;
    // Callback attempts in flight end: on a graceful stop they report a retryable failure, so
    // another attempt runs elsewhere at once; otherwise, or with no report made in time, the tick
    // takes each for lost once its timeout has passed.
    const callbacksStopped = this.#callbacks?.stop({
      graceful,
      deadlineMs: this.#clock.now() + (this.#options.stopFlushMs ?? 3_000),
    });
    await this.#runner.cancelAll({ reason: 'The triggerer is stopping', discardLog: !graceful });
    await callbacksStopped;
    this.#runner.close();
    this.#timers.close();
    if (graceful && this.#job) {
      await this.#outbox.drain(this.#clock.now() + (this.#options.stopFlushMs ?? 3_000));
      const left = this.#outbox.size;
      if (left.reports > 0) {
        this.#log.error(
          `${left.reports} trigger report(s) could not be delivered before the stop: the API gives those triggers to another triggerer, which runs them again`,
        );
      }
      try {
        await this.#client.complete({
          retry: { attempts: 2, baseDelayMs: 100, maxDelayMs: 200 },
          timeoutMs: Math.min(this.#callTimeoutMs, 1_500),
        });
        this.#log.info('Triggerer job completed: its triggers are released', { jobId: this.#job.jobId });
      } catch (error) {
        this.#log.warn(
          'Could not complete the triggerer job: its triggers move on once its heartbeat times out',
          {
            error: messageOf(error),
          },
        );
      }
    } else {
      this.#outbox.abandon();
    }
  }

  /** Registers a job, trying again while the API is unreachable; false when stopped first. */
  async #register(): Promise<boolean> {
    const signal = this.#stop.signal;
    const { settings } = this.#options;
    const retry = this.#options.registerRetry ?? { baseDelayMs: 500, maxDelayMs: 30_000 };
    for (let attempt = 1; !signal.aborted; attempt += 1) {
      try {
        const job = await this.#client.register(
          { hostname: this.#hostname, capacity: settings.triggererCapacity, queues: settings.triggerQueues },
          { retry: { attempts: 1 }, timeoutMs: this.#callTimeoutMs, signal },
        );
        this.#epoch += 1;
        this.#job = {
          jobId: job.job_id,
          intervalMs: job.heartbeat_interval_ms,
          timeoutMs: job.heartbeat_timeout_ms,
        };
        this.#log.info('Triggerer job registered', {
          jobId: job.job_id,
          capacity: settings.triggererCapacity,
          queues: settings.triggerQueues,
        });
        return true;
      } catch (error) {
        if (signal.aborted || error instanceof HttpAbortedError) return false;
        if (isRefusal(error)) {
          throw new RegistrationRefusedError(
            `The Execution API refused to register the triggerer: ${error.status} ${error.detail}`,
            { cause: error },
          );
        }
        this.#warn('register', 'Cannot register the triggerer job yet: the Execution API is unreachable', {
          attempt,
          error: messageOf(error),
        });
        await this.#clock.sleep(backoffDelay(retry, attempt, this.#random()), signal);
      }
    }
    return false;
  }

  async #heartbeatLoop(): Promise<void> {
    const signal = this.#stop.signal;
    const statusEveryMs = this.#options.statusLogIntervalMs ?? 60_000;
    let statusAt = this.#clock.now();
    this.#logStatus();
    while (!signal.aborted && this.#job) {
      await this.#clock.sleep(this.#job.intervalMs, signal);
      if (signal.aborted) return;
      try {
        await this.#client.heartbeat(
          { running: this.#runner.running },
          {
            retry: { attempts: 1 },
            timeoutMs: Math.max(1, Math.floor(Math.min(this.#callTimeoutMs, this.#job.timeoutMs / 3))),
            signal,
          },
        );
      } catch (error) {
        if (signal.aborted) return;
        if (
          error instanceof HttpError &&
          (error.status === 404 || error.status === 409 || error.status === 401)
        ) {
          await this.#registerAgain(error);
          continue;
        }
        this.#warn('heartbeat', 'A triggerer heartbeat failed', { error: messageOf(error) });
      }
      if (this.#clock.now() - statusAt >= statusEveryMs) {
        statusAt = this.#clock.now();
        this.#logStatus();
      } else {
        this.#publishCapacity();
      }
    }
  }

  /** The API no longer runs this job: its triggers may run elsewhere already, so they stop here. */
  async #registerAgain(error: HttpError): Promise<void> {
    this.#log.warn(
      `The Execution API no longer runs this triggerer's job (${error.status} ${error.detail}): its triggers are cancelled and a new job is registered`,
      { jobId: this.#job?.jobId },
    );
    this.#job = undefined;
    // Answers to calls still in flight for the lost job are ignored from here on.
    this.#epoch += 1;
    this.#claims.reset();
    this.#options.metrics?.increment('triggerer.jobs_lost');
    await this.#runner.cancelAll({ reason: 'The triggerer lost its job', discardLog: true });
    await this.#register();
  }

  async #loadLoop(): Promise<void> {
    const signal = this.#stop.signal;
    const intervalMs = this.#options.settings.triggererLoadIntervalMs;
    let callbacksClaimedAt = Number.NEGATIVE_INFINITY;
    while (!signal.aborted) {
      let backlog = false;
      if (this.#job) {
        backlog = await this.#claims.load(signal).catch((error: unknown) => {
          if (!signal.aborted) this.#callFailed('load', 'Could not claim triggers', error);
          return false;
        });
      }
      const job = this.#job;
      // Callbacks once a load interval, also while trigger loads follow each other at once (and
      // at once after the clock went back).
      const sinceCallbacks = this.#clock.now() - callbacksClaimedAt;
      if (job && this.#callbacks && !(sinceCallbacks >= 0 && sinceCallbacks < intervalMs)) {
        callbacksClaimedAt = this.#clock.now();
        await this.#callbacks.claim(job.jobId, signal).catch((error: unknown) => {
          if (!signal.aborted) this.#callFailed('claim', 'Could not claim callbacks', error);
        });
      }
      // A full load with capacity left: more triggers wait, claimed at once rather than a load
      // interval later; unless the API is behind on reports, which go before more claims.
      if (!backlog || this.#outbox.backlogged) await this.#clock.sleep(intervalMs, signal);
    }
  }

  async #cleanupLoop(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      await this.#clock.sleep(this.#options.settings.triggerCleanupIntervalMs, signal);
      if (signal.aborted || !this.#job) continue;
      await this.#claims.cleanup(signal).catch((error: unknown) => {
        if (!signal.aborted) this.#callFailed('cleanup', 'Could not ask which triggers to stop', error);
      });
    }
  }

  /** Ships the triggers' buffered log lines now and then. */
  async #flushLoop(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      await this.#clock.sleep(this.#options.logFlushIntervalMs ?? 5_000, signal);
      if (!signal.aborted) this.#runner.flushLogs();
    }
  }

  /**
   * The capacity left: less than the runner's free slots by the triggers claimed and waiting to
   * run and the fired ones whose report still waits for the API (they hold their slot until it
   * goes out, see TriggerClaims).
   */
  #publishCapacity(): number {
    const free = this.#claims.free;
    this.#options.metrics?.gauge('triggerer.capacity_left', free);
    return free;
  }

  #logStatus(): void {
    this.#log.info('Triggerer status', {
      [CAPACITY_LOG_FIELD]: this.#publishCapacity(),
      running: this.#runner.running,
      jobId: this.#job?.jobId,
      undeliveredReports: this.#outbox.size.reports,
      abandonedTriggers: this.#claims.abandoned,
    });
  }

  #callFailed(kind: string, what: string, error: unknown): void {
    if (isRefusal(error) && error.status !== 404 && error.status !== 409) {
      this.#log.error(`${what}: the Execution API refused it (${error.status} ${error.detail})`, {
        status: error.status,
      });
      return;
    }
    // A 404 / 409 says the job is lost: the next heartbeat finds out and registers again.
    this.#warn(kind, `${what}: ${messageOf(error)}; trying again`, {});
  }

  #warn(kind: string, message: string, fields: Record<string, unknown>): void {
    if (this.#warnings.allows(kind)) this.#log.warn(message, fields);
  }
}
