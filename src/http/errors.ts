/**
 * An HTTP call failed. The message names the call (`PATCH /execution/…/state: 503 <detail>`);
 * `status` is undefined when no response came back (network error, timeout); `retryable` says
 * whether the same request may succeed later. Messages never contain request headers, so a
 * bearer token cannot leak into a log through an error.
 */
export class HttpError extends Error {
  override name = 'HttpError';
  readonly status: number | undefined;
  readonly retryable: boolean;
  /** `METHOD /path` of the failed call. */
  readonly call: string;
  /** The server's `detail` (or status text), or the network error's message. */
  readonly detail: string;

  constructor(
    call: string,
    status: number | undefined,
    detail: string,
    retryable: boolean,
    options?: { cause?: unknown },
  ) {
    super(`${call}: ${status ?? 'no response'} ${detail}`, options);
    this.call = call;
    this.status = status;
    this.detail = detail;
    this.retryable = retryable;
  }
}

/** The caller's own signal stopped the call; never retried. */
export class HttpAbortedError extends HttpError {
  override name = 'HttpAbortedError';
}
