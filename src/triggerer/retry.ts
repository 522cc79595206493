import { HttpError } from '#http/errors.ts';

/** How the triggerer tells transient failures from refusals, and spaces its retries. */

export interface Backoff {
  baseDelayMs: number;
  maxDelayMs: number;
}

/**
 * A delay in [cap/2, cap], cap = min(max, base·2^(attempt-1)): jittered, so many triggerers
 * retrying after one outage spread out, and never near zero, so a retry loop cannot spin.
 */
export function backoffDelay(policy: Backoff, attempt: number, random: number): number {
  const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.min(30, attempt - 1));
  return Math.floor(cap / 2 + (random * cap) / 2);
}

/** The API answered and refused (a 4xx other than 408 and 429, or a broken answer): retrying cannot help. */
export function isRefusal(error: unknown): error is HttpError & { status: number } {
  return error instanceof HttpError && error.status !== undefined && !error.retryable;
}

/** `text` cut to `max` characters, the last one an ellipsis when cut. */
export function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Lets one warning of each kind through per period, so an outage does not flood the log. */
export class WarningThrottle {
  readonly #periodMs: number;
  readonly #now: () => number;
  readonly #lastAt = new Map<string, number>();

  constructor(now: () => number, periodMs = 30_000) {
    this.#now = now;
    this.#periodMs = periodMs;
  }

  allows(kind: string): boolean {
    const now = this.#now();
    if (now - (this.#lastAt.get(kind) ?? Number.NEGATIVE_INFINITY) < this.#periodMs) return false;
    this.#lastAt.set(kind, now);
    return true;
  }
}
