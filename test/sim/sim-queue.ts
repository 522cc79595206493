import { AsyncLocalStorage } from 'node:async_hooks';
import type {
  OutgoingMessage,
  Queue,
  QueueName,
  Queues,
  ReceivedMessage,
  ReceiveOptions,
  SendResult,
} from '#queue/port.ts';
import type { Kernel } from './kernel.ts';
import type { Prng } from './prng.ts';

/**
 * Queues on the sim clock, shaped like SQS, with faults the world turns on: a message sent may be
 * lost, duplicated or delayed, and a receive may take visible messages out of order. Every message
 * ends deleted, dead-lettered (after `maxReceives` receives) or lost by a fault, and is counted.
 */

export interface MessageFaults {
  lose: number;
  duplicate: number;
  delay: number;
  delayMaxMs: number;
  reorder: number;
  /** An entry of a send batch refused (SQS fails batches per entry): returned to the sender, never queued. */
  refuse: number;
}

/**
 * One engine invocation (a Lambda call): a send made after it returned, by work it did not await,
 * is lost when the invocation `freezes` (the platform froze the function first).
 */
export interface Invocation {
  name: string;
  open: boolean;
  freezes: boolean;
}
export const invocations = new AsyncLocalStorage<Invocation>();

type Status = 'queued' | 'deleted' | 'dead_lettered' | 'lost';

interface SimMessage {
  id: string;
  body: string;
  visibleAt: number;
  receiveCount: number;
  receipt: string | null;
  status: Status;
}

export interface QueueAccount {
  sent: number;
  duplicated: number;
  lostByFault: number;
  lostAfterReturn: number;
  /** Entries refused at send (the sender was told). */
  refused: number;
  deleted: number;
  deadLettered: number;
  /** Still queued, visible or in flight. */
  open: number;
}

export class SimQueue implements Queue {
  readonly name: QueueName;
  readonly #kernel: Kernel;
  readonly #prng: Prng;
  readonly #faults: () => MessageFaults;
  readonly #visibilityMs: number;
  readonly #maxReceives: number;
  readonly #messages: SimMessage[] = [];
  #nextId = 1;
  #duplicated = 0;
  #lostAfterReturn = 0;
  #refused = 0;

  constructor(
    name: QueueName,
    deps: {
      kernel: Kernel;
      prng: Prng;
      faults: () => MessageFaults;
      visibilityMs: number;
      maxReceives: number;
    },
  ) {
    this.name = name;
    this.#kernel = deps.kernel;
    this.#prng = deps.prng;
    this.#faults = deps.faults;
    this.#visibilityMs = deps.visibilityMs;
    this.#maxReceives = deps.maxReceives;
  }

