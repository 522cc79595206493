import { AsyncLocalStorage } from 'node:async_hooks';
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
 * Inside `collect`, requests are gathered instead and sent when its work is done.
 */
export class SchedulingNotifier {
  readonly #queue: Queue;
  readonly #onError: (error: unknown) => void;
  #pending: PendingRequests = new Map();
  /** The requests gathered by the `collect` call the current code runs in, if any. */
  readonly #collecting = new AsyncLocalStorage<{ requests: PendingRequests; open: boolean }>();
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
    const collecting = this.#collecting.getStore();
    if (collecting?.open) {
      addRequest(collecting.requests, run);
      return Promise.resolve();
    }
    addRequest(this.#pending, run);
    if (this.#scheduled === null) {
      const flush = new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.#flush());
      this.#scheduled = flush;
      this.#inFlight.add(flush);
      void flush.finally(() => this.#inFlight.delete(flush));
    }
    return this.#scheduled;
  }

  /**
   * Runs `work` with every request it makes (in any of its async continuations) gathered instead
   * of sent: `notify` resolves at once there, and the gathered requests, coalesced per run, leave
   * together once `work` settles, before `collect` does. A batch of calls served side by side
   * thus sends one request per run instead of one per call.
   */
  async collect<T>(work: () => Promise<T>): Promise<T> {
    const gathered = { requests: new Map() as PendingRequests, open: true };
    try {
      return await this.#collecting.run(gathered, work);
    } finally {
      // A continuation of `work` still running after it settled sends its requests itself.
      gathered.open = false;
      if (gathered.requests.size > 0) await this.#send(gathered.requests);
    }
  }

  /** Resolves once everything notified so far has been sent. */
  async drain(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight);
  }

  async #flush(): Promise<void> {
    const pending = this.#pending;
    this.#pending = new Map();
    this.#scheduled = null;
    await this.#send(pending);
  }

  async #send(pending: PendingRequests): Promise<void> {
    const runs = [...pending.values()];
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

/** Requests waiting to be sent, by run: the run and the TIs that changed in it. */
type PendingRequests = Map<string, { run: DagRunKey; changed: Map<string, TaskInstanceKey> }>;

function addRequest(pending: PendingRequests, run: DagRunKey | TaskInstanceKey): void {
  const id = `${run.dagId}\u0000${run.runId}`;
  let entry = pending.get(id);
  if (!entry) {
    entry = { run: { dagId: run.dagId, runId: run.runId }, changed: new Map() };
    pending.set(id, entry);
  }
  if ('taskId' in run) {
    const { dagId, runId, taskId, mapIndex } = run;
    entry.changed.set(`${taskId}\u0000${mapIndex}`, { dagId, runId, taskId, mapIndex });
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
