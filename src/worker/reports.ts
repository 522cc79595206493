import type { FinishState, StartedTask } from './execution-client.ts';
import type { RunnerOutcome } from './protocol.ts';

/**
 * How a try ended, as the Execution API takes it. An XCom over the API's limit is checked here,
 * before sending: the task fails without retrying, and the message says what to change.
 */
export function toFinishState(outcome: RunnerOutcome, started: StartedTask): FinishState {
  switch (outcome.kind) {
    case 'success': {
      if (outcome.xcom !== undefined) {
        const size = Buffer.byteLength(outcome.xcom, 'utf8');
        if (size > started.xcom_max_bytes) {
          return {
            state: 'failed',
            error_message: xcomTooLargeMessage(started.task_id, size, started.xcom_max_bytes),
            retryable: false,
          };
        }
      }
      return { state: 'success', xcom: outcome.xcom, follow_task_ids: outcome.followTaskIds };
    }
    case 'skipped':
      return { state: 'skipped', reason: truncate(outcome.reason) };
    case 'failed_no_retry':
      return { state: 'failed', error_message: truncate(outcome.reason), retryable: false };
    case 'error':
      return { state: 'failed', error_message: truncate(outcome.message), retryable: true };
    case 'deferred':
      return { state: 'deferred', deferral: outcome.deferral };
  }
}

export function xcomTooLargeMessage(taskId: string, size: number, limit: number): string {
  return `Task '${taskId}' returned an XCom of ${size} bytes, over the limit of ${limit} bytes (UPDRAFT_XCOM_MAX_BYTES): return less, or store the data elsewhere and return a reference`;
}

/** The Execution API keeps error messages to 10,000 characters; the full text is in the try's log. */
const MAX_ERROR_MESSAGE = 10_000;

export function truncate(message: string): string {
  if (message.length <= MAX_ERROR_MESSAGE) return message;
  const notice = '… [truncated; see the log of this try]';
  return message.slice(0, MAX_ERROR_MESSAGE - notice.length) + notice;
}
