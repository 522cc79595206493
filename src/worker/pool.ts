import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { type TaskWorkload, taskWorkloadSchema } from '#contracts/messages.ts';
import type { Logger } from '#engine/logger.ts';
import type { MetricsRegistry } from '#metrics/registry.ts';
import { DeleteBatcher } from '#queue/delete-batcher.ts';
import { MAX_BATCH, type Queue, type ReceivedMessage } from '#queue/port.ts';
import { systemClock, type WorkerClock } from './clock.ts';
import type { ExecutionClient } from './execution-client.ts';
import { ProcessTaskExecutor, type TaskExecutor } from './executor.ts';
import { runWorkload, type WorkloadDeps } from './run-workload.ts';

const LONG_POLL_MS = 10_000;
/**
 * Started workloads' messages are deleted together, at most this long after they were received
 * (a try that takes longer to start is deleted at once after): a started try's redelivery is
 * refused anyway, and this is far below the smallest visibility timeout (1 s).
 */
const WORKLOAD_DELETE_DELAY_MS = 250;
/** How long a queue whose receive failed is left alone (no probe, no new long-poll). */
const RECEIVE_RETRY_MS = 1_000;
/** How long a busy pool waits for more free slots before receiving. */
const REFILL_WAIT_MS = 5;

interface Received {
  queue: Queue;
  message: ReceivedMessage;
  /** When the receive answered (epoch ms): about when the message's visibility timeout began. */
  receivedAt: number;
}

/** An outstanding long-poll on one queue; `result` is set once it answered. */
interface Poll {
  result: Received[] | null;
  answered: Promise<void>;
}

export interface WorkerPoolOptions {
  /** Task queues, highest priority first. */
  queues: readonly Queue[];
  client: ExecutionClient;
  slots: number;
  dagsFolder: string;
  /** Where the DAG versions' code bundles are (standalone: `<home>/bundles`); none: the DAG files on disk. */
  bundlesFolder?: string;
  heartbeatIntervalMs: number;
  /** The scheduler's zombie threshold; a try that cannot heartbeat for half of it is stopped. */
  heartbeatTimeoutMs: number;
  /** On stop, how long running tries may take to finish before they are handed back. */
  shutdownGraceMs: number;
  metrics: MetricsRegistry;
  log: Logger;
  cwd?: string;
  /** Memory limit of a try whose task sets none (UPDRAFT_TASK_MEMORY_LIMIT_MB); 0 or absent: none. */
  taskMemoryLimitMb?: number;
  /** Task runner processes kept beyond the slots (UPDRAFT_SPARE_TASK_RUNNERS). */
  spareRunners?: number;
  /** UPDRAFT_ALLOWED_DESERIALIZATION_CLASSES, for resumed tries. */
  allowedDeserializationClasses?: readonly string[];
  /** Called each time a workload ends (an `ExecutionBatcher` sends what waits: see its `check`). */
  onWorkloadEnd?: () => void;
  /** Runs the tries; default: task runner processes, one per slot. */
  executor?: TaskExecutor;
  clock?: WorkerClock;
}

/**
 * The standalone executor: N slots, each running one try at a time (in a task runner process
 * by default). It takes workloads from the task queues (highest priority first) and runs each
 * with `runWorkload`: start, heartbeat, report. Once a TI is running, the store owns it
 * (heartbeats, zombie detection), so the queue message is deleted once the try has started
 * (with the others received within `WORKLOAD_DELETE_DELAY_MS`, in one call) instead of being
 * held for the whole try.
 */
