import type { CallbackErrorType, CallbackKind } from '#core/callbacks.ts';
import type { DeadlineContext } from '#core/deadlines.ts';

/**
 * What a callback function receives. The worker builds it for each attempt of a callback item;
 * a callback may run more than once for one cause (a retry, or a worker lost mid-attempt), so
 * anything it does outside Updraft should be keyed on `idempotencyKey`.
 */
export interface CallbackContext {
  /** Which event the callback runs for (task_failure, dag_success…). */
  readonly kind: CallbackKind;
  readonly callbackId: string;
  /** The callback id: the same cause always gives the same key, across attempts and duplicates. */
  readonly idempotencyKey: string;
  /** 1 on the first attempt; `maxAttempts` counts the first. */
  readonly attempt: number;
  readonly maxAttempts: number;
  /**
   * True from the second attempt on: an earlier attempt ran and failed or was lost (a worker that
   * died, a timeout), and its side effects may have happened, so the callback should check before
   * repeating them.
   */
  readonly previousAttemptMayHaveRun: boolean;
  readonly dagId: string;
  readonly runId: string;
  /** ISO-8601. */
  readonly logicalDate: string;
  /** The conf the run was triggered with. */
  readonly conf: Record<string, unknown>;
  /** For task callbacks: the task instance and the try that owes the callback. */
  readonly taskId?: string;
  readonly mapIndex?: number;
  readonly tryNumber?: number;
  /** For failure and retry callbacks: why the task or the run failed. */
  readonly errorMessage?: string;
  readonly errorType?: CallbackErrorType;
  /**
   * For `deadline_missed`: the deadline (`at`, ISO-8601), what it counted from, and how late the
   * run was when the miss was recorded (`lateByMs`: 0 when seen at once, more when a tick caught it).
   */
  readonly deadline?: DeadlineContext;
  /** Writes a line to the callback's log. */
  log(...args: unknown[]): void;
  /**
   * Aborts when the attempt is stopped (its timeout). In standalone the callback's process is
   * killed soon after; on Lambda it cannot be, so a callback should stop its work when this aborts.
   */
  readonly signal: AbortSignal;
}
