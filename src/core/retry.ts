import type { TaskInstance } from './models.ts';
import type { SerializedTask } from './serialized-dag.ts';

/** Airflow's ceiling on an exponential backoff delay when the task sets no `maxRetryDelayMs`. */
export const DEFAULT_MAX_RETRY_DELAY_MS = 24 * 60 * 60 * 1000;

export type RetryPolicy = Pick<
  SerializedTask,
  'retryDelayMs' | 'retryExponentialBackoff' | 'maxRetryDelayMs'
>;

/**
 * Delay before the next try after try `tryNumber` (1 for the first try) failed.
 * Without backoff: `retryDelayMs`, as Airflow (which applies `max_retry_delay` only to backoff).
 * With backoff: `retryDelayMs * 2^(tryNumber - 1)`, capped by `maxRetryDelayMs`, or by 24 hours when
 * the task sets none. Unlike Airflow there is no hash-based spread between `d` and `2d`: the delay is
 * exactly the doubled one, so retries are predictable and testable; a run's TIs fail at different
 * moments anyway, which spreads their retries.
 */
export function retryDelayMs(task: RetryPolicy, tryNumber: number): number {
  if (!task.retryExponentialBackoff) return task.retryDelayMs;
  const cap = task.maxRetryDelayMs ?? DEFAULT_MAX_RETRY_DELAY_MS;
  const exponent = Math.max(0, Math.floor(tryNumber) - 1);
  // 2^exponent overflows to Infinity for large try numbers (a TI cleared many times); min() absorbs it.
  return Math.min(cap, task.retryDelayMs * 2 ** exponent);
}

/** When a TI whose try `tryNumber` failed at `nowMs` may run again, as an ISO-8601 string. */
export function nextRetryAt(task: RetryPolicy, tryNumber: number, nowMs: number): string {
  return new Date(nowMs + retryDelayMs(task, tryNumber)).toISOString();
}

/** Whether a TI has tries left: `maxTries` counts the first try, and a clear raises it. */
export function canRetry(ti: Pick<TaskInstance, 'tryNumber' | 'maxTries'>): boolean {
  return ti.tryNumber < ti.maxTries;
}

export type FailureTransition = { state: 'up_for_retry'; nextRetryAt: string } | { state: 'failed' };

/**
 * The state a failed try leads to: `up_for_retry` when the failure may be retried and tries are left,
 * else `failed`. A non-retryable failure (e.g. a task that raised a fail-now signal) fails at once.
 */
export function failureTransition(
  ti: Pick<TaskInstance, 'tryNumber' | 'maxTries'>,
  task: RetryPolicy,
  nowMs: number,
  options: { retryable: boolean },
): FailureTransition {
  if (options.retryable && canRetry(ti)) {
    return { state: 'up_for_retry', nextRetryAt: nextRetryAt(task, ti.tryNumber, nowMs) };
  }
  return { state: 'failed' };
}
