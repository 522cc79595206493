import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import type { InMemoryQueue } from '#queue/memory.ts';
import { lambdaContext, sqsEvent } from '../test/support/lambda-events.ts';
import type { FakeAws } from './aws-fakes.ts';

type Handler<E, R> = (event: E, context: Context) => Promise<R>;

/**
 * Invocations per function and their durations, measured in this process around the handler
 * call (`performance.now()`), as Lambda would bill them: each rounded up to the millisecond.
 */
export class LambdaMeter {
  #durations = new Map<string, number[]>();
  active = false;
  /** Invocations running now, metered or not: the run is quiet when this is 0 and the queues are empty. */
  inFlight = 0;

  wrap<E, R>(name: string, handler: Handler<E, R>): Handler<E, R> {
    return async (event, context) => {
      const metered = this.active;
      this.inFlight += 1;
      const start = performance.now();
      try {
        return await handler(event, context);
      } finally {
        this.inFlight -= 1;
        if (metered) {
          const list = this.#durations.get(name) ?? [];
          list.push(performance.now() - start);
          this.#durations.set(name, list);
        }
      }
    };
  }

  /** Durations in ms by function so far, and a fresh start. */
  take(): Record<string, number[]> {
    const taken = Object.fromEntries(this.#durations);
    this.#durations = new Map();
    return taken;
  }
}

/**
 * A function's warm instances: an invocation takes an idle one or starts another, since Lambda
 * runs one invocation at a time in an instance. Calls made at once (a worker's batch reporting
 * side by side) so land on instances of their own, each with its own memory (a notifier's
 * coalescing cannot reach across them).
 */
export function instancePool<E, R>(start: () => Handler<E, R>): Handler<E, R> {
  const idle: Handler<E, R>[] = [];
  return async (event, context) => {
    const instance = idle.pop() ?? start();
    try {
      return await instance(event, context);
    } finally {
      idle.push(instance);
    }
  };
}

export interface EventSourceOptions {
  queue: InMemoryQueue;
  functionName: string;
  /** One per concurrent invocation the mapping may run (each its own function instance). */
  handlers: Handler<SQSEvent, SQSBatchResponse>[];
  batchSize: number;
  maxBatchingWindowMs: number;
}

/**
 * The SQS event source mappings, as Lambda runs them: a poller per allowed concurrent
 * invocation gathers up to `batchSize` records or until the batching window closes, invokes,
 * and deletes what the partial batch response does not name. Each invocation is counted as one
 * ReceiveMessage and (when any record succeeded) one DeleteMessageBatch, the SQS requests
 * Lambda's pollers make on the account's bill; their empty long-polls while the queue is idle
 * are a fixed cost, estimated elsewhere. A failed record is left to come back (made visible at
 * once here, time compressed), as Lambda leaves it to its visibility timeout.
 */
export class EventSources {
  readonly #stop = new AbortController();
  readonly #loops: Promise<void>[] = [];
  readonly #fake: FakeAws;
  batchItemFailures = 0;

  constructor(fake: FakeAws) {
    this.#fake = fake;
  }

  start(mappings: EventSourceOptions[]): void {
    for (const mapping of mappings) {
      for (const handler of mapping.handlers) this.#loops.push(this.#poll(mapping, handler));
    }
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await Promise.all(this.#loops);
  }

  async #poll(mapping: EventSourceOptions, handler: Handler<SQSEvent, SQSBatchResponse>): Promise<void> {
    const { queue, batchSize } = mapping;
    const signal = this.#stop.signal;
    const receive = (maxMessages: number, waitTimeMs: number) =>
      queue.receive({ maxMessages, waitTimeMs, visibilityTimeoutSeconds: 300, signal });
    while (!signal.aborted) {
      const batch = await receive(batchSize, 200);
      if (batch.length === 0) continue;
      const windowEnds = performance.now() + mapping.maxBatchingWindowMs;
      while (batch.length < batchSize && !signal.aborted) {
        const left = windowEnds - performance.now();
        if (left <= 0) break;
        batch.push(...(await receive(batchSize - batch.length, left)));
      }
      this.#fake.count('ReceiveMessage', queue.name, batch.length);
      let failed: Set<string>;
      try {
        const response = await handler(sqsEvent(queue.name, batch), lambdaContext(mapping.functionName));
        failed = new Set(response.batchItemFailures.map((failure) => failure.itemIdentifier));
      } catch {
        failed = new Set(batch.map((message) => message.messageId));
      }
      this.batchItemFailures += failed.size;
      const done = batch.filter((message) => !failed.has(message.messageId));
      for (const message of batch) {
        if (failed.has(message.messageId)) await queue.changeVisibility(message.receiptHandle, 0);
      }
      if (done.length > 0) {
        this.#fake.count('DeleteMessageBatch', queue.name, done.length);
        await queue.delete(done.map((message) => message.receiptHandle));
      }
    }
  }
}
