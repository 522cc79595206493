import {
  ConflictException,
  CreateScheduleCommand,
  SchedulerClient,
  ValidationException,
} from '@aws-sdk/client-scheduler';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { allCustomMatcher } from 'aws-sdk-client-mock-vitest';
import type {} from 'aws-sdk-client-mock-vitest/extend';
import { beforeEach, describe, expect, it } from 'vitest';
import { AWS_ENV } from '#aws/environment.ts';
import { WakeTimerError } from '#aws/errors.ts';
import { SqsQueue } from '#aws/sqs-queue.ts';
import { AwsWakeTimers, scheduleNameOf, wakeTimerSettingsFrom } from '#aws/wake-timers.ts';
import { schedulerMessageSchema } from '#contracts/messages.ts';
import type { DagRunKey } from '#core/models.ts';
import { createLogger } from '#engine/logger.ts';
import { requestScheduling } from '#engine/scheduling-requests.ts';
import type { Queues } from '#queue/port.ts';

expect.extend(allCustomMatcher);

const NOW = Date.parse('2026-03-01T12:00:00.000Z');
const QUEUE_URL = 'https://sqs.eu-west-1.amazonaws.com/123456789012/updraft-scheduler';
const TARGET_ARN = 'arn:aws:sqs:eu-west-1:123456789012:updraft-scheduler';
const ROLE_ARN = 'arn:aws:iam::123456789012:role/updraft-timers';
const GROUP = 'updraft-wake-timers';
const run: DagRunKey = { dagId: 'example_etl', runId: 'manual__2026-03-01T11:59:00+00:00' };
const BODY = '{"type":"schedule_run","dag_id":"example_etl","run_id":"manual__2026-03-01T11:59:00+00:00"}';

const sqs = mockClient(SQSClient);
const scheduler = mockClient(SchedulerClient);

function makeTimers(now = NOW): AwsWakeTimers {
  return new AwsWakeTimers({
    queue: new SqsQueue({ client: new SQSClient({}), queueUrl: QUEUE_URL, name: 'scheduler' }),
    scheduler: new SchedulerClient({}),
    targetArn: TARGET_ARN,
    roleArn: ROLE_ARN,
    groupName: GROUP,
    now: () => now,
  });
}

beforeEach(() => {
  sqs.reset();
  scheduler.reset();
  sqs
    .on(SendMessageBatchCommand)
    .resolves({ Successful: [{ Id: '0', MessageId: 'm', MD5OfMessageBody: 'x' }] });
});

