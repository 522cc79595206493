import { MAX_BATCH, type Queue } from './port.ts';

/**
 * Deletes handled messages in batch calls (one delete takes `MAX_BATCH` receipts). Receipts given
 * within `delayMs` of a batch's first share its call, and a batch that reaches `MAX_BATCH` is sent
 * at once. `delayMs` 0 (the default) sends on the next turn of the event loop: receipts given in
 * the same turn share a call. A delayed delete leaves a handled message in flight a little longer;
 * if the process stops before the call, the message comes back after its visibility timeout and
 * is handled again, which a message that is only a hint allows.
 */
export class DeleteBatcher {
  readonly #delayMs: number;
  readonly #pending = new Map<Queue, Batch>();

  constructor(options: { delayMs?: number } = {}) {
    this.#delayMs = options.delayMs ?? 0;
  }

  /** Settles when the call holding this receipt has been answered (rejects with its error). */
  delete(queue: Queue, receiptHandle: string): Promise<void> {
    let batch = this.#pending.get(queue);
    if (!batch) {
      batch = new Batch(queue, this.#delayMs, () => this.#pending.delete(queue));
      this.#pending.set(queue, batch);
    }
    batch.receipts.push(receiptHandle);
    if (batch.receipts.length >= MAX_BATCH) batch.send();
    return batch.done;
  }

  /** Sends every pending batch now and waits for the answers (errors included, not thrown). */
  async flush(): Promise<void> {
    const batches = [...this.#pending.values()];
    for (const batch of batches) batch.send();
    await Promise.allSettled(batches.map((batch) => batch.done));
  }
}

class Batch {
  readonly receipts: string[] = [];
  readonly done: Promise<void>;
  #release: () => void = () => {};
  #sent = false;
  readonly #onSent: () => void;
  readonly #cancel: () => void;

  constructor(queue: Queue, delayMs: number, onSent: () => void) {
    this.done = new Promise<void>((resolve) => {
      this.#release = resolve;
    }).then(() => queue.delete(this.receipts));
    this.#onSent = onSent;
    if (delayMs > 0) {
      const timer = setTimeout(() => this.send(), delayMs).unref();
      this.#cancel = () => clearTimeout(timer);
    } else {
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
