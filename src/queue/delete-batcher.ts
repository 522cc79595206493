import { MAX_BATCH, type Queue } from './port.ts';

export interface DeleteBatcherOptions {
  /**
   * How long after its receive a handled message may wait for others to share its delete call.
   * 0 (the default): receipts given in the same turn of the event loop share a call.
   */
  delayMs?: number;
  /** Called once per failed call, with how many receipts it carried. */
  onError: (error: unknown, count: number) => void;
}

/**
 * Deletes handled messages in batch calls (one delete takes `MAX_BATCH` receipts). A batch is sent
 * when it is full, else at the earliest deadline of its receipts: each message's receive time
 * plus `delayMs`, so a message whose handling took longer than the delay is deleted at once after
 * it, and none waits longer than `delayMs` (whatever receive time it is given). If the process
 * stops before the call, the message comes back after its visibility timeout and is handled
 * again, which a message that is only a hint (or a workload whose try has started) allows.
 */
export class DeleteBatcher {
  readonly #options: DeleteBatcherOptions;
  readonly #pending = new Map<Queue, Batch>();
  /** Batches sent and not yet answered: `flush` waits for them too. */
  readonly #sending = new Set<Promise<void>>();

  constructor(options: DeleteBatcherOptions) {
    this.#options = options;
  }

  /** Deletes `receiptHandle` by `receivedAt` (epoch ms; default now) plus the delay. */
  delete(queue: Queue, receiptHandle: string, receivedAt?: number): void {
    const delay = this.#options.delayMs ?? 0;
    const elapsed = receivedAt === undefined ? 0 : Date.now() - receivedAt;
    // Never more than the delay (a receive time ahead of the clock: it was stepped back); NaN: due.
    const wait = Number.isNaN(elapsed) ? 0 : Math.min(delay, Math.max(0, delay - elapsed));
    let batch = this.#pending.get(queue);
    if (!batch) {
      const created: Batch = new Batch(queue, this.#options.onError, () => {
        this.#pending.delete(queue);
        this.#sending.add(created.done);
        void created.done.finally(() => this.#sending.delete(created.done));
      });
      batch = created;
      this.#pending.set(queue, batch);
    }
    batch.receipts.push(receiptHandle);
    if (batch.receipts.length >= MAX_BATCH) batch.send();
    else batch.sendWithin(wait);
  }

  /** Sends every pending batch now and waits for the answers to every batch sent. */
  async flush(): Promise<void> {
    for (const batch of [...this.#pending.values()]) batch.send();
    await Promise.all([...this.#sending]);
  }
}

class Batch {
  readonly receipts: string[] = [];
  readonly done: Promise<void>;
  #release: () => void = () => {};
  #sent = false;
  /** When the batch is due (a `performance.now()` time), and what cancels its timer. */
  #due = Number.POSITIVE_INFINITY;
  #cancel: () => void = () => {};
  readonly #onSent: () => void;

  constructor(queue: Queue, onError: DeleteBatcherOptions['onError'], onSent: () => void) {
    this.done = new Promise<void>((resolve) => {
      this.#release = resolve;
    })
      .then(() => queue.delete(this.receipts))
      .catch((error: unknown) => {
        try {
          onError(error, this.receipts.length);
        } catch {
          // Reporting failed too: the messages come back after their visibility timeout either way.
        }
      });
    this.#onSent = onSent;
  }

  /** Sends the batch within `ms`, or sooner if already due. */
  sendWithin(ms: number): void {
    const due = performance.now() + ms;
    if (this.#sent || due >= this.#due) return;
    this.#due = due;
    this.#cancel();
    if (ms > 0) {
      const timer = setTimeout(() => this.send(), ms).unref();
      this.#cancel = () => clearTimeout(timer);
    } else {
      // Due now: what the same turn adds still joins.
      const immediate = setImmediate(() => this.send());
      this.#cancel = () => clearImmediate(immediate);
    }
  }

  /** Sends the batch (once): later receipts start a new one. */
  send(): void {
    if (this.#sent) return;
    this.#sent = true;
    this.#cancel();
    this.#onSent();
    this.#release();
  }
}
