import { SCHEDULING_REQUEST_MAX_TASK_INSTANCES, type SchedulingRequest } from '#contracts/messages.ts';
import type { DagRunKey, TaskInstanceKey } from '#core/models.ts';
import type { Queue } from '#queue/port.ts';
import { sendAll } from '#queue/send.ts';

/**
 * Sends scheduling requests for runs whose task instances changed state, so the scheduler
 * queues the next tasks at once instead of at its next tick. Requests for the same run made
 * within one turn of the event loop are coalesced into one message (naming the TIs that changed,
 * which the pass reads first) and leave in batch calls.
 * `notify` resolves once the request was handed to the queue: a caller (an API call, a Lambda
 * invocation) awaits it before returning, so a frozen or recycled instance never loses it.
 */
export class SchedulingNotifier {
  readonly #queue: Queue;
  readonly #onError: (error: unknown) => void;
  #pending = new Map<string, { run: DagRunKey; changed: Map<string, TaskInstanceKey> }>();
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
  notify(run: DagRunKey | TaskInstanceKey): Promise<void> {
    const id = `${run.dagId}\u0000${run.runId}`;
    let pending = this.#pending.get(id);
    if (!pending) {
      pending = { run: { dagId: run.dagId, runId: run.runId }, changed: new Map() };
      this.#pending.set(id, pending);
    }
    if ('taskId' in run) {
      const { dagId, runId, taskId, mapIndex } = run;
      pending.changed.set(`${taskId}\u0000${mapIndex}`, { dagId, runId, taskId, mapIndex });
    }
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
        runs.flatMap(({ run, changed }) =>
          schedulingRequestsFor(run, [...changed.values()]).map((body) => ({ body: JSON.stringify(body) })),
        ),
      );
    } catch (error) {
      this.#onError(error);
    }
  }
}

/** The requests for one run: one naming no TI, or as many as it takes to name each changed TI. */
export function schedulingRequestsFor(
  run: DagRunKey,
  changed: readonly TaskInstanceKey[],
): SchedulingRequest[] {
  const base: SchedulingRequest = { type: 'schedule_run', dag_id: run.dagId, run_id: run.runId };
  if (changed.length === 0) return [base];
  const requests: SchedulingRequest[] = [];
  for (let start = 0; start < changed.length; start += SCHEDULING_REQUEST_MAX_TASK_INSTANCES) {
    const task_instances = changed
      .slice(start, start + SCHEDULING_REQUEST_MAX_TASK_INSTANCES)
      .map((ti) => ({ task_id: ti.taskId, map_index: ti.mapIndex }));
    requests.push({ ...base, task_instances });
  }
  return requests;
}
