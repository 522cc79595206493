import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { TaskInstanceKey } from '#core/models.ts';
import type { Logger } from '#engine/logger.ts';
import { type TaskWorkload, taskWorkloadSchema } from '#engine/messages.ts';
import type { MetricsRegistry } from '#metrics/registry.ts';
import type { Queue, ReceivedMessage } from '#queue/port.ts';
import { ExecutionApiError, type ExecutionClient, type FinishBody } from './execution-client.ts';
import type { RunnerOutcome } from './protocol.ts';
import { DeleteBatcher, LogBuffer, toFinishBody } from './reports.ts';
import { RunnerProcess } from './runner-process.ts';

const MAX_BATCH = 10;
const LONG_POLL_MS = 10_000;
/** How long a busy pool waits for more free slots before receiving. */
const REFILL_WAIT_MS = 5;

interface Received {
  queue: Queue;
  message: ReceivedMessage;
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
  heartbeatIntervalMs: number;
  shutdownGraceMs: number;
  metrics: MetricsRegistry;
  log: Logger;
  cwd?: string;
}

/**
 * The standalone executor: N slots, each running one try at a time in its own task runner
 * process. It takes workloads from the task queues (highest priority first), starts the TI
 * through the Execution API, heartbeats while the task runs (carrying its log output), and
 * reports the outcome. Once a TI is running, the store owns it (heartbeats, zombie detection),
 * so the queue message is deleted right after the start instead of being held for the whole try.
 */
export class WorkerPool {
  readonly #options: WorkerPoolOptions;
  readonly #workerId = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  readonly #idle: RunnerProcess[] = [];
  readonly #running = new Map<string, { stop: AbortController; done: Promise<void> }>();
  #stopping = false;
  #loop: Promise<void> | null = null;
  #loopAbort = new AbortController();
  #slotFreed: (() => void) | null = null;
  readonly #deletes = new DeleteBatcher();
  readonly #polls = new Map<Queue, Poll>();

  constructor(options: WorkerPoolOptions) {
    this.#options = options;
    options.metrics.addSource(() => ({
      'executor.open_slots': options.slots - this.#running.size,
      'executor.running_tasks': this.#running.size,
    }));
  }

  get workerId(): string {
    return this.#workerId;
  }

