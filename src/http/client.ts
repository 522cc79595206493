import { HttpAbortedError, HttpError } from './errors.ts';

/**
 * One HTTP client base for the processes that call the Updraft API from outside it (the worker
 * now, the triggerer next): a timeout per request, retries with exponential backoff and full
 * jitter on network errors, timeouts, 5xx and 429, none on other 4xx, bounded by attempts and
 * an optional deadline. Time, randomness and `fetch` are injected so tests and the simulation
 * drive it deterministically.
 */

export interface RetryPolicy {
  /** Attempts in all, the first included (`Infinity` with a deadline: until the deadline). */
  attempts: number;
  /** Backoff before attempt n+1 is a random delay in [0, min(maxDelayMs, baseDelayMs·2^(n-1))]. */
  baseDelayMs: number;
  maxDelayMs: number;
  /**
   * Time (as `now()` counts) after which no attempt starts. The wait before the next attempt is
   * cut short to start it at the deadline, so the last attempt happens at the deadline at latest.
   */
  deadline?: number;
}

export interface HttpClientOptions {
  baseUrl: string;
  fetch?: typeof fetch;
  /** Waits between attempts; the simulation passes its fake clock's. */
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
  /** In [0, 1): the jitter's source. */
  random?: () => number;
  /** Per-request timeout, the response body included. */
  timeoutMs?: number;
  /** Makes the per-request timeout's signal (default `AbortSignal.timeout`). */
  timeoutSignal?: (ms: number) => AbortSignal;
  retry?: Partial<RetryPolicy>;
  /** Sent with every request (an API version header, say). */
  headers?: Record<string, string>;
}

export interface HttpRequest {
  method: string;
  /** Path under the base URL, query included. */
  path: string;
  /** Sent as JSON when defined. */
  body?: unknown;
  /** Sent as `Authorization: Bearer …`, and never put into an error message. */
  token?: string;
  retry?: Partial<RetryPolicy>;
  timeoutMs?: number;
  /** The caller's stop: ends the call at once with HttpAbortedError, never retried. */
  signal?: AbortSignal;
}

export interface HttpResponse<T> {
  status: number;
  headers: Headers;
  body: T;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseDelayMs: 100, maxDelayMs: 5_000 };
export const DEFAULT_TIMEOUT_MS = 30_000;
/** A Retry-After up to this long is honoured as it is; a longer one falls back to the backoff. */
export const RETRY_AFTER_MAX_MS = 60_000;

export class HttpClient {
  readonly #baseUrl: string;
  readonly #fetch: typeof fetch;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #timeoutMs: number;
  readonly #timeoutSignal: (ms: number) => AbortSignal;
  readonly #retry: RetryPolicy;
  readonly #headers: Record<string, string>;

  constructor(options: HttpClientOptions) {
    this.#baseUrl = options.baseUrl.replace(/\/$/, '');
    this.#fetch = options.fetch ?? fetch;
    this.#sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#timeoutSignal = options.timeoutSignal ?? ((ms) => AbortSignal.timeout(ms));
    this.#retry = { ...DEFAULT_RETRY, ...options.retry };
    this.#headers = { ...options.headers };
  }