export class WorkerPool {
  readonly #options: WorkerPoolOptions;
  readonly #workerId = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  readonly #executor: TaskExecutor;
  readonly #processes: ProcessTaskExecutor | undefined;
  readonly #deps: WorkloadDeps;
  /**
   * Running work by launch, not by message id: a duplicated delivery of one message (SQS is
   * at-least-once) is a second entry, so neither copy escapes the slot count or the stop.
   */
  readonly #running = new Map<number, { stop: AbortController; done: Promise<void> }>();
  #launches = 0;
  #stopping = false;
  #loop: Promise<void> | null = null;
  #loopAbort = new AbortController();
  #slotFreed: (() => void) | null = null;
  readonly #deletes = new DeleteBatcher({
    delayMs: WORKLOAD_DELETE_DELAY_MS,
    onError: (error, count) =>
      this.#options.log.warn(
        `Deleting ${count} started workloads failed; their redeliveries will be refused`,
        { error },
      ),
  });
  readonly #polls = new Map<Queue, Poll>();
  /** Queues whose last receive failed, with when (performance.now()) a probe may ask them again. */
  readonly #retryAt = new Map<Queue, number>();

  constructor(options: WorkerPoolOptions) {
    this.#options = options;
    if (options.executor) this.#executor = options.executor;
    else {
      this.#processes = new ProcessTaskExecutor({
        dagsFolder: options.dagsFolder,
        bundlesFolder: options.bundlesFolder,
        cwd: options.cwd ?? process.cwd(),
        memoryLimitMb: options.taskMemoryLimitMb,
        spareRunners: options.spareRunners,
        allowedDeserializationClasses: options.allowedDeserializationClasses,
      });
      this.#executor = this.#processes;
    }
    this.#deps = {
      client: options.client,
      executor: this.#executor,
      clock: options.clock ?? systemClock,
      settings: {
        heartbeatIntervalMs: options.heartbeatIntervalMs,
        heartbeatTimeoutMs: options.heartbeatTimeoutMs,
      },
      log: options.log,
      metrics: options.metrics,
      worker: { hostname: hostname(), workerId: this.#workerId, pid: process.pid },
    };
    options.metrics.addSource(() => ({
      'executor.open_slots': options.slots - this.#running.size,
      'executor.running_tasks': this.#running.size,
    }));
  }

  /** Workloads running now, one per busy slot. */
  get runningCount(): number {
    return this.#running.size;
  }

  get workerId(): string {
    return this.#workerId;
  }

  /** Starts one task runner process per slot up front, then takes work. */
  start(): void {
    if (this.#stopping) return;
    if (this.#loop === null) this.#processes?.warm(this.#options.slots);
    this.#loop ??= this.#receiveLoop().catch((error: unknown) => {
      this.#options.log.error('Worker receive loop stopped', { error });
    });
  }

  /**
   * Stops taking work at once, lets running tries finish for the grace period, then hands the
   * rest back (their tasks are aborted and reported `handed_back`). Nothing here waits for a
   * free slot; what follows the grace is the runner's cancel grace and the hand-back reports.
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#loopAbort.abort();
    await this.#loop;
    await Promise.all([...this.#polls.values()].map((poll) => poll.answered));
    await this.#release(this.#harvest(this.#options.queues), 0);
    const running = [...this.#running.values()];
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise((resolve) => {
      timer = setTimeout(resolve, this.#options.shutdownGraceMs);
    });
    await Promise.race([Promise.all(running.map((entry) => entry.done)), grace]);
    clearTimeout(timer);
    for (const entry of this.#running.values()) entry.stop.abort('handed_back');
    await Promise.all([...this.#running.values()].map((entry) => entry.done));
    await this.#deletes.flush();
    this.#processes?.close();
  }

  async #receiveLoop(): Promise<void> {
    const { queues, slots } = this.#options;
    let probe = true;
    while (!this.#stopping) {
      if (slots - this.#running.size <= 0) await this.#slotFree();
      // Let a few more slots free up before receiving, so one receive brings several workloads.
      if (slots - this.#running.size < Math.ceil(slots / 2)) await this.#slotFree(REFILL_WAIT_MS);
      const free = slots - this.#running.size;
      if (free <= 0) continue;
      const messages = await this.#release(this.#harvest(queues), free);
      if (probe && messages.length < free)
        messages.push(...(await this.#probe(queues, free - messages.length)));
      if (messages.length === 0 && !this.#stopping) messages.push(...(await this.#longPoll(queues, free)));
      // Probe again only when a receive came back full: more may be waiting behind it.
      probe = messages.length >= Math.min(MAX_BATCH, free);
      // A stop that began while receiving: nothing new starts, the messages go back at once.
      if (this.#stopping) await this.#release(messages, 0);
      else for (const received of messages) this.#launch(received);
    }
  }

  /** Resolves when a slot frees up, when the pool stops, or after `timeoutMs` when given. */
  #slotFree(timeoutMs?: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const stopped = this.#loopAbort.signal;
      const done = () => {
        clearTimeout(timer);
        stopped.removeEventListener('abort', done);
        if (this.#slotFreed === done) this.#slotFreed = null;
        resolve();
      };
      const timer = timeoutMs === undefined ? undefined : setTimeout(done, timeoutMs);
      if (stopped.aborted) return done();
      stopped.addEventListener('abort', done, { once: true });
      this.#slotFreed = done;
    });
  }

  /** Up to `max` ready messages, taking from higher-priority queues first, without waiting. */
  async #probe(queues: readonly Queue[], max: number): Promise<Received[]> {
    const taken: Received[] = [];
    for (const queue of queues) {
      if (taken.length >= max) break;
      if ((this.#retryAt.get(queue) ?? 0) > performance.now()) continue;
      let messages: ReceivedMessage[];
      try {
        messages = await queue.receive({
          maxMessages: Math.min(MAX_BATCH, max - taken.length),
          waitTimeMs: 0,
        });
      } catch (error) {
        // The other queues are still asked; this one is not, for a pause (its long-poll neither).
        this.#options.log.warn('Receiving task workloads failed', { queue: queue.name, error });
        this.#retryAt.set(queue, performance.now() + RECEIVE_RETRY_MS);
        continue;
      }
      const receivedAt = Date.now();
      for (const message of messages) taken.push({ queue, message, receivedAt });
    }
    return taken;
  }

  /**
   * Waits until a long-poll on any task queue answers. Each queue keeps at most one long-poll
   * outstanding across rounds: an idle queue costs one receive per long-poll period, not one per
   * workload that arrives on another queue.
   */
  async #longPoll(queues: readonly Queue[], max: number): Promise<Received[]> {
    for (const queue of queues) {
      if (this.#polls.has(queue)) continue;
      const poll: Poll = { result: null, answered: Promise.resolve() };
      poll.answered = queue
        .receive({
          maxMessages: Math.min(MAX_BATCH, max),
          waitTimeMs: LONG_POLL_MS,
          signal: this.#loopAbort.signal,
        })
        .then(
          (messages) => {
            const receivedAt = Date.now();
            poll.result = messages.map((message) => ({ queue, message, receivedAt }));
          },
          async (error: unknown) => {
            this.#options.log.warn('Receiving task workloads failed', { queue: queue.name, error });
            this.#retryAt.set(queue, performance.now() + RECEIVE_RETRY_MS);
            // A queue that fails at once would otherwise be asked again at once, round after round.
            await sleep(RECEIVE_RETRY_MS, undefined, { signal: this.#loopAbort.signal }).catch(() => {});
            poll.result = [];
          },
        );
      this.#polls.set(queue, poll);
    }
    await Promise.race([...this.#polls.values()].map((poll) => poll.answered));
    return this.#release(this.#harvest(queues), max);
  }

  /** Messages of the long-polls that have answered, highest-priority queue first. */
  #harvest(queues: readonly Queue[]): Received[] {
    const taken: Received[] = [];
    for (const queue of queues) {
      const result = this.#polls.get(queue)?.result;
      if (!result) continue;
      this.#polls.delete(queue);
      taken.push(...result);
    }
    return taken;
  }

  /** Keeps `max` messages and makes the rest visible again at once for the next receive. */
  async #release(received: Received[], max: number): Promise<Received[]> {
    for (const extra of received.slice(max)) {
      await extra.queue.changeVisibility(extra.message.receiptHandle, 0).catch((error: unknown) => {
        this.#options.log.warn(
          'Releasing a received workload failed; it comes back after its visibility timeout',
          { queue: extra.queue.name, error },
        );
      });
    }
    return received.slice(0, max);
  }

  #launch(received: Received): void {
    const stop = new AbortController();
    this.#launches += 1;
    const id = this.#launches;
    // Counted as running before its first call leaves, and so are the others of its receive
    // (launched in the same turn; each begins a microtask later): a batcher that waits for every
    // running workload's call sends their starts together.
    const entry = { stop, done: Promise.resolve() };
    this.#running.set(id, entry);
    entry.done = Promise.resolve()
      .then(() => this.#execute(received, stop))
      .catch((error: unknown) => this.#options.log.error('Running a workload failed', { error }))
      .finally(() => {
        this.#running.delete(id);
        this.#options.onWorkloadEnd?.();
        const wake = this.#slotFreed;
        this.#slotFreed = null;
        wake?.();
      });
  }

  async #execute({ queue, message, receivedAt }: Received, stop: AbortController): Promise<void> {
    const { log } = this.#options;
    let workload: TaskWorkload;
    try {
      workload = taskWorkloadSchema.parse(JSON.parse(message.body));
    } catch (error) {
      log.error('Dropping a malformed task workload', { messageId: message.messageId, error });
      await queue.delete([message.receiptHandle]);
      return;
    }
    const result = await runWorkload(this.#deps, workload, {
      signal: stop.signal,
      // The start made the store the owner of this try; the delete need not hold up the task.
      onStarted: () => this.#deletes.delete(queue, message.receiptHandle, receivedAt),
    });
    if (!result.started && result.deleteMessage) await queue.delete([message.receiptHandle]);
    else if (!result.started && stop.signal.aborted) {
      // Stopped before the try started: the message goes back at once for another worker.
      await queue.changeVisibility(message.receiptHandle, 0).catch((error: unknown) => {
        log.warn(
          'Releasing a workload that was not started failed; it comes back after its visibility timeout',
          {
            error,
          },
        );
      });
    }
  }
}