  /** Starts one task runner process per slot up front, then takes work. */
  start(): void {
    if (this.#loop === null) {
      for (let slot = this.#idle.length; slot < this.#options.slots; slot += 1) {
        this.#idle.push(new RunnerProcess({ cwd: this.#options.cwd ?? process.cwd() }));
      }
    }
    this.#loop ??= this.#receiveLoop().catch((error: unknown) => {
      this.#options.log.error('Worker receive loop stopped', { error });
    });
  }

  /** Stops taking work, lets running tries finish for the grace period, then hands the rest back. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#loopAbort.abort();
    await this.#loop;
    await Promise.all([...this.#polls.values()].map((poll) => poll.answered));
    await this.#release(this.#harvest(this.#options.queues), 0);
    const running = [...this.#running.values()];
    const grace = new Promise((resolve) => setTimeout(resolve, this.#options.shutdownGraceMs).unref());
    await Promise.race([Promise.all(running.map((entry) => entry.done)), grace]);
    for (const entry of this.#running.values()) entry.stop.abort('handed_back');
    await Promise.all([...this.#running.values()].map((entry) => entry.done));
    for (const runner of this.#idle.splice(0)) runner.kill();
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
      for (const { queue, message } of messages) this.#launch(queue, message);
    }
  }

  /** Resolves when a slot frees up, or after `timeoutMs` when given. */
  #slotFree(timeoutMs?: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = timeoutMs === undefined ? undefined : setTimeout(resolve, timeoutMs);
      this.#slotFreed = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Up to `max` ready messages, taking from higher-priority queues first, without waiting. */
  async #probe(queues: readonly Queue[], max: number): Promise<Received[]> {
    const taken: Received[] = [];
    for (const queue of queues) {
      if (taken.length >= max) break;
      const messages = await queue.receive({
        maxMessages: Math.min(MAX_BATCH, max - taken.length),
        waitTimeMs: 0,
      });
      for (const message of messages) taken.push({ queue, message });
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
            poll.result = messages.map((message) => ({ queue, message }));
          },
          (error: unknown) => {
            poll.result = [];
            this.#options.log.warn('Receiving task workloads failed', { queue: queue.name, error });
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
    for (const extra of received.slice(max))
      await extra.queue.changeVisibility(extra.message.receiptHandle, 0);
    return received.slice(0, max);
  }

  #launch(queue: Queue, message: ReceivedMessage): void {
    const stop = new AbortController();
    const id = message.messageId;
    const done = this.#execute(queue, message, stop)
      .catch((error: unknown) => this.#options.log.error('Running a workload failed', { error }))
      .finally(() => {
        this.#running.delete(id);
        const wake = this.#slotFreed;
        this.#slotFreed = null;
        wake?.();
      });
    this.#running.set(id, { stop, done });
  }

  async #execute(queue: Queue, message: ReceivedMessage, stop: AbortController): Promise<void> {
    const { client, log } = this.#options;
    let workload: TaskWorkload;
    try {
      workload = taskWorkloadSchema.parse(JSON.parse(message.body));
    } catch (error) {
      log.error('Dropping a malformed task workload', { messageId: message.messageId, error });
      await queue.delete([message.receiptHandle]);
      return;
    }
    const key: TaskInstanceKey = {
      dagId: workload.ti.dag_id,
      runId: workload.ti.run_id,
      taskId: workload.ti.task_id,
      mapIndex: workload.ti.map_index,
    };
    let started: Awaited<ReturnType<ExecutionClient['start']>>;
    try {
      started = await client.start(workload.token, key, {
        hostname: hostname(),
        worker_id: this.#workerId,
        pid: process.pid,
      });
    } catch (error) {
      if (error instanceof ExecutionApiError && !error.isConflict && error.status >= 500) throw error;
      // A conflict means another delivery already started it, or the TI moved on: the message is spent.
      log.debug('Workload not started', { ti: key, error });
      await queue.delete([message.receiptHandle]);
      return;
    }
    // The start made the store the owner of this try; the delete need not hold up the task.
    this.#deletes.delete(queue, message.receiptHandle).catch((error: unknown) => {
      log.warn('Deleting a started workload failed; its redelivery will be refused', { error });
    });

    const logs = new LogBuffer();
    const heartbeat = setInterval(() => {
      client.heartbeat(workload.token, key, logs.take()).catch((error: unknown) => {
        if (error instanceof ExecutionApiError && error.isConflict) {
          log.warn('Task instance is no longer running here; stopping the try', { ti: key });
          stop.abort('The task instance left the running state (cleared or failed elsewhere)');
        }
      });
    }, this.#options.heartbeatIntervalMs);
    const timeout =
      started.execution_timeout_ms === null
        ? undefined
        : setTimeout(
            () =>
              stop.abort(`Task exceeded its execution timeout of ${started.execution_timeout_ms! / 1000}s`),
            started.execution_timeout_ms,
          );
    let outcome: RunnerOutcome;
    try {
      const args = await Promise.all(
        started.args.map(async (arg) => {
          const text = await client.getXCom(
            workload.token,
            { ...key, taskId: arg.task_id, mapIndex: -1 },
            arg.key,
          );
          return text === undefined ? null : (JSON.parse(text) as unknown);
        }),
      );
      outcome = await this.#runInProcess(workload, started, args, logs, stop.signal);
    } catch (error) {
      outcome = { kind: 'error', message: (error as Error).message };
    } finally {
      if (stop.signal.aborted && stop.signal.reason !== 'handed_back') {
        logs.add(`[${new Date().toISOString()}] {ERROR} ${String(stop.signal.reason)}\n`);
      }
      clearInterval(heartbeat);
      clearTimeout(timeout);
    }
    const handedBack = stop.signal.aborted && stop.signal.reason === 'handed_back';
    await this.#report(
      workload.token,
      key,
      handedBack ? { state: 'handed_back' } : toFinishBody(outcome),
      logs,
    );
  }

  async #runInProcess(
    workload: TaskWorkload,
    started: Awaited<ReturnType<ExecutionClient['start']>>,
    args: unknown[],
    logs: LogBuffer,
    signal: AbortSignal,
  ): Promise<RunnerOutcome> {
    let runner = this.#idle.pop();
    while (runner && !runner.usable) runner = this.#idle.pop();
    runner ??= new RunnerProcess({ cwd: this.#options.cwd ?? process.cwd() });
    const key = {
      dagId: started.dag_id,
      runId: started.dag_run_id,
      taskId: started.task_id,
      mapIndex: started.map_index,
    };
    const outcome = await runner.run(
      join(this.#options.dagsFolder, workload.fileloc),
      {
        dagId: started.dag_id,
        runId: started.dag_run_id,
        taskId: started.task_id,
        mapIndex: started.map_index,
        tryNumber: started.try_number,
        maxTries: started.max_tries,
        logicalDate: started.logical_date,
        dataIntervalStart: started.data_interval_start,
        dataIntervalEnd: started.data_interval_end,
        params: started.params,
        conf: started.conf,
      },
      args,
      {
        onLog: (text) => logs.add(text),
        pullXCom: async (taskId, xcomKey) => {
          const text = await this.#options.client.getXCom(
            workload.token,
            { ...key, taskId, mapIndex: -1 },
            xcomKey,
          );
          return text === undefined ? null : (JSON.parse(text) as unknown);
        },
        signal,
      },
      { fileloc: workload.fileloc, versionHash: workload.dag_version },
    );
    if (runner.usable) this.#idle.push(runner);
    else runner.kill();
    return outcome;
  }

  async #report(token: string, key: TaskInstanceKey, body: FinishBody, logs: LogBuffer): Promise<void> {
    const { client, log } = this.#options;
    try {
      await client.finish(token, key, { ...body, logs: logs.take() });
    } catch (error) {
      if (error instanceof ExecutionApiError && error.status === 413 && body.state === 'success') {
        await client.finish(token, key, { state: 'failed', error_message: error.message, retryable: false });
        return;
      }
      if (error instanceof ExecutionApiError && error.isConflict) {
        log.warn('Outcome not recorded: the task instance already left the running state', { ti: key });
        return;
      }
      throw error;
    }
  }
}
