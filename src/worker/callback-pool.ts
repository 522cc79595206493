import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { type CallbackWorkload, callbackWorkloadSchema } from '#contracts/messages.ts';
import type { Logger } from '#engine/logger.ts';
import { HttpError } from '#http/errors.ts';
import type { MetricsRegistry } from '#metrics/registry.ts';
import type { Queue, ReceivedMessage } from '#queue/port.ts';
import { systemClock, type WorkerClock } from './clock.ts';
import type { ExecutionClient, StartedCallback } from './execution-client.ts';
import type { TaskHooks } from './executor.ts';
import type { RunnerOutcome } from './protocol.ts';

const LONG_POLL_MS = 10_000;
/** A report is retried this long (with the client's backoff) before the tick's sweep takes over. */
const REPORT_RETRY_MS = 60_000;

/** Runs one callback attempt's code; `ProcessTaskExecutor` does it in a task runner process. */
export interface CallbackExecutor {
  runCallback(started: StartedCallback, hooks: TaskHooks): Promise<RunnerOutcome>;
}

export interface CallbackPoolOptions {
  queue: Queue;
  client: Pick<ExecutionClient, 'startCallback' | 'finishCallback'>;
  executor: CallbackExecutor;
  /** Callback attempts run at once: slots of their own, which tasks never use. */
  slots: number;
  /** The worker's id (shared with the task pool of the same process). */
  workerId: string;
  /** On stop, how long attempts under way may take to finish before they are handed back. */
  shutdownGraceMs?: number;
  metrics: MetricsRegistry;
  log: Logger;
}

/**
 * The callback lane of a worker: its own slots and its own long poll on the `callbacks` queue, so
 * a callback never waits behind task workloads (every task slot may be busy) and callbacks can
 * never hold more than these slots (a flood of them cannot starve tasks). See docs/callbacks.md.
 *
 * Each workload runs one attempt: start (the API refuses a duplicate or late delivery, which is
 * then dropped), run under the attempt's timeout, report with the attempt's log. The message is
 * deleted once the start was answered, as for tasks: the store owns the attempt from there.
 */
export class CallbackWorkerPool {
  readonly #options: CallbackPoolOptions;
  readonly #running = new Set<Promise<void>>();
  readonly #stop = new AbortController();
  /** Aborted once the stop's grace is over: attempts under way are handed back unfinished. */
  readonly #handBack = new AbortController();
  #loop: Promise<void> | null = null;
  #slotFreed: (() => void) | null = null;

  constructor(options: CallbackPoolOptions) {
    this.#options = options;
    options.metrics.addSource(() => ({
      'executor.running_callbacks': this.#running.size,
      'executor.open_callback_slots': options.slots - this.#running.size,
    }));
  }

