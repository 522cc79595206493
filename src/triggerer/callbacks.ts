import { CALLBACK_CLAIM_MAX } from '#contracts/callbacks.ts';
import type { CallbackWorkload } from '#contracts/messages.ts';
import type { Logger } from '#engine/logger.ts';
import type { Metrics } from '#metrics/port.ts';
import { type CallbackExecutor, runCallbackWorkload } from '#worker/callback-pool.ts';
import type { WorkerClock } from '#worker/clock.ts';
import type { ExecutionClient } from '#worker/execution-client.ts';
import type { CallOptions } from './client.ts';

export interface TriggererCallbacksOptions {
  /** Claims callbacks for the triggerer's job. */
  claim: (limit: number, options: CallOptions) => Promise<CallbackWorkload[]>;
  /** Starts and reports attempts under each workload's callback token, as a worker does. */
  execution: Pick<ExecutionClient, 'startCallback' | 'finishCallback'>;
  /** Runs an attempt's code in this process's event loop. */
  executor: CallbackExecutor;
  /** Attempts run at once (UPDRAFT_TRIGGERER_CALLBACK_CAPACITY). */
  capacity: number;
  log: Logger;
  clock: WorkerClock;
  metrics?: Metrics | undefined;
  callTimeoutMs: number;
}

/**
 * The triggerer's callback lane: async callbacks placed on a triggerer (docs/callbacks.md) run
 * here, many at once in the event loop, beside the triggers. The triggerer claims them with its
 * job's token; each attempt then starts, runs and reports exactly as on a worker
 * (`runCallbackWorkload`): the start is one conditional write, so a claim that went stale (the
 * store gave the callback to another triggerer after the queued timeout) starts nothing.
 */
export class TriggererCallbacks {
  readonly #options: TriggererCallbacksOptions;
  readonly #running = new Set<Promise<void>>();
  /** Aborted by `stop()`: attempts in flight are stopped (handed back, or abandoned). */
  readonly #stop = new AbortController();
  /** Set by a stop that is not graceful: attempts in flight end without a report, as in a crash. */
  #abandoned = false;
  /** Set by any stop: nothing more is claimed. */
  #stopping = false;

  constructor(options: TriggererCallbacksOptions) {
    this.#options = options;
  }

  get running(): number {
    return this.#running.size;
  }

  /** Claims as many callbacks as there is room for, and starts them (without waiting for them). */
  async claim(workerId: string, signal: AbortSignal): Promise<number> {
    const free = Math.min(CALLBACK_CLAIM_MAX, this.#options.capacity - this.#running.size);
    if (free <= 0 || this.#stopping) return 0;
    const workloads = await this.#options.claim(free, {
      retry: { attempts: 1 },
      timeoutMs: this.#options.callTimeoutMs,
      signal,
    });
    for (const workload of workloads) {
      // Stopped while the claim was on its way: each claim lapses and is claimed again later.
      if (this.#stopping) break;
      const done: Promise<void> = runCallbackWorkload(workload, {
        client: this.#options.execution,
        executor: this.#options.executor,
        workerId,
        log: this.#options.log,
        clock: this.#options.clock,
        signal: this.#stop.signal,
        reports: () => !this.#abandoned,
      })
        .catch((error: unknown) => {
          // The start was not answered: the claim lapses after the queued timeout and the
          // callback is claimed again.
          this.#options.log.warn('A claimed callback could not be started; it is claimed again later', {
            callbackId: workload.callback_id,
            error,
          });
        })
        .finally(() => this.#running.delete(done));
      this.#running.add(done);
    }
    if (workloads.length > 0)
      this.#options.metrics?.increment('triggerer.callbacks_claimed', workloads.length);
    return workloads.length;
  }

  /**
   * Stops the attempts in flight. Graceful: they get until `deadlineMs` less a second to end on
   * their own, then are stopped and handed back unfinished (they run again at once elsewhere, not
   * counted as attempts), and the stop waits for those reports until `deadlineMs`. Otherwise they
   * end unreported, as in a crash: the tick takes each for lost after its timeout.
   */
  async stop(options: { graceful: boolean; deadlineMs: number }): Promise<void> {
    this.#stopping = true;
    if (!options.graceful) {
      this.#abandoned = true;
      this.#stop.abort();
      return;
    }
    await this.#waitForRunning(options.deadlineMs - 1_000);
    this.#stop.abort();
    await this.#waitForRunning(options.deadlineMs);
  }

  async #waitForRunning(untilMs: number): Promise<void> {
    if (this.#running.size === 0) return;
    const { clock } = this.#options;
    const waited = new AbortController();
    await Promise.race([
      Promise.allSettled([...this.#running]),
      clock.sleep(Math.max(0, untilMs - clock.now()), waited.signal),
    ]);
    waited.abort();
  }
}
