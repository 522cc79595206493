import { randomUUID } from 'node:crypto';
import type { TaskInstanceKey } from '#core/models.ts';
import type { Logger } from '#engine/logger.ts';
import { HttpError } from '#http/errors.ts';
import type { MetricsRegistry } from '#metrics/registry.ts';
import type { ExecutionClient, FinishState, LogChunk } from './execution-client.ts';

/** Backoff between report attempts; the window (not the attempt count) bounds them. */
const REPORT_RETRY = { baseDelayMs: 250, maxDelayMs: 10_000 };
const REPORT_TIMEOUT_MS = 10_000;

export interface ReportDelivery {
  client: ExecutionClient;
  log: Logger;
  metrics?: MetricsRegistry;
  key: TaskInstanceKey;
  tryNumber: number;
  /** The try's current token (refreshed tokens are swapped in by the heartbeat). */
  token(): string;
  /** UPDRAFT_XCOM_MAX_BYTES as the API announced it, named when a report with an XCom is too large. */
  xcomMaxBytes?: number;
}

/**
 * The failure reported instead of a success whose XCom made the report too large for one request.
 * It names the XCom and its limit: the request limit is an implementation detail of the report.
 */
export function xcomRefusedMessage(taskId: string, xcom: string, xcomMaxBytes: number | undefined): string {
  const limit =
    xcomMaxBytes === undefined ? '' : ` The XCom limit is ${xcomMaxBytes} bytes (UPDRAFT_XCOM_MAX_BYTES).`;
  return `Task '${taskId}' returned an XCom of ${Buffer.byteLength(xcom, 'utf8')} bytes, too large for the Execution API to accept in the report.${limit} Return less, or store the data elsewhere and return a reference`;
}

/** What a report came to: whether the API recorded it, and the outcome the last attempt carried. */
export interface ReportResult {
  reported: boolean;
  /** The outcome reported (or last tried): a success whose XCom was refused becomes `failed`. */
  outcome: FinishState['state'];
}

/** `reportOutcome`, answering only whether the API recorded the report. */
export async function deliverReport(
  delivery: ReportDelivery,
  outcome: FinishState,
  chunk: LogChunk | undefined,
  deadline: number | undefined,
): Promise<boolean> {
  return (await reportOutcome(delivery, outcome, chunk, deadline)).reported;
}

/**
 * Delivers a try's outcome once. One `report_id` for the outcome, reused by every attempt, so a
 * report whose response was lost is answered "duplicate" rather than applied twice. Attempts
 * go on with backoff and jitter until `deadline` (the last successful heartbeat plus the
 * heartbeat timeout: from then on the scheduler treats the try as a zombie), the last one at
 * the deadline. `deadline` undefined: one attempt only.
 *
 * A 413 is read in order: a report carrying a log chunk first sends the chunk on a heartbeat of
 * its own and goes again without it (the chunk and the XCom may each fit, but not together: log
 * volume never changes an outcome). Only a success whose report is still too large without a
 * log is blamed on its XCom, and becomes a failure naming the XCom limit.
 */