  start(): void {
    this.#loop ??= this.#receiveLoop().catch((error: unknown) => {
      this.#options.log.error('Callback receive loop stopped', { error });
    });
  }

  /**
   * Stops taking work at once, lets the attempts under way finish for the grace period, then
   * stops the rest and hands them back unfinished (each runs again at once elsewhere, at the same
   * attempt number, not counted). Resolves once every attempt has ended.
   */
  async stop(): Promise<void> {
    this.#stop.abort();
    // The loop may be waiting for a slot: it ends now, not when an attempt frees one.
    this.#slotFreed?.();
    this.#slotFreed = null;
    await this.#loop;
    const settled = Promise.allSettled([...this.#running]);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      settled,
      new Promise((resolve) => {
        timer = setTimeout(resolve, this.#options.shutdownGraceMs ?? 0);
      }),
    ]);
    clearTimeout(timer);
    this.#handBack.abort();
    await settled;
  }

  async #receiveLoop(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      const free = this.#options.slots - this.#running.size;
      if (free <= 0) {
        await new Promise<void>((resolve) => {
          this.#slotFreed = resolve;
        });
        continue;
      }
      let messages: ReceivedMessage[];
      try {
        messages = await this.#options.queue.receive({ maxMessages: free, waitTimeMs: LONG_POLL_MS, signal });
      } catch (error) {
        if (signal.aborted) return;
        this.#options.log.warn('Receiving callback workloads failed; trying again', { error });
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        continue;
      }
      for (const message of messages) {
        const done: Promise<void> = this.#handle(message).finally(() => {
          this.#running.delete(done);
          this.#slotFreed?.();
          this.#slotFreed = null;
        });
        this.#running.add(done);
      }
    }
  }

  async #handle(message: ReceivedMessage): Promise<void> {
    const { queue, log } = this.#options;
    let workload: CallbackWorkload;
    try {
      workload = callbackWorkloadSchema.parse(JSON.parse(message.body));
    } catch (error) {
      log.error('A callback workload could not be read; it is dropped', {
        messageId: message.messageId,
        error,
      });
      await queue.delete([message.receiptHandle]);
      return;
    }
    let deleted = false;
    // Never throws: a message whose delete failed comes back, and its start is then refused.
    const remove = async () => {
      if (deleted) return;
      deleted = true;
      await queue.delete([message.receiptHandle]).catch((error: unknown) => {
        log.warn('Deleting a started callback workload failed; its next delivery is refused', {
          callbackId: workload.callback_id,
          error,
        });
      });
    };
    let started = false;
    try {
      // Deleted once the start is answered: the store owns the attempt from there, so a message
      // that would come back during a long attempt is not delivered again.
      await runCallbackWorkload(workload, {
        ...this.#options,
        signal: this.#handBack.signal,
        onStarted: () => {
          started = true;
          void remove();
        },
      });
      // Not started because the pool stopped: the message comes back for another worker.
      if (started || !this.#handBack.signal.aborted) await remove();
    } catch (error) {
      // The start was not answered: the message comes back after its visibility timeout.
      log.warn('A callback workload could not be started; it is delivered again later', {
        callbackId: workload.callback_id,
        error,
      });
    }
  }
}

/**
 * One attempt of one callback. Throws only when the start could not be answered (the message
 * should be delivered again); a refused start (a duplicate delivery, an attempt that moved on) is
 * logged and returns, so the message is dropped.
 */
