import type { SchedulingRequest } from '#contracts/messages.ts';
import type { DagRunKey } from '#core/models.ts';
import type { Queue } from '#queue/port.ts';
import { sendAll } from '#queue/send.ts';

/**
 * Sends scheduling requests for runs whose task instances changed state, so the scheduler
 * queues the next tasks at once instead of at its next tick. Requests for the same run made
 * within one turn of the event loop are coalesced into one message and leave in batch calls.
 * `notify` resolves once the request was handed to the queue: a caller (an API call, a Lambda
 * invocation) awaits it before returning, so a frozen or recycled instance never loses it.
 */
export class SchedulingNotifier {
  readonly #queue: Queue;
  readonly #onError: (error: unknown) => void;
  #pending = new Map<string, DagRunKey>();
  /** The flush that will send what is pending now; null when nothing waits to be sent. */
  #scheduled: Promise<void> | null = null;
  readonly #inFlight = new Set<Promise<void>>();

  constructor(queue: Queue, onError: (error: unknown) => void) {
    this.#queue = queue;
    this.#onError = onError;
  }

  /**
   * Asks for `run` to be scheduled soon and resolves once the request is sent. Never rejects:
   * a request is a hint (the tick reconciles every active run), so a failed send is reported
   * to `onError` and the caller's state change stands.
   */
  notify(run: DagRunKey): Promise<void> {
    this.#pending.set(`${run.dagId}\u0000${run.runId}`, { dagId: run.dagId, runId: run.runId });
    if (this.#scheduled === null) {
      const flush = new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.#flush());
      this.#scheduled = flush;
      this.#inFlight.add(flush);
      void flush.finally(() => this.#inFlight.delete(flush));
    }
    return this.#scheduled;
  }

  /** Resolves once everything notified so far has been sent. */
  async drain(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight);
  }

  async #flush(): Promise<void> {
    const runs = [...this.#pending.values()];
    this.#pending = new Map();
    this.#scheduled = null;
    try {
      await sendAll(
        this.#queue,
        runs.map((run) => {
          const body: SchedulingRequest = { type: 'schedule_run', dag_id: run.dagId, run_id: run.runId };
          return { body: JSON.stringify(body) };
        }),
      );
    } catch (error) {
      this.#onError(error);
    }
  }
}
