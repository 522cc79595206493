import { createHmac } from 'node:crypto';
import type { SESv2Client } from '@aws-sdk/client-sesv2';
import type { SNSClient } from '@aws-sdk/client-sns';
import { type DurationInput, parseDuration } from '#core/duration.ts';
import { systemClock } from '#worker/clock.ts';
import type { CallbackContext } from './callback-context.ts';
import { CALLBACK_MAX_TIMEOUT_MS, type CallbackFunction } from './callback-options.ts';
import { DagValidationError } from './errors.ts';

/**
 * Built-in notifiers: callbacks that tell another system what happened. Each is a factory that
 * returns a callback function, so it goes wherever a callback goes (`onFailure: webhookNotifier(…)`)
 * and runs where an async callback runs (the triggerer, unless placed on a worker). Each hands the callback's idempotency key to the system it
 * calls, so a second delivery (a retry after a lost attempt) has no second effect where that
 * system deduplicates: webhook receivers that honour `Idempotency-Key`, SNS FIFO topics. Standard
 * SNS topics and SES do not deduplicate: see docs/callbacks.md.
 */

/** What every notifier sends: the event, where it happened, and why (for failures). */
export interface NotificationSummary {
  kind: string;
  dag_id: string;
  dag_run_id: string;
  logical_date: string;
  task_id: string | null;
  map_index: number | null;
  try_number: number | null;
  error_message: string | null;
  error_type: string | null;
  attempt: number;
  idempotency_key: string;
  /** For `deadline_missed`: the deadline the run missed, and how late it was when the miss was recorded. */
  deadline?: { at: string; reference: string; late_by_ms: number };
}

export function summaryOf(ctx: CallbackContext): NotificationSummary {
  return {
    kind: ctx.kind,
    dag_id: ctx.dagId,
    dag_run_id: ctx.runId,
    logical_date: ctx.logicalDate,
    task_id: ctx.taskId ?? null,
    map_index: ctx.mapIndex ?? null,
    try_number: ctx.tryNumber ?? null,
    error_message: ctx.errorMessage ?? null,
    error_type: ctx.errorType ?? null,
    attempt: ctx.attempt,
    idempotency_key: ctx.idempotencyKey,
    ...(ctx.deadline === undefined
      ? {}
      : {
          deadline: {
            at: ctx.deadline.at,
            reference: ctx.deadline.reference,
            late_by_ms: ctx.deadline.lateByMs,
          },
        }),
  };
}

/** A one-line subject: `[Updraft] task_failure: etl/manual__… extract (try 2)`. */
export function subjectOf(ctx: CallbackContext): string {
  const task =
    ctx.taskId === undefined
      ? ''
      : ` ${ctx.taskId}${ctx.tryNumber === undefined ? '' : ` (try ${ctx.tryNumber})`}`;
  // SNS takes subjects under 100 characters.
  return `[Updraft] ${ctx.kind}: ${ctx.dagId}/${ctx.runId}${task}`.slice(0, 99);
}

export interface WebhookNotifierOptions {
  /** Where to POST; or `urlFromEnv`, the environment variable that holds it where the notifier runs (kept out of the DAG file). */
  url?: string;
  urlFromEnv?: string;
  headers?: Record<string, string>;
  /** Per request (default 10 s). */
  timeout?: DurationInput;
  /** Requests per attempt when the receiver answers 5xx or 429 or cannot be reached (default 3). */
  tries?: number;
  /**
   * The environment variable holding a secret: the body is then signed, header
   * `Updraft-Signature: sha256=<hex HMAC-SHA256 of the body>`.
   */
  signingSecretFromEnv?: string;
  /** For tests: the fetch to use. */
  fetch?: typeof fetch;
}

/** Response statuses worth another request within the attempt. */
function retryable(status: number): boolean {
  return status >= 500 || status === 429;
}

/**
 * POSTs the notification summary as JSON with `Idempotency-Key: <callback id>` (the same on every
 * request and every attempt). A 5xx, a 429 or a network error is tried again within the attempt
 * (`tries`, with a short backoff); another status fails the attempt, which the callback's own
 * retries may repeat.
 */
