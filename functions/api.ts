import type { HandlerDeps } from '#aws/handler-deps.ts';
import { makeHttpHandler } from '#aws/handler-http.ts';
import type { Observability } from '#aws/handler-observability.ts';

/**
 * The public REST API (`/api/v2`) behind API Gateway's HTTP API (payload format 2.0): the router
 * of `src/api`, checked against the bearer token held in Secrets Manager
 * (`UPDRAFT_API_TOKEN_SECRET_ARN`, cached per instance). Uses the table, the scheduler queue
 * (a triggered run is scheduled at once) and the log bucket (read).
 */
export function makeHandler(deps: Partial<HandlerDeps & Observability> = {}) {
  return makeHttpHandler('public', deps);
}

export const handler = makeHandler();
