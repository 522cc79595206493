import type { HandlerDeps } from '#aws/handler-deps.ts';
import { makeHttpHandler } from '#aws/handler-http.ts';
import type { Observability } from '#aws/handler-observability.ts';

/**
 * The Execution API (`/execution`) behind a Lambda function URL with IAM auth: workers sign with
 * SigV4 and carry their task token in `x-updraft-task-token` (the signature takes
 * `Authorization`). Checks task tokens against the keyring in Secrets Manager
 * (`UPDRAFT_SIGNING_KEY_SECRET_ARN`). Uses the table, the scheduler queue and the log bucket (write).
 */
export function makeHandler(deps: Partial<HandlerDeps & Observability> = {}) {
  return makeHttpHandler('execution', deps);
}

export const handler = makeHandler();
