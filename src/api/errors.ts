import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import {
  EngineError,
  InvalidRequestError,
  LimitExceededError,
  NotFoundError,
  NotReadyError,
  StateConflictError,
} from '#engine/errors.ts';
import type { Logger } from '#engine/logger.ts';
import { InvalidTokenError } from '#engine/tokens.ts';
import { isStoreUnavailableError } from '#store/availability.ts';
import { InvalidCursorError, InvalidKeyError, ItemTooLargeError } from '#store/errors.ts';

/** The caller is authenticated but its token does not grant access to what it names. */
export class ForbiddenError extends Error {
  override name = 'ForbiddenError';
}

/**
 * The status and detail an error answers with (a 5xx logged, its detail generic): for a whole
 * request, and for one item of a batch route that answers per item.
 */
export function errorAnswer(
  error: Error,
  c: Context,
  log: Logger,
  /** What the failed item is (for a batch route's item), logged with a 5xx. */
  item: Record<string, unknown> = {},
): { status: ContentfulStatusCode; detail: string } {
  if (isStoreUnavailableError(error))
    return { status: 503, detail: 'The store is unavailable. Retry shortly' };
  if (error instanceof NotReadyError) return { status: 503, detail: error.message };
  const status = statusOf(error);
  if (status >= 500)
    log.error('API request failed', { method: c.req.method, path: c.req.path, ...item, error });
  return { status, detail: status >= 500 ? 'Internal server error' : error.message };
}

/** Exhaustive over the error kinds the engine and store raise; anything else is a 500. */
function statusOf(error: Error): ContentfulStatusCode {
  if (error instanceof HTTPException) return error.status as ContentfulStatusCode;
  if (error instanceof InvalidTokenError) return 401;
  if (error instanceof ForbiddenError) return 403;
  if (error instanceof NotFoundError) return 404;
  if (error instanceof StateConflictError) return 409;
  if (error instanceof LimitExceededError || error instanceof ItemTooLargeError) return 413;
  if (error instanceof InvalidRequestError) return 400;
  if (error instanceof InvalidKeyError || error instanceof InvalidCursorError) return 400;
  if (error instanceof EngineError) return 400;
  return 500;
}
