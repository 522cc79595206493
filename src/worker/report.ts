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

/**
 * Delivers a try's outcome once. One `report_id` for the outcome, reused by every attempt, so a
 * report whose response was lost is answered "duplicate" rather than applied twice. Attempts
 * go on with backoff and jitter until `deadline` (the last successful heartbeat plus the
 * heartbeat timeout: from then on the scheduler treats the try as a zombie), the last one at
 * the deadline. `deadline` undefined: one attempt only. Returns whether the API recorded it.
 */
export async function deliverReport(
  delivery: ReportDelivery,
  outcome: FinishState,
  chunk: LogChunk | undefined,
  deadline: number | undefined,
): Promise<boolean> {
  const { client, log, metrics, key, tryNumber } = delivery;
  const reportId = randomUUID();
  const retry = deadline === undefined ? { attempts: 1 } : { ...REPORT_RETRY, attempts: Infinity, deadline };
  let body: FinishState & { report_id: string; log?: LogChunk } = {
    ...outcome,
    report_id: reportId,
    ...(chunk ? { log: chunk } : {}),
  };
  for (;;) {
    try {
      await client.finish(delivery.token(), key, body, { retry, timeoutMs: REPORT_TIMEOUT_MS });
      return true;
    } catch (error) {
      if (error instanceof HttpError && error.status === 413 && body.state === 'success' && body.xcom) {
        // The XCom made the report too large: the try fails, and its log says why.
        const message = xcomRefusedMessage(key.taskId, body.xcom, delivery.xcomMaxBytes);
        log.warn(message, { detail: error.detail });
        const line = `[${new Date().toISOString()}] {ERROR} Task failed: ${message}\n`;
        body = {
          state: 'failed',
          error_message: message,
          retryable: false,
          report_id: reportId,
          ...(chunk ? { log: { seq: chunk.seq, text: chunk.text + line } } : {}),
        };
        continue;
      }
      if (
        error instanceof HttpError &&
        error.status === 413 &&
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
      if (error instanceof HttpError && error.status === 413 && body.log !== undefined) {
        // The chunk and the XCom together are over the request limit (each fits alone): the chunk
        // goes on a heartbeat of its own (the try still runs), then the report without it. Log
        // volume never changes an outcome.
        const { log: chunkToSend, ...withoutLog } = body;
        const sent = await client
          .heartbeat(delivery.token(), key, { log: chunkToSend }, { retry: { attempts: 2 } })
          .then(
            () => true,
            () => false,
          );
        if (!sent) {
          log.warn(`The last log chunk of try ${tryNumber} could not be delivered; reporting without it`, {
            detail: error.detail,
          });
        }
        body = withoutLog;
        continue;
      }
      if (error instanceof HttpError && error.status === 409) {
        metrics?.increment('worker.reports_too_late');
        log.warn(`Outcome of try ${tryNumber} arrived too late: the task instance moved on`, {
          state: outcome.state,
          detail: error.detail,
        });
        return false;
      }
      metrics?.increment('worker.reports_lost');
      const retryable = error instanceof HttpError && error.retryable;
      log.error(
        retryable
          ? `Gave up reporting try ${tryNumber} as ${outcome.state}: the Execution API stayed unreachable past the heartbeat timeout; the scheduler treats the try as a zombie`
          : `Report of try ${tryNumber} as ${outcome.state} was refused`,
        { error: error instanceof Error ? error.message : String(error) },
      );
      return false;
    }
  }
}
