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
 * it, and none is held toward its visibility timeout. If the process stops before the call, the
 * message comes back after its visibility timeout and is handled again, which a message that is
 * only a hint (or a workload whose try has started) allows.
 */
export class DeleteBatcher {
  readonly #options: DeleteBatcherOptions;
  readonly #pending = new Map<Queue, Batch>();

  constructor(options: DeleteBatcherOptions) {
    this.#options = options;
  }

  /** Deletes `receiptHandle` by `receivedAt` (epoch ms; default now) plus the delay. */
  delete(queue: Queue, receiptHandle: string, receivedAt?: number): void {
    const now = Date.now();
    let batch = this.#pending.get(queue);
    if (!batch) {
      batch = new Batch(queue, this.#options.onError, () => this.#pending.delete(queue));
      this.#pending.set(queue, batch);
    }
    batch.receipts.push(receiptHandle);
    if (batch.receipts.length >= MAX_BATCH) batch.send();
    else batch.sendWithin(Math.max(0, (receivedAt ?? now) + (this.#options.delayMs ?? 0) - now));
  }

  /** Sends every pending batch now and waits for the answers. */
  async flush(): Promise<void> {
    const batches = [...this.#pending.values()];
    for (const batch of batches) batch.send();
    await Promise.all(batches.map((batch) => batch.done));
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
      .catch((error: unknown) => onError(error, this.receipts.length));
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
