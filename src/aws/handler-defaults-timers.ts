import { SchedulerClient } from '@aws-sdk/client-scheduler';
import type { DepFactories } from './handler-deps.ts';
import { sdkClientLogger } from './handler-observability.ts';
import { AwsWakeTimers, wakeTimerSettingsFrom } from './wake-timers.ts';

/**
 * The wake timers: delayed messages on the scheduler queue up to 15 minutes, EventBridge
 * Scheduler one-time schedules beyond (`UPDRAFT_TIMER_*`).
 */
export const factories: Pick<DepFactories, 'timers'> = {
  timers: async (deps, { tracer, logger }) => {
    const [queues, now] = await Promise.all([deps.get('queues'), deps.get('now')]);
    return new AwsWakeTimers({
      queue: queues.scheduler,
      scheduler: tracer.captureAWSv3Client(new SchedulerClient({ logger: sdkClientLogger(logger) })),
      ...wakeTimerSettingsFrom(process.env),
      now,
    });
  },
};
