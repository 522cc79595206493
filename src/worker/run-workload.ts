import { randomUUID } from 'node:crypto';
import { workerCallTimeoutMs } from '#config/settings.ts';
import type { TaskWorkload } from '#contracts/messages.ts';
import { formatTaskInstanceKey, type TaskInstanceKey } from '#core/models.ts';
import type { Logger } from '#engine/logger.ts';
import type { RetryPolicy } from '#http/client.ts';
import { HttpError } from '#http/errors.ts';
import type { MetricsRegistry } from '#metrics/registry.ts';
import type { WorkerClock } from './clock.ts';
import type { ExecutionClient, FinishState, StartedTask } from './execution-client.ts';
import type { TaskExecutor } from './executor.ts';
import { LogChunker } from './log-chunker.ts';
import type { RunnerOutcome } from './protocol.ts';
import { reportOutcome } from './report.ts';
import { toFinishState, truncate } from './reports.ts';

/**
 * One workload, start to report: the engine entry that a Lambda worker handler and the
 * standalone pool both call. Every wait goes through `deps.clock`. See "Worker" in
 * docs/architecture.md for the bounds it keeps and why.
 */

export interface WorkloadDeps {
  client: ExecutionClient;
  executor: TaskExecutor;
  clock: WorkerClock;
  settings: { heartbeatIntervalMs: number; heartbeatTimeoutMs: number };
  log: Logger;
  metrics?: MetricsRegistry;
  worker: { hostname: string; workerId: string; pid: number };
}

export interface WorkloadOptions {
  /** Called once the API has started the try: the store owns it now, the message may go. */
  onStarted?: () => void;
  /** Graceful stop: the task is aborted and the try reported `handed_back`. */
  signal?: AbortSignal;
  /**
   * The host's own time limit (a Lambda worker's timeout, less a margin for the report): the
   * task is aborted and the try reported failed, retryable, with the signal's reason in its log,
   * so the task's retries apply. Not a hand-back: a try that outlives every invocation would
   * otherwise be run again, for free, forever. Before the start it leaves the message, as `signal`.
   */
  deadline?: AbortSignal;
}

export interface WorkloadResult {
  /**
   * The message is spent (started here, or already started or gone elsewhere): delete it.
   * False when it should come back (the API was unreachable) or go to the dead-letter queue
   * after its receives (the API refused it: a wrong secret or an invalid workload).
   */
  deleteMessage: boolean;
  started: boolean;
  /** The outcome reported (or that the worker tried to report). */
  outcome?: FinishState['state'];
  /** The API recorded the outcome (or had already, for a duplicate). */
  reported: boolean;
  /** Why the task was stopped before it ended by itself. */
  stopReason?: string;
}

/** Start attempts: a short bound, since the message comes back anyway when it is not deleted. */
const START_RETRY = { attempts: 4, baseDelayMs: 250, maxDelayMs: 2_000 };
const START_WINDOW_MS = 10_000;

/** The timeout of one start or heartbeat call (see `workerCallTimeoutMs`). */
function callTimeoutMs(settings: WorkloadDeps['settings']): number {
  return workerCallTimeoutMs(settings.heartbeatTimeoutMs);
}

/** Output not yet sent goes out on the next heartbeat once it waited this many intervals. */
const LOG_MAX_DELAY_INTERVALS = 2;

type StopCause = { kind: 'handed_back' | 'deadline' | 'timeout' | 'lost' | 'unreachable'; reason: string };