export async function runCallbackWorkload(
  workload: CallbackWorkload,
  deps: Pick<CallbackPoolOptions, 'client' | 'executor' | 'workerId' | 'log'> & {
    clock?: WorkerClock;
    /** Called once the start was answered (the attempt is the store's from then on). */
    onStarted?: () => void;
    /**
     * Aborted when the process stops. Before the start: nothing starts (the workload or claim
     * comes back). After it: the attempt is stopped and handed back unfinished (it runs again at
     * once elsewhere, not counted as an attempt), unless it succeeded first.
     */
    signal?: AbortSignal;
    /** False once the process gave the attempt up without a report (a stop as after a crash). */
    reports?: () => boolean;
  },
): Promise<void> {
  const { client, log } = deps;
  const clock = deps.clock ?? systemClock;
  if (deps.signal?.aborted) return;
  const startId = randomUUID();
  let started: StartedCallback;
  try {
    started = await client.startCallback(workload.token, workload.callback_id, {
      hostname: hostname(),
      worker_id: deps.workerId,
      start_id: startId,
    });
  } catch (error) {
    if (error instanceof HttpError && error.status !== undefined && !error.retryable) {
      log.info('A callback workload was refused at its start (a duplicate or late delivery); it is dropped', {
        callbackId: workload.callback_id,
        attempt: workload.attempt,
        status: error.status,
        detail: error.detail,
      });
      return;
    }
    throw error;
  }
  deps.onStarted?.();
  const output = new CappedLog(started.log_max_bytes);
  const stop = new AbortController();
  const finished = new AbortController();
  let handedBack = false;
  const onShutdown = () => {
    handedBack = true;
    stop.abort(new Error('The process running the callback is stopping: the attempt is handed back'));
  };
  if (deps.signal?.aborted) onShutdown();
  deps.signal?.addEventListener('abort', onShutdown, { once: true });
  // The attempt's timeout: the executor stops the callback (a runner process is killed).
  void clock.sleep(started.timeout_ms, finished.signal).then(() => {
    if (!finished.signal.aborted)
      stop.abort(new Error(`The callback timed out after ${started.timeout_ms} ms`));
  });
  let outcome: RunnerOutcome;
  try {
    outcome = stop.signal.aborted
      ? { kind: 'error', message: String((stop.signal.reason as Error).message) }
      : await deps.executor.runCallback(started, {
          onLog: (text) => output.append(text),
          pullXCom: () => Promise.reject(new Error('A callback cannot pull XComs')),
          signal: stop.signal,
        });
  } finally {
    finished.abort();
    deps.signal?.removeEventListener('abort', onShutdown);
  }
  if (deps.reports?.() === false) return;
  const reportId = randomUUID();
  if (handedBack && outcome.kind !== 'success') {
    output.append(
      `[${new Date().toISOString()}] {WARNING} Attempt ${started.attempt} was stopped unfinished: the process running it is stopping; it runs again elsewhere (not counted as an attempt)\n`,
    );
    await client
      .finishCallback(
        workload.token,
        workload.callback_id,
        { state: 'handed_back', report_id: reportId, log: output.text() },
        { retry: { attempts: 3 } },
      )
      .catch((error: unknown) =>
        log.warn('Handing a callback attempt back failed; the scheduler will take it as lost', {
          callbackId: workload.callback_id,
          attempt: started.attempt,
          error,
        }),
      );
    return;
  }
  const failure =
    outcome.kind === 'success'
      ? undefined
      : outcome.kind === 'failed_no_retry'
        ? { message: outcome.reason, retryable: false }
        : {
            message: outcome.kind === 'error' ? outcome.message : `unexpected outcome ${outcome.kind}`,
            retryable: true,
          };
  if (failure) {
    const next =
      failure.retryable && started.attempt < started.max_attempts
        ? 'another attempt follows'
        : 'no attempt follows';
    output.append(
      `[${new Date().toISOString()}] {ERROR} Attempt ${started.attempt} of ${started.max_attempts} failed (${next}): ${failure.message}\n`,
    );
  }
  try {
    const answer = await client.finishCallback(
      workload.token,
      workload.callback_id,
      failure
        ? {
            state: 'failed',
            report_id: reportId,
            error_message: failure.message.slice(0, 10_000),
            retryable: failure.retryable,
            log: output.text(),
          }
        : { state: 'success', report_id: reportId, log: output.text() },
      { retry: { attempts: Number.POSITIVE_INFINITY, deadline: clock.now() + REPORT_RETRY_MS } },
    );
    log.info(failure ? 'Callback attempt failed' : 'Callback succeeded', {
      callbackId: workload.callback_id,
      kind: started.kind,
      attempt: started.attempt,
      state: answer.state,
    });
  } catch (error) {
    // The tick ends the attempt as lost once its timeout has passed, and retries it if it may.
    log.error('The report of a callback attempt could not be sent; the scheduler will take it as lost', {
      callbackId: workload.callback_id,
      attempt: started.attempt,
      error,
    });
  }
}

/** The attempt's output up to the limit, with a marker where it was cut. */
class CappedLog {
  readonly #limit: number;
  #text = '';
  #cut = false;

  constructor(limit: number) {
    this.#limit = limit;
  }

  append(text: string): void {
    if (this.#cut) return;
    const marker = '\n[log cut: the callback printed more than its log may hold]\n';
    const room = this.#limit - Buffer.byteLength(this.#text) - Buffer.byteLength(marker);
    if (Buffer.byteLength(text) <= room) {
      this.#text += text;
      return;
    }
    this.#text +=
      Buffer.from(text)
        .subarray(0, Math.max(0, room))
        .toString('utf8')
        .replace(/\uFFFD$/, '') + marker;
    this.#cut = true;
  }

  text(): string {
    return this.#text;
  }
}