export async function reportOutcome(
  delivery: ReportDelivery,
  outcome: FinishState,
  chunk: LogChunk | undefined,
  deadline: number | undefined,
): Promise<ReportResult> {
  const { client, log, metrics, key, tryNumber } = delivery;
  const reportId = randomUUID();
  const retry = deadline === undefined ? { attempts: 1 } : { ...REPORT_RETRY, attempts: Infinity, deadline };
  let body: FinishState & { report_id: string; log?: LogChunk } = {
    ...outcome,
    report_id: reportId,
    ...(chunk ? { log: chunk } : {}),
  };
  const result = (reported: boolean): ReportResult => ({ reported, outcome: body.state });
  for (;;) {
    try {
      await client.finish(delivery.token(), key, body, { retry, timeoutMs: REPORT_TIMEOUT_MS });
      return result(true);
    } catch (error) {
      const tooLarge = error instanceof HttpError && error.status === 413;
      if (tooLarge && body.log !== undefined && body.state !== 'failed') {
        // The chunk and the rest of the report together are over the request limit (each fits
        // alone): the chunk goes on a heartbeat of its own (the try still runs), then the report
        // without it.
        const { log: chunkToSend, ...withoutLog } = body;
        if (!(await shipChunk(delivery, chunkToSend))) {
          log.warn(`The last log chunk of try ${tryNumber} could not be delivered; reporting without it`, {
            detail: error.detail,
          });
        }
        body = withoutLog;
        continue;
      }
      if (tooLarge && body.state === 'success' && body.xcom) {
        // Too large even without a log: the XCom is. The try fails, and its log says why.
        const message = xcomRefusedMessage(key.taskId, body.xcom, delivery.xcomMaxBytes);
        log.warn(message, { detail: error.detail });
        const line = `[${new Date().toISOString()}] {ERROR} Task failed: ${message}\n`;
        body = {
          state: 'failed',
          error_message: message,
          retryable: false,
          report_id: reportId,
          // The same seq again, now ending with the error (the store keeps the latest copy).
          ...(chunk ? { log: { seq: chunk.seq, text: chunk.text + line } } : {}),
        };
        continue;
      }
      if (
        tooLarge &&
        body.state === 'failed' &&
        body.log !== undefined &&
        !body.log.text.startsWith('[updraft]')
      ) {
        // Keep at least the error that ended the try in its log.
        log.warn(
          `The log chunk of try ${tryNumber}'s report was refused as too large; reporting its error only`,
          {
            detail: error.detail,
          },
        );
        body = { ...body, log: { seq: body.log.seq, text: `[updraft] ${body.error_message}\n` } };
        continue;
      }
      if (tooLarge && body.log !== undefined) {
        // Even the error alone is refused: the report goes without a log.
        const { log: _refused, ...withoutLog } = body;
        body = withoutLog;
        continue;
      }
      if (
        body.state === 'deferred' &&
        error instanceof HttpError &&
        error.status !== undefined &&
        error.status !== 409 &&
        !error.retryable
      ) {
        // The API refuses this deferral (kwargs over their limit, a bad queue name): it would be
        // refused on every try, and an unreported try would only turn zombie. The try fails, saying why.
        const message = `The task's deferral was refused by the Execution API (${error.status}): ${error.detail}`;
        log.warn(message);
        const line = `[${new Date().toISOString()}] {ERROR} Task failed: ${message}\n`;
        body = {
          state: 'failed',
          error_message: message.slice(0, 10_000),
          retryable: false,
          report_id: reportId,
          ...(chunk ? { log: { seq: chunk.seq, text: chunk.text + line } } : {}),
        };
        continue;
      }
      if (error instanceof HttpError && error.status === 409) {
        metrics?.increment('worker.reports_too_late');
        log.warn(`Outcome of try ${tryNumber} arrived too late: the task instance moved on`, {
          state: body.state,
          detail: error.detail,
        });
        return result(false);
      }
      metrics?.increment('worker.reports_lost');
      const retryable = error instanceof HttpError && error.retryable;
      log.error(
        retryable
          ? `Gave up reporting try ${tryNumber} as ${body.state}: the Execution API stayed unreachable past the heartbeat timeout; the scheduler treats the try as a zombie`
          : `Report of try ${tryNumber} as ${body.state} was refused`,
        { error: error instanceof Error ? error.message : String(error) },
      );
      return result(false);
    }
  }
}

/** One chunk on a heartbeat of its own, best effort: whether the API took it. */
async function shipChunk(delivery: ReportDelivery, chunk: LogChunk): Promise<boolean> {
  try {
    await delivery.client.heartbeat(
      delivery.token(),
      delivery.key,
      { log: chunk },
      { retry: { attempts: 2 }, timeoutMs: REPORT_TIMEOUT_MS },
    );
    return true;
  } catch {
    return false;
  }
}
