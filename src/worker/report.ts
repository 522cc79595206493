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
  let body = { ...outcome, report_id: reportId, ...(chunk ? { log: chunk } : {}) };
  for (;;) {
    try {
      await client.finish(delivery.token(), key, body, { retry, timeoutMs: REPORT_TIMEOUT_MS });
      return true;
    } catch (error) {
      if (error instanceof HttpError && error.status === 413 && body.log !== undefined) {
        // Log volume never changes an outcome: send it again without its log chunk.
        log.warn(
          `The log chunk of try ${tryNumber}'s report was refused as too large; reporting without it`,
          {
            detail: error.detail,
          },
        );
        const { log: _dropped, ...withoutLog } = body;
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
