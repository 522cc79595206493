import type { DagRunKey } from '#core/models.ts';
import type { Queue } from '#queue/port.ts';
import type { SchedulingRequest } from './messages.ts';

/**
 * Sends scheduling requests for runs whose task instances changed state, so the scheduler
 * queues the next tasks at once instead of at its next tick. Requests for the same run made
 * within one turn of the event loop are coalesced into one message, and all pending messages
 * leave in batch calls: a burst of 100 finishing tasks costs a handful of queue operations.
 */
export class SchedulingNotifier {
  readonly #queue: Queue;
  readonly #onError: (error: unknown) => void;
  #pending = new Map<string, DagRunKey>();
  #flushing: Promise<void> | null = null;

  constructor(queue: Queue, onError: (error: unknown) => void) {
    this.#queue = queue;
    this.#onError = onError;
  }

  /** Asks for `run` to be scheduled soon; never throws (queues are hints, the tick reconciles). */
  notify(run: DagRunKey): void {
    this.#pending.set(`${run.dagId}\u0000${run.runId}`, { dagId: run.dagId, runId: run.runId });
    if (this.#flushing === null) {
      this.#flushing = new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.#flush());
    }
  }

  /** Resolves once everything notified so far has been sent. */
  async drain(): Promise<void> {
    while (this.#flushing !== null) await this.#flushing;
  }

  async #flush(): Promise<void> {
    const runs = [...this.#pending.values()];
    this.#pending = new Map();
    try {
      await this.#queue.send(
        runs.map((run) => {
          const body: SchedulingRequest = { type: 'schedule_run', dag_id: run.dagId, run_id: run.runId };
          return { body: JSON.stringify(body) };
        }),
      );
    } catch (error) {
      this.#onError(error);
    } finally {
      this.#flushing = null;
      if (this.#pending.size > 0) this.notify([...this.#pending.values()][0] as DagRunKey);
    }
  }
}
