import { createHash } from 'node:crypto';
import { CreateScheduleCommand, type SchedulerClient } from '@aws-sdk/client-scheduler';
import type { SchedulingRequest } from '#contracts/messages.ts';
import type { DagRunKey } from '#core/models.ts';
import type { WakeTimers } from '#engine/ports.ts';
import type { Queue } from '#queue/port.ts';
import { sendAll } from '#queue/send.ts';
import { AWS_ENV, requireEnv } from './environment.ts';
import { awsErrorName, WakeTimerError } from './errors.ts';
import { SQS_MAX_DELAY_SECONDS } from './sqs-queue.ts';

/** EventBridge Scheduler's limits on a schedule name: 1–64 of `[0-9a-zA-Z-_.]`. */
const SCHEDULE_NAME_MAX = 64;
/** Hex digits of the run's hash in a schedule name: 128 bits, so two runs never share a name. */
const RUN_HASH_LENGTH = 32;
/** `20260301T121502`: the due second in a schedule name. */
const COMPACT_TIME_LENGTH = 15;

export interface AwsWakeTimersOptions {
  /** The `scheduler` queue: short waits are delayed messages on it. */
  queue: Queue;
  scheduler: SchedulerClient;
  /** ARN of the `scheduler` queue, where long waits' schedules deliver the same message. */
  targetArn: string;
  /** Role EventBridge Scheduler assumes to send to the queue. */
  roleArn: string;
  /** Schedule group holding the one-time schedules (one IAM scope, one place to look). */
  groupName: string;
  now?: () => number;
}

/** The timer settings the scheduler function gets from its construct. */
export function wakeTimerSettingsFrom(
  env: NodeJS.ProcessEnv,
): Pick<AwsWakeTimersOptions, 'targetArn' | 'roleArn' | 'groupName'> {
  return {
    targetArn: requireEnv(env, AWS_ENV.timerTargetArn),
    roleArn: requireEnv(env, AWS_ENV.timerRoleArn),
    groupName: requireEnv(env, AWS_ENV.timerGroupName),
  };
}

/**
 * Durable wake timers: a scheduling request for the run reaches the `scheduler` queue when the
 * run is due. Up to SQS's 900-second delay it is a delayed message; beyond, an EventBridge
 * Scheduler one-time schedule that sends the same body and deletes itself. A wake is only a
 * hint (the pass checks due times itself, and the periodic tick is the backstop), so a timer
 * set twice or arriving late is harmless; one that could not be set throws, because the caller
 * then has nothing else waking the run before the next tick. See ADAPTERS.md.
 */
export class AwsWakeTimers implements WakeTimers {
  readonly #options: AwsWakeTimersOptions;
  readonly #now: () => number;

  constructor(options: AwsWakeTimersOptions) {
    if (options.queue.name !== 'scheduler') {
      throw new WakeTimerError(
        `Wake timers deliver to the scheduler queue, not the ${options.queue.name} queue`,
      );
    }
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  async wakeAt(run: DagRunKey, atMs: number): Promise<void> {
    if (!Number.isFinite(atMs)) {
      throw new WakeTimerError(`Cannot wake run ${run.dagId}/${run.runId} at ${atMs}: not a time`);
    }
    // Whole seconds, rounded up: a wake that arrives early finds nothing due and costs a pass.
    const delaySeconds = Math.max(0, Math.ceil((atMs - this.#now()) / 1000));
    const body = JSON.stringify({
      type: 'schedule_run',
      dag_id: run.dagId,
      run_id: run.runId,
    } satisfies SchedulingRequest);
    if (delaySeconds <= SQS_MAX_DELAY_SECONDS) {
      try {
        await sendAll(this.#options.queue, [{ body, delaySeconds }]);
      } catch (error) {
        throw new WakeTimerError(
          `Could not send the delayed wake of run ${run.dagId}/${run.runId} (${delaySeconds} s): ${messageOf(error)}`,
          { cause: error },
        );
      }
      return;
    }
    await this.#createSchedule(run, Math.ceil(atMs / 1000) * 1000, body);
  }

  async #createSchedule(run: DagRunKey, dueMs: number, body: string): Promise<void> {
    const { scheduler, targetArn, roleArn, groupName } = this.#options;
    const name = scheduleNameOf(run, dueMs);
    try {
      await scheduler.send(
        new CreateScheduleCommand({
          Name: name,
          GroupName: groupName,
          ScheduleExpression: atExpressionOf(dueMs),
          ScheduleExpressionTimezone: 'UTC',
          // Precision of about a minute is enough for a hint; OFF keeps it from spreading further.
          FlexibleTimeWindow: { Mode: 'OFF' },
          ActionAfterCompletion: 'DELETE',
          Target: { Arn: targetArn, RoleArn: roleArn, Input: body },
        }),
      );
    } catch (error) {
      // The name is the run and due second: an existing schedule is this same wake, already set.
      if (awsErrorName(error) === 'ConflictException') return;
      throw new WakeTimerError(
        `Could not create schedule ${name} in group ${groupName} to wake run ${run.dagId}/${run.runId} ` +
          `at ${new Date(dueMs).toISOString()}: ${messageOf(error)}`,
        { cause: error },
      );
    }
  }
}

/** `at(2026-03-01T12:15:02)`: Scheduler's one-time expression, read in `ScheduleExpressionTimezone`. */
export function atExpressionOf(dueMs: number): string {
  return `at(${new Date(dueMs).toISOString().slice(0, 19)})`;
}

/**
 * `<DAG id head>-<due second>-<hash of the run>`: the same run and due second always give the
 * same name, so a repeated `wakeAt` meets its own schedule. The DAG id head is only there for a
 * reader of the console; the hash of the full DAG and run ids keeps runs apart.
 */
export function scheduleNameOf(run: DagRunKey, dueMs: number): string {
  const compactTime = new Date(dueMs).toISOString().slice(0, 19).replace(/[-:]/g, '');
  const hash = createHash('sha256')
    .update(JSON.stringify([run.dagId, run.runId]))
    .digest('hex')
    .slice(0, RUN_HASH_LENGTH);
  const headRoom = SCHEDULE_NAME_MAX - COMPACT_TIME_LENGTH - RUN_HASH_LENGTH - 2;
  const head = run.dagId.replace(/[^0-9A-Za-z_.-]/g, '_').slice(0, headRoom);
  return head === '' ? `${compactTime}-${hash}` : `${head}-${compactTime}-${hash}`;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