  async send(messages: readonly OutgoingMessage[]): Promise<SendResult> {
    const invocation = invocations.getStore();
    if (invocation && !invocation.open && invocation.freezes) {
      this.#lostAfterReturn += messages.length;
      this.#kernel.log(
        `${this.name}: ${messages.length} sent after ${invocation.name} returned: lost (frozen)`,
      );
      return { failed: [] };
    }
    const faults = this.#faults();
    const failed: SendResult['failed'] = [];
    for (const message of messages) {
      if (this.#prng.chance(faults.refuse)) {
        this.#refused++;
        failed.push({ message, error: 'sim: entry refused' });
        continue;
      }
      const copies = this.#prng.chance(faults.duplicate) ? 2 : 1;
      if (copies === 2) this.#duplicated++;
      for (let copy = 0; copy < copies; copy++) {
        const delayMs =
          (message.delaySeconds ?? 0) * 1000 +
          (this.#prng.chance(faults.delay) ? this.#prng.range(1, faults.delayMaxMs) : 0);
        const stored: SimMessage = {
          id: `${this.name}-${this.#nextId++}`,
          body: message.body,
          visibleAt: this.#kernel.now + delayMs,
          receiveCount: 0,
          receipt: null,
          status: this.#prng.chance(faults.lose) ? 'lost' : 'queued',
        };
        this.#messages.push(stored);
        this.#kernel.log(
          `${this.name} send ${stored.id}${stored.status === 'lost' ? ' LOST' : ''}${delayMs ? ` +${delayMs}ms` : ''}`,
        );
      }
    }
    this.#kernel.touch();
    return { failed };
  }

  /** Never waits: the sim's consumers poll on the sim clock. */
  async receive(options: ReceiveOptions): Promise<ReceivedMessage[]> {
    const now = this.#kernel.now;
    let visible = this.#messages.filter((m) => m.status === 'queued' && m.visibleAt <= now);
    if (this.#prng.chance(this.#faults().reorder)) visible = this.#prng.shuffle(visible);
    const taken: ReceivedMessage[] = [];
    for (const message of visible) {
      if (taken.length >= options.maxMessages) break;
      message.receiveCount++;
      if (message.receiveCount > this.#maxReceives) {
        message.status = 'dead_lettered';
        this.#kernel.log(`${this.name} dead-letter ${message.id}`);
        continue;
      }
      message.receipt = `${message.id}#${message.receiveCount}`;
      message.visibleAt = now + (options.visibilityTimeoutSeconds ?? this.#visibilityMs / 1000) * 1000;
      taken.push({
        messageId: message.id,
        receiptHandle: message.receipt,
        body: message.body,
        receiveCount: message.receiveCount,
      });
    }
    if (taken.length > 0) this.#kernel.touch();
    return taken;
  }

  async delete(receiptHandles: readonly string[]): Promise<void> {
    for (const handle of receiptHandles) {
      const message = this.#byReceipt(handle);
      if (message) message.status = 'deleted';
    }
    this.#kernel.touch();
  }

  async changeVisibility(receiptHandle: string, visibilityTimeoutSeconds: number): Promise<void> {
    const message = this.#byReceipt(receiptHandle);
    if (message) message.visibleAt = this.#kernel.now + visibilityTimeoutSeconds * 1000;
  }

  async stats(): Promise<{ visible: number; inFlight: number; delayed: number }> {
    const now = this.#kernel.now;
    const queued = this.#messages.filter((m) => m.status === 'queued');
    return {
      visible: queued.filter((m) => m.visibleAt <= now && m.receiveCount === 0).length,
      inFlight: queued.filter((m) => m.visibleAt > now && m.receiveCount > 0).length,
      delayed: queued.filter((m) => m.visibleAt > now && m.receiveCount === 0).length,
    };
  }

  hasVisible(): boolean {
    return this.#messages.some((m) => m.status === 'queued' && m.visibleAt <= this.#kernel.now);
  }

  account(): QueueAccount {
    const count = (status: Status) => this.#messages.filter((m) => m.status === status).length;
    return {
      sent: this.#messages.length,
      duplicated: this.#duplicated,
      lostByFault: count('lost'),
      lostAfterReturn: this.#lostAfterReturn,
      refused: this.#refused,
      deleted: count('deleted'),
      deadLettered: count('dead_lettered'),
      open: count('queued'),
    };
  }

  /** Only the latest receipt of a message still in its queue deletes it (an expired one is ignored). */
  #byReceipt(handle: string): SimMessage | undefined {
    const message = this.#messages.find((m) => m.receipt === handle);
    return message && message.status === 'queued' && message.visibleAt > this.#kernel.now
      ? message
      : undefined;
  }
}

export function createSimQueues(
  deps: ConstructorParameters<typeof SimQueue>[1],
): Queues & Record<QueueName, SimQueue> {
  const names: QueueName[] = ['callbacks', 'tasks_high', 'tasks_default', 'tasks_low', 'scheduler'];
  return Object.fromEntries(names.map((name) => [name, new SimQueue(name, deps)])) as Queues &
    Record<QueueName, SimQueue>;
}
