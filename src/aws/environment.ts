import * as z from 'zod';
import { QUEUE_NAMES, type QueueName } from '#queue/port.ts';

/**
 * The environment the CDK constructs give the deployed functions and the triggerer task, and the
 * handlers read: one name per resource, set by the construct that grants access to it (its
 * `bind…()`), so a variable and its IAM grant never drift apart. Engine settings travel as the
 * standalone `UPDRAFT_*` variables (see `SETTING_ENV_VARS`).
 */
export const AWS_ENV = {
  /** The DynamoDB table (scheduler, API and deploy-time DAG registration only; never workers or the triggerer). */
  tableName: 'UPDRAFT_TABLE_NAME',
  /** Bucket holding task log chunks. */
  logBucket: 'UPDRAFT_LOG_BUCKET',
  /**
   * Secrets Manager secret holding the execution-token keyring: `kid=secret` lines (the first
   * signs, every one verifies), a JSON object `{ "kid": "secret" }`, or one bare secret.
   */
  signingKeySecretArn: 'UPDRAFT_SIGNING_KEY_SECRET_ARN',
  /** Secrets Manager secret holding the public API's bearer token(s). */
  apiTokenSecretArn: 'UPDRAFT_API_TOKEN_SECRET_ARN',
  /** Base URL of the Execution API (workers, triggerer). */
  executionApiUrl: 'UPDRAFT_EXECUTION_API_URL',
  /**
   * The triggerer task role's IAM role id (`AROA…`), on the Execution API function: a job
   * registration signed by that role is its credential (the triggerer holds no secret).
   */
  triggererRoleId: 'UPDRAFT_TRIGGERER_ROLE_ID',
  /** Durable timers: the scheduler queue's ARN (the schedules' target), the role EventBridge Scheduler assumes to send to it, and the schedule group. */
  timerTargetArn: 'UPDRAFT_TIMER_TARGET_ARN',
  timerRoleArn: 'UPDRAFT_TIMER_ROLE_ARN',
  timerGroupName: 'UPDRAFT_TIMER_GROUP_NAME',
} as const;

/** `UPDRAFT_QUEUE_URL_<NAME>`: the URL of each queue a function sends to or consumes. */
export function queueUrlEnvVar(queue: QueueName): string {
  return `UPDRAFT_QUEUE_URL_${queue.toUpperCase()}`;
}

export class AwsEnvironmentError extends Error {
  override name = 'AwsEnvironmentError';
}

/** Reads one required variable; the error names it and the construct that sets it. */
export function requireEnv(env: NodeJS.ProcessEnv, name: string): string {
  const value = env[name];
  if (value === undefined || value === '') {
    throw new AwsEnvironmentError(
      `${name} is not set: it is set by the Updraft CDK construct that grants this function access to the resource; deploy with the Updraft stack or set it by hand`,
    );
  }
  return value;
}

/** The queue URLs present in the environment (a function only gets the queues it uses). */
export function queueUrlsFrom(env: NodeJS.ProcessEnv): Partial<Record<QueueName, string>> {
  const urls: Partial<Record<QueueName, string>> = {};
  for (const name of QUEUE_NAMES) {
    const url = env[queueUrlEnvVar(name)];
    if (url) urls[name] = z.url().parse(url);
  }
  return urls;
}