export function webhookNotifier(options: WebhookNotifierOptions): CallbackFunction {
  if ((options.url === undefined) === (options.urlFromEnv === undefined)) {
    throw new DagValidationError('webhookNotifier: give exactly one of url and urlFromEnv');
  }
  if (options.url !== undefined) {
    const problem = urlProblem(options.url);
    if (problem) throw new DagValidationError(`webhookNotifier: url ${problem}`);
  }
  const timeoutMs = parseDuration(options.timeout ?? '10s', 'webhookNotifier timeout');
  if (!(timeoutMs > 0 && timeoutMs <= CALLBACK_MAX_TIMEOUT_MS)) {
    throw new DagValidationError(
      `webhookNotifier: timeout must be more than 0 and at most ${CALLBACK_MAX_TIMEOUT_MS / 60_000} minutes (the longest a callback attempt may run), got ${timeoutMs} ms`,
    );
  }
  const tries = options.tries ?? 3;
  if (!Number.isInteger(tries) || tries < 1 || tries > 10) {
    throw new DagValidationError(`webhookNotifier: tries must be an integer from 1 to 10, got ${tries}`);
  }
  const notify = async function webhookNotifier(ctx: CallbackContext): Promise<void> {
    const url = options.url ?? process.env[options.urlFromEnv as string];
    if (!url)
      throw new Error(
        `webhookNotifier: the environment variable ${options.urlFromEnv} is not set where this callback runs (a triggerer runs async callbacks: set it there too; on AWS, the construct's dagEnvironment)`,
      );
    // Never the value itself in a message: a webhook URL often carries its secret.
    const problem = urlProblem(url);
    if (problem) throw new Error(`webhookNotifier: the URL in ${options.urlFromEnv ?? 'url'} ${problem}`);
    const body = JSON.stringify(summaryOf(ctx));
    // The notifier's own headers win over the author's of the same name, whatever its case.
    const headers = new Headers(options.headers);
    headers.set('content-type', 'application/json');
    headers.set('idempotency-key', ctx.idempotencyKey);
    if (options.signingSecretFromEnv !== undefined) {
      const secret = process.env[options.signingSecretFromEnv];
      if (!secret) {
        throw new Error(
          `webhookNotifier: the environment variable ${options.signingSecretFromEnv} is not set where this callback runs (a triggerer runs async callbacks: set it there too; on AWS, the construct's dagEnvironment)`,
        );
      }
      headers.set('updraft-signature', `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`);
    }
    const send = options.fetch ?? fetch;
    let last = '';
    for (let attempt = 1; attempt <= tries; attempt++) {
      try {
        const response = await send(url, {
          method: 'POST',
          headers,
          body,
          signal: AbortSignal.any([ctx.signal, AbortSignal.timeout(timeoutMs)]),
        });
        await response.body?.cancel();
        if (response.ok) {
          ctx.log(`webhook answered ${response.status}`);
          return;
        }
        last = `the webhook answered ${response.status}`;
        if (!retryable(response.status)) throw new Error(`webhookNotifier: ${last}`);
      } catch (error) {
        if (ctx.signal.aborted) throw new Error('webhookNotifier: stopped (the attempt timed out)');
        if (error instanceof Error && error.message.startsWith('webhookNotifier:')) throw error;
        last = `the webhook could not be reached (${reasonOf(error)})`;
      }
      ctx.log(`request ${attempt} of ${tries}: ${last}`);
      if (attempt < tries) await systemClock.sleep(250 * 2 ** (attempt - 1), ctx.signal);
    }
    throw new Error(`webhookNotifier: ${last} (after ${tries} requests)`);
  };
  return notify;
}

/** Why a URL cannot be a webhook's, without repeating it; undefined when it can. */
function urlProblem(url: string): string | undefined {
  if (!URL.canParse(url)) return 'is not a URL';
  const parsed = new URL(url);
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') return 'is not an http(s) URL';
  if (parsed.username !== '' || parsed.password !== '')
    return 'carries credentials (fetch refuses them): send them in headers instead';
  return undefined;
}

