import { randomUUID } from 'node:crypto';
import type { Settings } from '#config/settings.ts';
import { MessageTooLargeError, QueueError } from './errors.ts';
import {
  MAX_BATCH,
  type OutgoingMessage,
  QUEUE_NAMES,
  type Queue,
  type QueueName,
  type ReceivedMessage,
  type ReceiveOptions,
  type SendResult,
} from './port.ts';
import { TimedHeap } from './timed-heap.ts';

/** SQS's largest delivery delay. */
const MAX_DELAY_SECONDS = 900;

/** The kinds counted by `operations()`, named after the SQS calls they stand for. */
export const QUEUE_OPERATION_KINDS = ['send', 'receive', 'delete', 'changeVisibility', 'stats'] as const;
export type QueueOperationKind = (typeof QUEUE_OPERATION_KINDS)[number];

export interface InMemoryQueueOptions {
  name: QueueName;
  visibilityTimeoutSeconds: number;
  /** Receives after which a message goes to `deadLetter`; without one, messages are redelivered forever, as on SQS without a redrive policy. */
  maxReceives: number;
  maxMessageBytes: number;
  deadLetter?: InMemoryQueue;
  /** Told of each message moved to the dead-letter queue, so it is logged and counted, never silent. */
  onDeadLetter?: (queue: QueueName, body: string) => void;
  clock?: { now(): number };
}

interface StoredMessage {
  readonly id: string;
  readonly body: string;
  state: 'ready' | 'delayed' | 'inFlight';
  receiveCount: number;
  /** The receipt of the latest receive; an older one no longer acts on the message. */
  receipt: string | null;
  /** Bumped on every visibility change, so heap entries of earlier ones are recognised as stale. */
  generation: number;
}

interface Waiter {
  readonly maxMessages: number;
  readonly visibilityTimeoutSeconds: number;
  readonly deadline: number;
  wakeAt: number;
  timer: ReturnType<typeof setTimeout> | undefined;
  readonly resolve: (messages: ReceivedMessage[]) => void;
  readonly detach: () => void;
}

/**
 * A queue with SQS semantics held in this process, for the standalone mode and tests: visibility
 * timeout, redelivery, receive counts, dead-lettering after `maxReceives`, delays and long-polling.
 * Visible messages are kept in arrival order, hidden ones (delayed or in flight) on a heap by the
 * time they become visible, so a receive costs the same with 10 or 100 000 messages waiting.
 * Long-polls hold one timer each and are woken by sends, never by polling.
 */