export async function runWorkload(
  deps: WorkloadDeps,
  workload: TaskWorkload,
  options: WorkloadOptions = {},
): Promise<WorkloadResult> {
  const key: TaskInstanceKey = {
    dagId: workload.ti.dag_id,
    runId: workload.ti.run_id,
    taskId: workload.ti.task_id,
    mapIndex: workload.ti.map_index,
  };
  const log = deps.log.child({ ti: formatTaskInstanceKey(key), tryNumber: workload.try_number });
  const stops = [options.signal, options.deadline].filter((signal) => signal !== undefined);
  const stopping = () => stops.some((signal) => signal.aborted);
  if (stopping()) return { deleteMessage: false, started: false, reported: false };
  let started: StartedTask;
  let token: string;
  // The API records the start (and the try's first heartbeat) when it gets the call, perhaps long
  // before its answer arrives: the stop bound counts from here.
  const sentAt = deps.clock.now();
  try {
    const response = await deps.client.start(
      workload.token,
      key,
      {
        hostname: deps.worker.hostname,
        worker_id: deps.worker.workerId,
        pid: deps.worker.pid,
        // One id for this start and its retries: a retry after a lost answer gets the try back.
        start_id: randomUUID(),
      },
      {
        retry: { ...START_RETRY, deadline: deps.clock.now() + START_WINDOW_MS },
        timeoutMs: callTimeoutMs(deps.settings),
        // A graceful stop or the deadline ends the call (and its retries) at once.
        signal: stops.length > 1 ? AbortSignal.any(stops) : stops[0],
      },
    );
    started = response.started;
    token = response.refreshedToken ?? workload.token;
  } catch (error) {
    if (stopping()) {
      // Whether the API recorded the start is unknown: the message comes back. A redelivery
      // finds the try started (409, the message is spent) or starts it.
      log.info(
        options.signal?.aborted
          ? 'The worker is shutting down: the workload is left in the queue for another worker'
          : 'The worker is out of time: the workload is left in the queue for another worker',
      );
      return { deleteMessage: false, started: false, reported: false };
    }
    return { deleteMessage: startRefusalIsFinal(deps, log, error), started: false, reported: false };
  }
  options.onStarted?.();
  return new RunningTry(deps, key, started, token, log, sentAt).run(options.signal, options.deadline);
}

/** Whether a failed start spends the message; logs what happened at the level it deserves. */
function startRefusalIsFinal(deps: WorkloadDeps, log: Logger, error: unknown): boolean {
  if (error instanceof HttpError && (error.status === 409 || error.status === 404)) {
    log.info('Workload not started: the try was started by another delivery, or the task instance moved on', {
      status: error.status,
      detail: error.detail,
    });
    return true;
  }
  if (error instanceof HttpError && error.status !== undefined && !error.retryable) {
    // Kept: redelivered up to the queue's receive limit, then dead-lettered (and counted there).
    deps.metrics?.increment('worker.workloads_refused');
    log.error(`The Execution API refused to start the try: ${error.status} ${error.detail}`, {
      status: error.status,
    });
    return false;
  }
  log.warn(
    'Could not start the try: the Execution API is unreachable; the workload will be delivered again',
    {
      error: error instanceof Error ? error.message : String(error),
    },
  );
  return false;
}

/** The bookkeeping of one started try: its token, heartbeat, log chunks and stop. */
class RunningTry {
  readonly #deps: WorkloadDeps;
  readonly #key: TaskInstanceKey;
  readonly #started: StartedTask;
  readonly #log: Logger;
  readonly #chunker: LogChunker;
  readonly #stop = new AbortController();
  #taskEnded = false;
  #token: string;
  /** When the last call the API recorded as a heartbeat (the start included) was sent. */
  #lastContact: number;
  #lastHeartbeatError: unknown;
  #logFailing = false;
  #cause: StopCause | undefined;