/** A network error's kind (its code, e.g. ECONNREFUSED), never its message: that may quote the URL. */
function reasonOf(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown } } | undefined)?.cause;
  if (typeof cause?.code === 'string') return cause.code;
  if (error instanceof Error && error.name === 'TimeoutError') return 'timed out';
  return error instanceof Error ? error.name : 'unknown error';
}

/** SNS's longest FIFO message group id. */
const SNS_GROUP_ID_MAX = 128;

export interface SnsNotifierOptions {
  topicArn: string;
  /** Default: `subjectOf(ctx)`. Ignored by FIFO topics' email subscribers as by SNS. */
  subject?: string;
  /** For tests, or a client of your own (region, credentials); default: a client from the environment. */
  client?: Pick<SNSClient, 'send'>;
}

/**
 * Publishes the notification summary (JSON) to an SNS topic. On a FIFO topic (`….fifo`) the
 * callback's idempotency key is the deduplication id, so a second delivery within SNS's five-minute
 * window is dropped by SNS: the effect happens once. The role running it (the triggerer's, or the worker's) needs `sns:Publish`.
 */
export function snsNotifier(options: SnsNotifierOptions): CallbackFunction {
  if (!/^arn:aws[a-z-]*:sns:/.test(options.topicArn)) {
    throw new DagValidationError(
      `snsNotifier: topicArn ${JSON.stringify(options.topicArn)} is not an SNS topic ARN`,
    );
  }
  const fifo = options.topicArn.endsWith('.fifo');
  return async function snsNotifier(ctx: CallbackContext): Promise<void> {
    const { PublishCommand, SNSClient } = await import('@aws-sdk/client-sns');
    const client = options.client ?? new SNSClient({});
    const output = await client.send(
      new PublishCommand({
        TopicArn: options.topicArn,
        Subject: options.subject ?? subjectOf(ctx),
        Message: JSON.stringify(summaryOf(ctx)),
        ...(fifo
          ? {
              MessageGroupId: ctx.dagId.slice(0, SNS_GROUP_ID_MAX),
              MessageDeduplicationId: ctx.idempotencyKey,
            }
          : {}),
      }),
      { abortSignal: ctx.signal },
    );
    ctx.log(`published to ${options.topicArn}: message ${output.MessageId ?? '?'}`);
  };
}

export interface SesEmailNotifierOptions {
  from: string;
  to: string | string[];
  /** Default: `subjectOf(ctx)`. */
  subject?: string;
  client?: Pick<SESv2Client, 'send'>;
}

/**
 * Sends the notification summary as a plain-text email through SES (v2). SES does not deduplicate:
 * a second delivery after a lost attempt can send a second email. The role running it (the
 * triggerer's, or the worker's) needs `ses:SendEmail` on the sending identity.
 */
export function sesEmailNotifier(options: SesEmailNotifierOptions): CallbackFunction {
  const to = Array.isArray(options.to) ? options.to : [options.to];
  if (to.length === 0 || to.length > 50) {
    throw new DagValidationError(`sesEmailNotifier: give 1 to 50 recipients, got ${to.length}`);
  }
  return async function sesEmailNotifier(ctx: CallbackContext): Promise<void> {
    const { SendEmailCommand, SESv2Client } = await import('@aws-sdk/client-sesv2');
    const client = options.client ?? new SESv2Client({});
    const summary = summaryOf(ctx);
    const text = Object.entries(summary)
      .filter(([, value]) => value !== null)
      .map(([key, value]) => `${key}: ${typeof value === 'object' ? JSON.stringify(value) : String(value)}`)
      .join('\n');
    const output = await client.send(
      new SendEmailCommand({
        FromEmailAddress: options.from,
        Destination: { ToAddresses: to },
        Content: {
          Simple: {
            Subject: { Data: options.subject ?? subjectOf(ctx) },
            Body: { Text: { Data: text } },
          },
        },
      }),
      { abortSignal: ctx.signal },
    );
    ctx.log(`email sent to ${to.join(', ')}: message ${output.MessageId ?? '?'}`);
  };
}