export class InMemoryQueue implements Queue {
  readonly name: QueueName;
  readonly #options: InMemoryQueueOptions;
  readonly #clock: { now(): number };
  readonly #messages = new Map<string, StoredMessage>();
  /** Visible messages in the order they became visible; a Map for O(1) removal by id. */
  readonly #ready = new Map<string, StoredMessage>();
  readonly #hidden = new TimedHeap<{ message: StoredMessage; generation: number }>();
  readonly #waiters = new Set<Waiter>();
  readonly #operations: Record<QueueOperationKind, number> = {
    send: 0,
    receive: 0,
    delete: 0,
    changeVisibility: 0,
    stats: 0,
  };
  #closed = false;

  constructor(options: InMemoryQueueOptions) {
    this.name = options.name;
    this.#options = options;
    this.#clock = options.clock ?? Date;
  }

  async send(messages: readonly OutgoingMessage[]): Promise<SendResult> {
    // Validate the whole batch first so a rejected send enqueues nothing.
    for (const message of messages) {
      const bytes = Buffer.byteLength(message.body, 'utf8');
      if (bytes > this.#options.maxMessageBytes) {
        throw new MessageTooLargeError(
          `A message of ${bytes} bytes is larger than the ${this.name} queue's limit of ` +
            `${this.#options.maxMessageBytes} bytes (UPDRAFT_QUEUE_MAX_MESSAGE_BYTES)`,
        );
      }
      const delay = message.delaySeconds ?? 0;
      if (!Number.isFinite(delay) || delay < 0 || delay > MAX_DELAY_SECONDS) {
        throw new QueueError(
          `A delay of ${delay} seconds on the ${this.name} queue is outside 0..${MAX_DELAY_SECONDS} seconds`,
        );
      }
    }
    this.#operations.send += Math.ceil(messages.length / MAX_BATCH);
    const now = this.#clock.now();
    for (const message of messages) this.#enqueue(message.body, (message.delaySeconds ?? 0) * 1000, now);
    this.#afterChange();
    return { failed: [] };
  }

  async receive(options: ReceiveOptions): Promise<ReceivedMessage[]> {
    this.#operations.receive += 1;
    if (this.#closed || options.signal?.aborted) return [];
    const maxMessages = Math.min(Math.max(Math.trunc(options.maxMessages), 1), MAX_BATCH);
    const visibilityTimeoutSeconds =
      options.visibilityTimeoutSeconds ?? this.#options.visibilityTimeoutSeconds;
    const now = this.#clock.now();
    const received = this.#take(maxMessages, visibilityTimeoutSeconds, now);
    if (received.length > 0 || options.waitTimeMs <= 0) return received;
    return this.#wait(maxMessages, visibilityTimeoutSeconds, now + options.waitTimeMs, options.signal);
  }

  async delete(receiptHandles: readonly string[]): Promise<void> {
    this.#operations.delete += Math.ceil(receiptHandles.length / MAX_BATCH);
    for (const receipt of receiptHandles) {
      const message = this.#byReceipt(receipt);
      if (!message) continue;
      this.#messages.delete(message.id);
      this.#ready.delete(message.id);
    }
  }

  async changeVisibility(receiptHandle: string, visibilityTimeoutSeconds: number): Promise<void> {
    this.#operations.changeVisibility += 1;
    const message = this.#byReceipt(receiptHandle);
    if (!message) return;
    this.#ready.delete(message.id);
    this.#hide(message, 'inFlight', this.#clock.now() + Math.max(0, visibilityTimeoutSeconds) * 1000);
    this.#afterChange();
  }

  async stats(): Promise<{ visible: number; inFlight: number; delayed: number }> {
    this.#operations.stats += 1;
    this.#promoteDue(this.#clock.now());
    let inFlight = 0;
    let delayed = 0;
    for (const message of this.#messages.values()) {
      if (message.state === 'inFlight') inFlight += 1;
      else if (message.state === 'delayed') delayed += 1;
    }
    return { visible: this.#ready.size, inFlight, delayed };
  }

  /** Calls made so far, by kind; `send` and `delete` count one per batch of up to 10, like SQS's batch calls. */
  operations(): Record<QueueOperationKind, number> {
    return { ...this.#operations };
  }

  /** Resolves every pending receive with no messages and makes later receives return at once. */
  close(): void {
    this.#closed = true;
    for (const waiter of [...this.#waiters]) this.#settle(waiter, []);
  }

  /** Also where dead-letter moves land; those count no operation, as SQS's redrive is not a call either. */
  #enqueue(body: string, delayMs: number, now: number): void {
    const message: StoredMessage = {
      id: randomUUID(),
      body,
      state: 'ready',
      receiveCount: 0,
      receipt: null,
      generation: 0,
    };
    this.#messages.set(message.id, message);
    if (delayMs > 0) this.#hide(message, 'delayed', now + delayMs);
    else this.#ready.set(message.id, message);
  }

  #hide(message: StoredMessage, state: 'delayed' | 'inFlight', visibleAt: number): void {
    message.state = state;
    message.generation += 1;
    this.#hidden.push(visibleAt, { message, generation: message.generation });
    // Stale entries (deleted messages, superseded visibility changes) must not pile up.
    if (this.#hidden.size > 2 * (this.#messages.size - this.#ready.size) + 64) {
      this.#hidden.retain((entry) => this.#isCurrent(entry));
    }
  }

  #isCurrent(entry: { message: StoredMessage; generation: number }): boolean {
    const { message, generation } = entry;
    return (
      message.state !== 'ready' &&
      message.generation === generation &&
      this.#messages.get(message.id) === message
    );
  }

  #promoteDue(now: number): void {
    for (let top = this.#hidden.peek(); top !== undefined && top.at <= now; top = this.#hidden.peek()) {
      this.#hidden.pop();
      if (!this.#isCurrent(top.value)) continue;
      top.value.message.state = 'ready';
      this.#ready.set(top.value.message.id, top.value.message);
    }
  }

  /** When the next hidden message becomes visible, or undefined when none is hidden. */
  #nextVisibleAt(): number | undefined {
    for (let top = this.#hidden.peek(); top !== undefined; top = this.#hidden.peek()) {
      if (this.#isCurrent(top.value)) return top.at;
      this.#hidden.pop();
    }
    return undefined;
  }

  #take(maxMessages: number, visibilityTimeoutSeconds: number, now: number): ReceivedMessage[] {
    this.#promoteDue(now);
    const received: ReceivedMessage[] = [];
    for (const message of this.#ready.values()) {
      if (received.length >= maxMessages) break;
      this.#ready.delete(message.id);
      const deadLetter = this.#options.deadLetter;
      if (deadLetter && message.receiveCount >= this.#options.maxReceives) {
        this.#messages.delete(message.id);
        deadLetter.#enqueue(message.body, 0, now);
        deadLetter.#afterChange();
        this.#options.onDeadLetter?.(this.name, message.body);
        continue;
      }
      message.receiveCount += 1;
      message.receipt = `${message.id}:${message.receiveCount}`;
      this.#hide(message, 'inFlight', now + visibilityTimeoutSeconds * 1000);
      received.push({
        messageId: message.id,
        receiptHandle: message.receipt,
        body: message.body,
        receiveCount: message.receiveCount,
      });
    }
    return received;
  }

  #byReceipt(receipt: string): StoredMessage | undefined {
    const id = receipt.slice(0, receipt.lastIndexOf(':'));
    const message = this.#messages.get(id);
    return message?.receipt === receipt ? message : undefined;
  }

  #wait(
    maxMessages: number,
    visibilityTimeoutSeconds: number,
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<ReceivedMessage[]> {
    return new Promise((resolve) => {
      const onAbort = () => this.#settle(waiter, []);
      const waiter: Waiter = {
        maxMessages,
        visibilityTimeoutSeconds,
        deadline,
        wakeAt: Number.POSITIVE_INFINITY,
        timer: undefined,
        resolve,
        detach: () => signal?.removeEventListener('abort', onAbort),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.add(waiter);
      this.#arm(waiter);
    });
  }

  /** (Re)sets the waiter's one timer to its deadline or the next hidden message's return, whichever is first. */
  #arm(waiter: Waiter): void {
    const wakeAt = Math.min(waiter.deadline, this.#nextVisibleAt() ?? Number.POSITIVE_INFINITY);
    if (waiter.timer !== undefined && wakeAt >= waiter.wakeAt) return;
    if (waiter.timer !== undefined) clearTimeout(waiter.timer);
    waiter.wakeAt = wakeAt;
    waiter.timer = setTimeout(() => this.#onWake(waiter), Math.max(0, wakeAt - this.#clock.now()));
    waiter.timer.unref();
  }

  #onWake(waiter: Waiter): void {
    waiter.timer = undefined;
    waiter.wakeAt = Number.POSITIVE_INFINITY;
    this.#serveWaiters();
    if (!this.#waiters.has(waiter)) return;
    if (this.#clock.now() >= waiter.deadline) this.#settle(waiter, []);
    else this.#arm(waiter);
  }

  /** After messages became visible or hidden: hand visible ones to waiters, re-aim the others' timers. */
  #afterChange(): void {
    if (this.#waiters.size === 0) return;
    this.#serveWaiters();
    for (const waiter of this.#waiters) this.#arm(waiter);
  }

  #serveWaiters(): void {
    const now = this.#clock.now();
    for (const waiter of this.#waiters) {
      this.#promoteDue(now);
      if (this.#ready.size === 0) return;
      const received = this.#take(waiter.maxMessages, waiter.visibilityTimeoutSeconds, now);
      if (received.length > 0) this.#settle(waiter, received);
    }
  }

  #settle(waiter: Waiter, messages: ReceivedMessage[]): void {
    if (!this.#waiters.delete(waiter)) return;
    if (waiter.timer !== undefined) clearTimeout(waiter.timer);
    waiter.detach();
    waiter.resolve(messages);
  }
}

export interface InMemoryQueues {
  queues: Readonly<Record<QueueName, InMemoryQueue>>;
  deadLetters: Readonly<Record<QueueName, InMemoryQueue>>;
  close(): void;
}

/** One queue per name, each with its own dead-letter queue, as the CDK stack creates them on AWS. */
export function createInMemoryQueues(
  settings: Pick<Settings, 'queueVisibilityTimeoutSeconds' | 'queueMaxReceives' | 'queueMaxMessageBytes'>,
  options: { onDeadLetter?: (queue: QueueName, body: string) => void } = {},
): InMemoryQueues {
  const queues = {} as Record<QueueName, InMemoryQueue>;
  const deadLetters = {} as Record<QueueName, InMemoryQueue>;
  for (const name of QUEUE_NAMES) {
    const common = {
      name,
      visibilityTimeoutSeconds: settings.queueVisibilityTimeoutSeconds,
      maxReceives: settings.queueMaxReceives,
      maxMessageBytes: settings.queueMaxMessageBytes,
    };
    deadLetters[name] = new InMemoryQueue(common);
    queues[name] = new InMemoryQueue({
      ...common,
      deadLetter: deadLetters[name],
      ...(options.onDeadLetter ? { onDeadLetter: options.onDeadLetter } : {}),
    });
  }
  return {
    queues,
    deadLetters,
    close() {
      for (const name of QUEUE_NAMES) {
        queues[name].close();
        deadLetters[name].close();
      }
    },
  };
}

/** Sums `operations()` over queues, by kind, plus a `total`; queues without counters (SQS) are skipped. */
export function countQueueOperations(
  queues: Readonly<Record<string, Queue>> | Iterable<Queue>,
): Record<QueueOperationKind | 'total', number> {
  const sums: Record<QueueOperationKind | 'total', number> = {
    send: 0,
    receive: 0,
    delete: 0,
    changeVisibility: 0,
    stats: 0,
    total: 0,
  };
  const list: Iterable<Queue> = Symbol.iterator in queues ? queues : Object.values(queues);
  for (const queue of list) {
    if (!(queue instanceof InMemoryQueue)) continue;
    for (const [kind, count] of Object.entries(queue.operations()) as [QueueOperationKind, number][]) {
      sums[kind] += count;
      sums.total += count;
    }
  }
  return sums;
}
