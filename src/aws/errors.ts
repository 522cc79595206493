/**
 * Errors of the AWS adapters. Limits the ports share with the standalone adapters keep the port's
 * error types (`MessageTooLargeError`, `QueueError`), so a caller sees the same error in both
 * modes; these are for what only AWS can do wrong: a failed call, or an answer that refuses part
 * of a batch. Each names the resource and carries the SDK error as `cause`.
 */
export class AwsAdapterError extends Error {
  override name = 'AwsAdapterError';
}

/** An SQS call failed, as a whole or for entries the caller cannot ignore. */
export class SqsRequestError extends AwsAdapterError {
  override name = 'SqsRequestError';
}

/** A wake timer could not be set, so the caller must not assume the run will be woken. */
export class WakeTimerError extends AwsAdapterError {
  override name = 'WakeTimerError';
}

/** A log chunk could not be written or read, or its id cannot be an S3 key. */
export class S3LogStoreError extends AwsAdapterError {
  override name = 'S3LogStoreError';
}

/** The SDK's error name (`ConflictException`, `AbortError`, …), which survives duplicate SDK copies where `instanceof` does not. */
export function awsErrorName(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'name' in error && typeof error.name === 'string'
    ? error.name
    : undefined;
}
