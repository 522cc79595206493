/**
 * Whether the store can be reached, as the health route reports it and as failed requests tell.
 * Kept apart from the domain errors: an unreachable store is no fault of the request, and the
 * same request may succeed a moment later (answered 503 with Retry-After, never 500).
 */

export type StoreHealth = { status: 'healthy' } | { status: 'unhealthy'; detail: string };

/** Node's codes for a connection that was refused, reset or timed out. */
const CONNECTION_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
]);

/** DynamoDB's own "try again later" answers. */
const UNAVAILABLE_ERROR_NAMES: ReadonlySet<string> = new Set([
  'TimeoutError',
  'ServiceUnavailable',
  'InternalServerError',
  'ThrottlingException',
  'RequestLimitExceeded',
  'ProvisionedThroughputExceededException',
]);

/**
 * A store request that failed because the store did not answer or asked to be retried later:
 * a connection error (also wrapped as a cause or inside an AggregateError) or one of DynamoDB's
 * retryable answers.
 */
export function isStoreUnavailableError(error: unknown, depth = 0): boolean {
  if (depth > 5 || typeof error !== 'object' || error === null) return false;
  const { code, name, cause, errors } = error as {
    code?: unknown;
    name?: unknown;
    cause?: unknown;
    errors?: unknown;
  };
  if (typeof code === 'string' && CONNECTION_ERROR_CODES.has(code)) return true;
  if (typeof name === 'string' && UNAVAILABLE_ERROR_NAMES.has(name)) return true;
  if (Array.isArray(errors) && errors.some((inner) => isStoreUnavailableError(inner, depth + 1))) return true;
  return isStoreUnavailableError(cause, depth + 1);
}