  constructor(
    deps: WorkloadDeps,
    key: TaskInstanceKey,
    started: StartedTask,
    token: string,
    log: Logger,
    startSentAt: number,
  ) {
    this.#deps = deps;
    this.#key = key;
    this.#started = started;
    this.#token = token;
    this.#log = log;
    this.#lastContact = startSentAt;
    this.#chunker = new LogChunker(started.log_chunk_max_bytes, started.log_max_chunks, {
      now: () => deps.clock.now(),
      maxDelayMs: LOG_MAX_DELAY_INTERVALS * deps.settings.heartbeatIntervalMs,
    });
  }

  async run(graceful: AbortSignal | undefined, deadline: AbortSignal | undefined): Promise<WorkloadResult> {
    const onGracefulStop = () =>
      this.#stopTask({ kind: 'handed_back', reason: 'The worker is shutting down: the try is handed back' });
    const onDeadline = () => this.#stopTask({ kind: 'deadline', reason: abortReasonOf(deadline) });
    graceful?.addEventListener('abort', onGracefulStop, { once: true });
    deadline?.addEventListener('abort', onDeadline, { once: true });
    if (graceful?.aborted) onGracefulStop();
    if (deadline?.aborted) onDeadline();
    const finished = new AbortController();
    const heartbeats = this.#heartbeatLoop(finished.signal);
    let outcome: RunnerOutcome;
    try {
      outcome = await this.#execute();
      // The task's outcome is final from here: a heartbeat that fails now cannot change it.
      this.#taskEnded = true;
    } finally {
      finished.abort();
      await heartbeats;
      graceful?.removeEventListener('abort', onGracefulStop);
      deadline?.removeEventListener('abort', onDeadline);
    }
    const state = this.#finishState(outcome);
    // After a refusal the API takes nothing from this try; one attempt carries the reason.
    const ownershipLost = this.#cause?.kind === 'lost';
    if (!ownershipLost) await this.#flushLogs();
    const report = await reportOutcome(
      {
        client: this.#deps.client,
        log: this.#log,
        metrics: this.#deps.metrics,
        key: this.#key,
        tryNumber: this.#started.try_number,
        token: () => this.#token,
        xcomMaxBytes: this.#started.xcom_max_bytes,
      },
      state,
      this.#chunker.take(true),
      ownershipLost ? undefined : this.#reportDeadline(),
    );
    return {
      deleteMessage: true,
      started: true,
      outcome: report.outcome,
      reported: report.reported,
      stopReason: this.#cause?.reason,
    };
  }

  /** The scheduler treats the try as a zombie from here on: reports are worth trying until then. */
  #reportDeadline(): number {
    return this.#lastContact + this.#deps.settings.heartbeatTimeoutMs;
  }

  async #execute(): Promise<RunnerOutcome> {
    const pull = async (taskId: string, xcomKey: string): Promise<unknown> => {
      const text = await this.#deps.client.getXCom(
        this.#token,
        { ...this.#key, taskId, mapIndex: -1 },
        xcomKey,
        {
          signal: this.#stop.signal,
        },
      );
      return text === undefined ? null : (JSON.parse(text) as unknown);
    };
    try {
      const args = await Promise.all(this.#started.args.map((arg) => pull(arg.task_id, arg.key)));
      return await this.#deps.executor.run(this.#started, args, {
        onLog: (text) => this.#chunker.add(text),
        pullXCom: pull,
        signal: this.#stop.signal,
      });
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.#note('ERROR', `Task failed: ${message}`);
      return { kind: 'error', message };
    }
  }

  #finishState(outcome: RunnerOutcome): FinishState {
    const cause = this.#cause;
    if (cause?.kind === 'handed_back') return { state: 'handed_back' };
    if (cause) {
      return {
        state: 'failed',
        error_message: truncate(cause.reason),
        retryable: true,
        ...(cause.kind === 'timeout' ? { error_type: 'execution_timeout' as const } : {}),
      };
    }
    const state = toFinishState(outcome, this.#started);
    if (state.state === 'failed' && outcome.kind === 'success') this.#note('ERROR', state.error_message);
    return state;
  }

  /** The first cause wins; the task's signal aborts with its reason, and the try's log says why. */
  #stopTask(cause: StopCause): void {
    if (this.#cause || this.#taskEnded) return;
    this.#cause = cause;
    if (cause.kind === 'handed_back') this.#log.info(cause.reason);
    else {
      this.#note('ERROR', cause.reason);
      this.#log.warn(`Stopping the task: ${cause.reason}`);
      if (cause.kind !== 'timeout') this.#deps.metrics?.increment('worker.tries_stopped');
    }
    this.#stop.abort(cause.reason);
  }

  #note(level: string, text: string): void {
    this.#chunker.add(`[${new Date(this.#deps.clock.now()).toISOString()}] {${level}} ${text}\n`);
  }

  /**
   * Heartbeats every interval while the task runs (at once again while full log chunks wait),
   * and enforces the execution timeout by comparing with the clock on each wake-up: no timer
   * longer than the heartbeat interval is ever armed, so a timeout of any length cannot overflow.
   */
  async #heartbeatLoop(finished: AbortSignal): Promise<void> {
    const { clock, settings } = this.#deps;
    const timeoutMs = this.#started.execution_timeout_ms;
    let timeoutAt = timeoutMs === null ? undefined : clock.now() + timeoutMs;
    let nextBeatAt = clock.now() + settings.heartbeatIntervalMs;
    while (!finished.aborted) {
      const wakeAt = timeoutAt === undefined ? nextBeatAt : Math.min(nextBeatAt, timeoutAt);
      const wait = wakeAt - clock.now();
      if (wait > 0) await clock.sleep(wait, finished);
      if (finished.aborted) return;
      if (timeoutMs !== null && timeoutAt !== undefined && clock.now() >= timeoutAt) {
        timeoutAt = undefined;
        this.#stopTask({
          kind: 'timeout',
          reason: `Task exceeded its execution timeout of ${timeoutMs / 1000}s`,
        });
      }
      if (clock.now() < nextBeatAt) continue;
      const beat = await this.#heartbeat();
      if (beat === 'lost') return;
      const silentMs = clock.now() - this.#lastContact;
      if (beat === 'failed' && silentMs > settings.heartbeatTimeoutMs / 2) {
        this.#stopTask({
          kind: 'unreachable',
          reason: `No successful heartbeat for ${Math.round(silentMs / 1000)}s, more than half the heartbeat timeout (UPDRAFT_HEARTBEAT_TIMEOUT_MS = ${settings.heartbeatTimeoutMs} ms): the scheduler will soon treat this try as a zombie and may run it again, so this copy stops. Last error: ${errorText(this.#lastHeartbeatError)}`,
        });
        return;
      }
      // After a log-side failure the chunk waits for the next interval: no hot loop.
      const again = beat === 'again' || (beat === 'ok' && this.#chunker.backlog);
      nextBeatAt = clock.now() + (again ? 0 : settings.heartbeatIntervalMs);
    }
  }

  /**
   * One heartbeat carrying at most one log chunk. When a heartbeat with a chunk is answered with
   * a server error, one goes again at once without the chunk: a failing log store must not look
   * like an unreachable API (that would stop a healthy task). The chunk waits for a later beat.
   */
  async #heartbeat(): Promise<'ok' | 'again' | 'log-failed' | 'failed' | 'lost'> {
    const chunk = this.#chunker.take(false);
    try {
      await this.#sendHeartbeat(chunk, { attempts: 1 });
      if (chunk && this.#logFailing) {
        this.#logFailing = false;
        this.#log.info('Log chunks are accepted again');
      }
      return 'ok';
    } catch (error) {
      if (error instanceof HttpError && error.status === 413 && chunk) {
        this.#log.warn('A log chunk was refused as too large and is dropped', { detail: error.detail });
        this.#chunker.drop(chunk);
        // The try's log says so; the heartbeat goes again at once without the chunk.
        this.#chunker.add(
          `\n[updraft] A log chunk of ${chunk.text.length} characters was refused by the API (413: ${error.detail}) and dropped.\n`,
        );
        return 'again';
      }
      if (chunk) this.#chunker.putBack(chunk);
      const failed = this.#heartbeatFailed(error);
      if (failed === 'lost' || !chunk || !(error instanceof HttpError) || error.status === undefined)
        return failed;
    }
    // The API answered, with a server error: liveness goes on without the chunk.
    try {
      await this.#sendHeartbeat(undefined, { attempts: 1 });
    } catch (error) {
      return this.#heartbeatFailed(error);
    }
    if (!this.#logFailing) {
      this.#logFailing = true;
      this.#log.warn('Heartbeats with a log chunk fail while heartbeats without one succeed: the log waits', {
        error: errorText(this.#lastHeartbeatError),
      });
    }
    return 'log-failed';
  }

  /** A failed heartbeat: a refusal stops the task at once; anything else counts toward the stop bound. */
  #heartbeatFailed(error: unknown): 'failed' | 'lost' {
    if (error instanceof HttpError && error.status !== undefined && !error.retryable) {
      this.#stopTask({ kind: 'lost', reason: refusalReason(error) });
      return 'lost';
    }
    this.#lastHeartbeatError = error;
    return 'failed';
  }

  async #sendHeartbeat(
    chunk: { seq: number; text: string } | undefined,
    retry: Partial<RetryPolicy>,
    signal?: AbortSignal,
  ): Promise<void> {
    const { clock, client, settings } = this.#deps;
    // The API records the heartbeat when the call arrives: the stop bound counts from the send.
    const sentAt = clock.now();
    const { refreshedToken } = await client.heartbeat(this.#token, this.#key, chunk ? { log: chunk } : {}, {
      retry,
      timeoutMs: callTimeoutMs(settings),
      ...(signal ? { signal } : {}),
    });
    if (refreshedToken) this.#token = refreshedToken;
    this.#lastContact = Math.max(this.#lastContact, sentAt);
  }

  /**
   * Ships all but the last log chunk on heartbeats, so the report carries one chunk at most. Best
   * effort within a short slice (one call timeout, and never past the report's deadline): the
   * outcome matters more than the rest of the log, and the report's retries need its window.
   */
  async #flushLogs(): Promise<void> {
    if (this.#chunker.pendingChunks <= 1) return;
    const { clock, settings } = this.#deps;
    const sliceMs = Math.min(callTimeoutMs(settings), this.#reportDeadline() - clock.now());
    if (sliceMs <= 0) return;
    const deadline = clock.now() + sliceMs;
    const slice = new AbortController();
    const flushed = new AbortController();
    void clock.sleep(sliceMs, flushed.signal).then(() => {
      if (!flushed.signal.aborted) slice.abort('the time for the rest of the log is up');
    });
    try {
      while (this.#chunker.pendingChunks > 1 && !slice.signal.aborted) {
        const chunk = this.#chunker.take(false);
        if (!chunk) return;
        try {
          await this.#sendHeartbeat(
            chunk,
            { attempts: Infinity, baseDelayMs: 250, maxDelayMs: 2_000, deadline },
            slice.signal,
          );
        } catch (error) {
          if (error instanceof HttpError && error.status === 413) {
            this.#chunker.drop(chunk);
            continue;
          }
          this.#log.warn('Could not ship the rest of the log before the report', { error: errorText(error) });
          return;
        }
      }
    } finally {
      flushed.abort();
    }
  }
}

function refusalReason(error: HttpError): string {
  const why =
    error.status === 409
      ? 'this try is no longer the running try of its task instance (cleared, failed as a zombie, or marked by hand)'
      : error.status === 401 || error.status === 403
        ? "the try's token is no longer accepted"
        : 'the Execution API refuses this try';
  return `The Execution API refused a heartbeat (${error.status} ${error.detail}): ${why}. The task is stopped so it cannot run beside another copy of the try.`;
}

/** The reason a signal aborted with, as a sentence for the try's log and its error message. */
function abortReasonOf(signal: AbortSignal | undefined): string {
  const reason: unknown = signal?.reason;
  if (reason instanceof Error) return reason.message;
  return typeof reason === 'string' ? reason : "The worker's time limit was reached";
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
