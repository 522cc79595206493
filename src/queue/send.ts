import { QueueError } from './errors.ts';
import type { OutgoingMessage, Queue } from './port.ts';

/** Tries a send of refused entries gets before they are reported as undelivered. */
const SEND_ATTEMPTS = 3;

/**
 * Sends every message, sending again the entries a batch refused (SQS fails batches per entry).
 * Throws a `QueueError` naming how many entries still failed after the last attempt, so the
 * caller knows the hand-off did not happen; a call that failed as a whole throws as it came.
 */
export async function sendAll(queue: Queue, messages: readonly OutgoingMessage[]): Promise<void> {
  let pending = messages;
  let lastError = '';
  for (let attempt = 1; attempt <= SEND_ATTEMPTS && pending.length > 0; attempt += 1) {
    const { failed } = await queue.send(pending);
    pending = failed.map((entry) => entry.message);
    lastError = failed[0]?.error ?? '';
  }
  if (pending.length > 0) {
    throw new QueueError(
      `${pending.length} of ${messages.length} messages were not taken by the ${queue.name} queue after ${SEND_ATTEMPTS} attempts: ${lastError}`,
    );
  }
}
