import { describe, expect, it } from 'vitest';
import { canRetry, failureTransition, nextRetryAt, retryDelayMs } from '#core/retry.ts';
import { task, taskInstance } from './helpers/factories.ts';

const SECOND = 1000;
const HOUR = 3600 * SECOND;
const TRIES = [1, 2, 3, 4, 5];
const NOW = Date.parse('2025-01-01T00:00:00.000Z');

describe('retryDelayMs', () => {
  it('waits retryDelayMs after every try without exponential backoff', () => {
    const policy = task('t', { retryDelayMs: 10 * SECOND });
    expect(TRIES.map((tryNumber) => retryDelayMs(policy, tryNumber))).toEqual(
      [10, 10, 10, 10, 10].map((s) => s * SECOND),
    );
  });

  it('ignores maxRetryDelayMs without exponential backoff, as Airflow', () => {
    const policy = task('t', { retryDelayMs: 10 * SECOND, maxRetryDelayMs: 5 * SECOND });
    expect(retryDelayMs(policy, 3)).toBe(10 * SECOND);
  });

  it('doubles the delay after each try with exponential backoff', () => {
    const policy = task('t', { retryDelayMs: 10 * SECOND, retryExponentialBackoff: true });
    expect(TRIES.map((tryNumber) => retryDelayMs(policy, tryNumber))).toEqual(
      [10, 20, 40, 80, 160].map((s) => s * SECOND),
    );
  });

  it('caps the exponential backoff at maxRetryDelayMs', () => {
    const policy = task('t', {
      retryDelayMs: 10 * SECOND,
      retryExponentialBackoff: true,
      maxRetryDelayMs: 50 * SECOND,
    });
    expect(TRIES.map((tryNumber) => retryDelayMs(policy, tryNumber))).toEqual(
      [10, 20, 40, 50, 50].map((s) => s * SECOND),
    );
  });

  it('caps the exponential backoff at 24 hours when the task sets no maximum', () => {
    const policy = task('t', { retryDelayMs: HOUR, retryExponentialBackoff: true });
    expect(TRIES.map((tryNumber) => retryDelayMs(policy, tryNumber + 3))).toEqual(
      [8, 16, 24, 24, 24].map((h) => h * HOUR),
    );
  });

  it('stays capped for a try number high enough to overflow the doubling', () => {
    const policy = task('t', { retryDelayMs: HOUR, retryExponentialBackoff: true });
    expect(retryDelayMs(policy, 5000)).toBe(24 * HOUR);
  });

  it('lets a maxRetryDelayMs above 24 hours raise the cap', () => {
    const policy = task('t', {
      retryDelayMs: HOUR,
      retryExponentialBackoff: true,
      maxRetryDelayMs: 48 * HOUR,
    });
    expect(retryDelayMs(policy, 6)).toBe(32 * HOUR);
  });
});

describe('nextRetryAt', () => {
  it('adds the delay to now', () => {
    const policy = task('t', { retryDelayMs: 10 * SECOND, retryExponentialBackoff: true });
    expect(nextRetryAt(policy, 3, NOW)).toBe('2025-01-01T00:00:40.000Z');
  });
});

describe('canRetry', () => {
  it('allows a retry while tries are left', () => {
    expect(canRetry(taskInstance('t', { tryNumber: 2, maxTries: 3 }))).toBe(true);
  });

  it('refuses a retry after the last try', () => {
    expect(canRetry(taskInstance('t', { tryNumber: 3, maxTries: 3 }))).toBe(false);
  });
});

describe('failureTransition', () => {
  const policy = task('t', { retries: 2, retryDelayMs: 30 * SECOND });

  it('puts a retryable failure with tries left up for retry at the retry time', () => {
    const ti = taskInstance('t', { tryNumber: 1, maxTries: 3 });
    expect(failureTransition(ti, policy, NOW, { retryable: true })).toEqual({
      state: 'up_for_retry',
      nextRetryAt: '2025-01-01T00:00:30.000Z',
    });
  });

  it('fails a retryable failure on the last try', () => {
    const ti = taskInstance('t', { tryNumber: 3, maxTries: 3 });
    expect(failureTransition(ti, policy, NOW, { retryable: true })).toEqual({ state: 'failed' });
  });

  it('fails a non-retryable failure even with tries left', () => {
    const ti = taskInstance('t', { tryNumber: 1, maxTries: 3 });
    expect(failureTransition(ti, policy, NOW, { retryable: false })).toEqual({ state: 'failed' });
  });
});