  /** The parsed JSON response of a 2xx; any other outcome throws HttpError. */
  async request<T>(request: HttpRequest): Promise<HttpResponse<T>> {
    const policy = { ...this.#retry, ...request.retry };
    for (let attempt = 1; ; attempt += 1) {
      let retryAfterMs: number | undefined;
      try {
        return await this.#attempt<T>(request);
      } catch (error) {
        if (!(error instanceof HttpError) || !error.retryable) throw error;
        if (attempt >= policy.attempts) throw error;
        retryAfterMs = (error as RetryAfterCarrier).retryAfterMs;
        let delay = backoffDelay(policy, attempt, this.#random());
        if (retryAfterMs !== undefined) delay = retryAfterMs <= RETRY_AFTER_MAX_MS ? retryAfterMs : delay;
        if (policy.deadline !== undefined) {
          const left = policy.deadline - this.#now();
          if (left <= 0) throw error;
          delay = Math.min(delay, left);
        }
        if (request.signal?.aborted) throw aborted(request, error);
        await sleepUnlessAborted(this.#sleep, delay, request.signal);
        if (request.signal?.aborted) throw aborted(request, error);
      }
    }
  }

  async #attempt<T>(request: HttpRequest): Promise<HttpResponse<T>> {
    const call = `${request.method} ${request.path.split('?')[0]}`;
    const timeoutMs = request.timeoutMs ?? this.#timeoutMs;
    const timeout = this.#timeoutSignal(timeoutMs);
    const signal = request.signal ? AbortSignal.any([request.signal, timeout]) : timeout;
    const headers: Record<string, string> = { ...this.#headers, accept: 'application/json' };
    if (request.body !== undefined) headers['content-type'] = 'application/json';
    if (request.token !== undefined) headers.authorization = `Bearer ${request.token}`;
    let status: number;
    let responseHeaders: Headers;
    let text: string;
    try {
      // Raced against the signal as well: a `fetch` (or a stub) that ignores it cannot hang the call.
      ({ status, responseHeaders, text } = await raceAbort(signal, async () => {
        const response = await this.#fetch(`${this.#baseUrl}${request.path}`, {
          method: request.method,
          headers,
          body: request.body === undefined ? undefined : JSON.stringify(request.body),
          signal,
        });
        return { status: response.status, responseHeaders: response.headers, text: await response.text() };
      }));
    } catch (error) {
      if (request.signal?.aborted) throw aborted(request, error);
      if (timeout.aborted)
        throw new HttpError(call, undefined, `timed out after ${timeoutMs} ms`, true, { cause: error });
      throw new HttpError(call, undefined, redact(networkMessage(error), request.token), true, {
        cause: error,
      });
    }
    if (status >= 200 && status < 300) {
      try {
        return { status, headers: responseHeaders, body: (text ? JSON.parse(text) : {}) as T };
      } catch (error) {
        throw new HttpError(call, status, 'the response is not JSON', false, { cause: error });
      }
    }
    const error = new HttpError(
      call,
      status,
      redact(detailOf(text, status), request.token),
      isRetryable(status),
    );
    const retryAfterMs = parseRetryAfter(responseHeaders.get('retry-after'));
    if (retryAfterMs !== undefined) (error as RetryAfterCarrier).retryAfterMs = retryAfterMs;
    throw error;
  }
}

type RetryAfterCarrier = HttpError & { retryAfterMs?: number };

/** Full jitter: uniform in [0, cap], so many clients retrying after one outage spread out. */
export function backoffDelay(policy: RetryPolicy, attempt: number, random: number): number {
  const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  return Math.floor(random * cap);
}

export function isRetryable(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

function aborted(request: HttpRequest, cause: unknown): HttpAbortedError {
  const reason = request.signal?.reason;
  const detail = `aborted${reason === undefined ? '' : `: ${String(reason instanceof Error ? reason.message : reason)}`}`;
  return new HttpAbortedError(`${request.method} ${request.path.split('?')[0]}`, undefined, detail, false, {
    cause,
  });
}

/** The wait between attempts, cut short when the caller's signal aborts (its stop is never held up by a backoff). */
function sleepUnlessAborted(
  sleep: (ms: number) => Promise<void>,
  ms: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  if (!signal) return sleep(ms);
  if (signal.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      signal.removeEventListener('abort', done);
      resolve();
    };
    signal.addEventListener('abort', done, { once: true });
    sleep(ms).then(done, done);
  });
}

function raceAbort<T>(signal: AbortSignal, work: () => Promise<T>): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work().then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

function parseRetryAfter(value: string | null): number | undefined {
  if (value === null || !/^\d+$/.test(value.trim())) return undefined;
  return Number(value.trim()) * 1000;
}

const MAX_DETAIL = 500;

function detailOf(text: string, status: number): string {
  try {
    const parsed = JSON.parse(text) as { detail?: unknown };
    if (typeof parsed.detail === 'string') return parsed.detail;
  } catch {
    // not JSON: the text itself, shortened
  }
  const trimmed = text.trim();
  if (trimmed === '') return `HTTP ${status}`;
  return trimmed.length > MAX_DETAIL ? `${trimmed.slice(0, MAX_DETAIL)}…` : trimmed;
}

function networkMessage(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = (error as { cause?: unknown }).cause;
  return cause instanceof Error ? `${error.message} (${cause.message})` : error.message;
}

/** Removes the token, and anything that looks like a bearer credential, from text shown to people. */
export function redact(text: string, token: string | undefined): string {
  let result = token ? text.split(token).join('[redacted]') : text;
  result = result.replace(/Bearer\s+[A-Za-z0-9._~+/=-]+/g, 'Bearer [redacted]');
  return result;
}