describe('AwsWakeTimers', () => {
  it('sends the body the engine sends for a scheduling request, which the scheduler accepts', async () => {
    const engineQueue = new SqsQueue({ client: new SQSClient({}), queueUrl: QUEUE_URL, name: 'scheduler' });
    await requestScheduling(
      { queues: { scheduler: engineQueue } as unknown as Queues, log: createLogger({ level: 'error' }) },
      [run],
    );
    await makeTimers().wakeAt(run, NOW + 60_000);

    const [fromEngine, fromTimer] = sqs
      .commandCalls(SendMessageBatchCommand)
      .map((call) => call.args[0].input.Entries?.[0]?.MessageBody);
    expect(fromTimer).toBe(fromEngine);
    expect(fromTimer).toBe(BODY);
    expect(schedulerMessageSchema.parse(JSON.parse(BODY))).toEqual({
      type: 'schedule_run',
      dag_id: run.dagId,
      run_id: run.runId,
    });
  });

  it('wakes 900 s ahead with a scheduling request delayed 900 s on the scheduler queue', async () => {
    await makeTimers().wakeAt(run, NOW + 900_000);

    expect(sqs).toHaveReceivedCommandExactlyOnceWith(SendMessageBatchCommand, {
      QueueUrl: QUEUE_URL,
      Entries: [{ Id: '0', MessageBody: BODY, DelaySeconds: 900 }],
    });
    expect(scheduler).not.toHaveReceivedAnyCommand();
  });

  it('rounds a delay up to whole seconds and sends a due or past wake at once', async () => {
    await makeTimers().wakeAt(run, NOW + 1_200);
    await makeTimers().wakeAt(run, NOW - 5_000);

    expect(sqs).toHaveReceivedNthCommandWith(SendMessageBatchCommand, 1, {
      Entries: [{ Id: '0', MessageBody: BODY, DelaySeconds: 2 }],
    });
    expect(sqs).toHaveReceivedNthCommandWith(SendMessageBatchCommand, 2, {
      Entries: [{ Id: '0', MessageBody: BODY, DelaySeconds: 0 }],
    });
  });

  it('wakes 901 s ahead with a one-time EventBridge Scheduler schedule sending the same body', async () => {
    scheduler.on(CreateScheduleCommand).resolves({ ScheduleArn: 'arn' });

    await makeTimers().wakeAt(run, NOW + 901_000);

    expect(sqs).not.toHaveReceivedAnyCommand();
    expect(scheduler.commandCalls(CreateScheduleCommand).map((call) => call.args[0].input)).toEqual([
      {
        Name: scheduleNameOf(run, NOW + 901_000),
        GroupName: GROUP,
        ScheduleExpression: 'at(2026-03-01T12:15:01)',
        ScheduleExpressionTimezone: 'UTC',
        FlexibleTimeWindow: { Mode: 'OFF' },
        ActionAfterCompletion: 'DELETE',
        Target: { Arn: TARGET_ARN, RoleArn: ROLE_ARN, Input: BODY },
      },
    ]);
  });

  it('schedules a wake just over 900 s ahead for the next whole second', async () => {
    scheduler.on(CreateScheduleCommand).resolves({});

    await makeTimers().wakeAt(run, NOW + 900_001);

    expect(sqs).not.toHaveReceivedAnyCommand();
    expect(scheduler).toHaveReceivedCommandExactlyOnceWith(CreateScheduleCommand, {
      ScheduleExpression: 'at(2026-03-01T12:15:01)',
    });
  });

  it('treats ConflictException as the same wake already set', async () => {
    scheduler.on(CreateScheduleCommand).rejects(
      new ConflictException({
        message: 'Schedule already exists.',
        Message: 'Schedule already exists.',
        $metadata: {},
      }),
    );

    await expect(makeTimers().wakeAt(run, NOW + 3_600_000)).resolves.toBeUndefined();
    expect(scheduler).toHaveReceivedCommandTimes(CreateScheduleCommand, 1);
  });

  it('throws a WakeTimerError naming the schedule when CreateSchedule fails otherwise', async () => {
    const cause = new ValidationException({ message: 'bad role', Message: 'bad role', $metadata: {} });
    scheduler.on(CreateScheduleCommand).rejects(cause);
    const dueMs = NOW + 3_600_000;

    const waking = makeTimers().wakeAt(run, dueMs);

    await expect(waking).rejects.toThrow(WakeTimerError);
    await expect(waking).rejects.toMatchObject({
      message: `Could not create schedule ${scheduleNameOf(run, dueMs)} in group ${GROUP} to wake run example_etl/manual__2026-03-01T11:59:00+00:00 at 2026-03-01T13:00:00.000Z: bad role`,
      cause,
    });
  });

  it('throws a WakeTimerError when the delayed message is not taken', async () => {
    sqs.on(SendMessageBatchCommand).resolves({
      Failed: [{ Id: '0', SenderFault: false, Code: 'InternalError', Message: 'busy' }],
    });

    await expect(makeTimers().wakeAt(run, NOW + 60_000)).rejects.toThrow(WakeTimerError);
    // sendAll retries refused entries before giving up.
    expect(sqs).toHaveReceivedCommandTimes(SendMessageBatchCommand, 3);
  });

  it('refuses a time that is not a number', async () => {
    await expect(makeTimers().wakeAt(run, Number.NaN)).rejects.toThrow(WakeTimerError);
    expect(sqs).not.toHaveReceivedAnyCommand();
    expect(scheduler).not.toHaveReceivedAnyCommand();
  });

  it('refuses a queue other than the scheduler queue', () => {
    expect(
      () =>
        new AwsWakeTimers({
          queue: new SqsQueue({ client: new SQSClient({}), queueUrl: QUEUE_URL, name: 'tasks_default' }),
          scheduler: new SchedulerClient({}),
          targetArn: TARGET_ARN,
          roleArn: ROLE_ARN,
          groupName: GROUP,
        }),
    ).toThrow(WakeTimerError);
  });
});

describe('scheduleNameOf', () => {
  const dueMs = Date.parse('2026-03-01T12:15:01.000Z');

  it('is the same for the same run and due second, so a repeated wake meets its own schedule', () => {
    expect(scheduleNameOf(run, dueMs)).toBe(scheduleNameOf({ ...run }, dueMs));
    expect(scheduleNameOf(run, dueMs)).toMatch(/^example_etl-20260301T121501-[0-9a-f]{32}$/);
  });

  it('differs between runs, DAGs and due times', () => {
    const names = new Set([
      scheduleNameOf(run, dueMs),
      scheduleNameOf({ ...run, runId: `${run.runId}x` }, dueMs),
      scheduleNameOf({ ...run, dagId: 'example_et' }, dueMs),
      scheduleNameOf(run, dueMs + 1000),
      // Same readable head: only the hash, which must separate the DAG id from the run id, tells these apart.
      scheduleNameOf({ dagId: `${'x'.repeat(15)}a`, runId: 'bc' }, dueMs),
      scheduleNameOf({ dagId: `${'x'.repeat(15)}ab`, runId: 'c' }, dueMs),
    ]);
    expect(names.size).toBe(6);
  });

  it('fits EventBridge Scheduler names for the longest ids', () => {
    const name = scheduleNameOf({ dagId: 'd'.repeat(250), runId: ':'.repeat(250) }, dueMs);
    expect(name).toMatch(/^[0-9A-Za-z_.-]{1,64}$/);
    expect(name).toHaveLength(64);
  });
});

describe('wakeTimerSettingsFrom', () => {
  it('reads the target, role and group the timer construct sets', () => {
    expect(
      wakeTimerSettingsFrom({
        [AWS_ENV.timerTargetArn]: TARGET_ARN,
        [AWS_ENV.timerRoleArn]: ROLE_ARN,
        [AWS_ENV.timerGroupName]: GROUP,
      }),
    ).toEqual({ targetArn: TARGET_ARN, roleArn: ROLE_ARN, groupName: GROUP });
  });

  it('names a missing variable', () => {
    expect(() => wakeTimerSettingsFrom({ [AWS_ENV.timerTargetArn]: TARGET_ARN })).toThrow(
      AWS_ENV.timerRoleArn,
    );
  });
});
