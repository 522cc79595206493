import type { Queue } from '#queue/port.ts';
import type { FinishBody } from './execution-client.ts';
import type { RunnerOutcome } from './protocol.ts';

/** The report body for how a try ended, as the Execution API takes it. */
export function toFinishBody(outcome: RunnerOutcome): FinishBody {
  switch (outcome.kind) {
    case 'success':
      return { state: 'success', xcom: outcome.xcom, follow_task_ids: outcome.followTaskIds };
    case 'skipped':
      return { state: 'skipped', reason: truncate(outcome.reason) };
    case 'failed_no_retry':
      return { state: 'failed', error_message: truncate(outcome.reason), retryable: false };
    case 'error':
      return { state: 'failed', error_message: truncate(outcome.message), retryable: true };
  }
}

/** The Execution API keeps error messages to 10,000 characters; the full text is in the try's log. */
const MAX_ERROR_MESSAGE = 10_000;

function truncate(message: string): string {
  if (message.length <= MAX_ERROR_MESSAGE) return message;
  const notice = '… [truncated; see the log of this try]';
  return message.slice(0, MAX_ERROR_MESSAGE - notice.length) + notice;
}

/** Log text waiting to be sent with the next heartbeat or the final report. */
export class LogBuffer {
  #parts: string[] = [];
  add(text: string): void {
    this.#parts.push(text);
  }
  take(): string | undefined {
    if (this.#parts.length === 0) return undefined;
    const text = this.#parts.join('');
    this.#parts = [];
    return text;
  }
}

/** Deletes received messages in batch calls: workloads started in the same turn share one delete. */
export class DeleteBatcher {
  readonly #pending = new Map<Queue, { receipts: string[]; flushed: Promise<void> }>();

  delete(queue: Queue, receiptHandle: string): Promise<void> {
    let batch = this.#pending.get(queue);
    if (!batch) {
      const receipts: string[] = [];
      const flushed = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
        this.#pending.delete(queue);
        return queue.delete(receipts);
      });
      batch = { receipts, flushed };
      this.#pending.set(queue, batch);
    }
    batch.receipts.push(receiptHandle);
    return batch.flushed;
  }
}
