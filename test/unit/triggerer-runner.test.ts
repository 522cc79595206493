import { afterEach, describe, expect, it } from 'vitest';
import type { TriggerEventBody, TriggerFailureBody, TriggerWorkload } from '#contracts/triggers.ts';
import type { Logger } from '#engine/logger.ts';
import { MetricsRegistry } from '#metrics/registry.ts';
import { deserialize, serialize } from '#sdk/serde.ts';
import {
  BaseTrigger,
  type TriggerEvent,
  type TriggerRunContext,
  taskSuccessEvent,
  triggerEvent,
} from '#sdk/triggers/base.ts';
import { registerTrigger } from '#sdk/triggers/registry.ts';
import { type TriggerReports, TriggerRunner, type TriggerRunnerOptions } from '#triggerer/runner.ts';

/** What the runner hands on, as the outbox would get it. */
class RecordingReports implements TriggerReports {
  events = new Map<string, TriggerEventBody>();
  failures = new Map<string, TriggerFailureBody>();
  logs: { triggerId: string; seq: number; text: string }[] = [];
  event(triggerId: string, body: TriggerEventBody): void {
    this.events.set(triggerId, body);
  }
  failure(triggerId: string, body: TriggerFailureBody): void {
    this.failures.set(triggerId, body);
  }
  log(triggerId: string, chunk: { seq: number; text: string }): void {
    this.logs.push({ triggerId, ...chunk });
  }
}

interface LogLine {
  level: string;
  message: string;
  fields?: Record<string, unknown>;
}

function recordingLogger(lines: LogLine[]): Logger {
  const at = (level: string) => (message: string, fields?: Record<string, unknown>) =>
    lines.push({ level, message, ...(fields ? { fields } : {}) });
  const logger: Logger = {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: () => logger,
  };
  return logger;
}

/** What the test triggers did, by trigger id. */
const cleanedUp = new Set<string>();
const finished = new Set<string>();
const ran: string[] = [];

class FireAfterTrigger extends BaseTrigger<{ id: string; ms: number; type?: 'resume' | 'success' }> {
  static override readonly triggerName = 'test.FireAfter';
  override async *run(ctx: TriggerRunContext): AsyncGenerator<TriggerEvent, void, void> {
    ran.push(this.kwargs.id);
    try {
      ctx.log.info('waiting', { ms: this.kwargs.ms });
      await ctx.sleepUntil(ctx.now() + this.kwargs.ms);
      yield this.kwargs.type === 'success'
        ? taskSuccessEvent({ id: this.kwargs.id })
        : triggerEvent({ at: 1 });
      yield triggerEvent('never');
    } finally {
      finished.add(this.kwargs.id);
    }
  }
  override async cleanup(): Promise<void> {
    cleanedUp.add(this.kwargs.id);
  }
}

class ThrowingTrigger extends BaseTrigger<{ id: string }> {
  static override readonly triggerName = 'test.Throwing';
  // biome-ignore lint/correctness/useYield: a trigger that throws before any event is what it tests.
  override async *run(ctx: TriggerRunContext): AsyncGenerator<TriggerEvent, void, void> {
    await ctx.sleepUntil(ctx.now() + 5);
    throw new Error('the sensor broke');
  }
  override async cleanup(): Promise<void> {
    cleanedUp.add(this.kwargs.id);
  }
}

class SilentTrigger extends BaseTrigger<{ id: string }> {
  static override readonly triggerName = 'test.Silent';
  override async *run(): AsyncGenerator<TriggerEvent, void, void> {}
}

class BusyTrigger extends BaseTrigger<{ id: string; busyMs: number; afterSleep: boolean }> {
  static override readonly triggerName = 'test.Busy';
  override async *run(ctx: TriggerRunContext): AsyncGenerator<TriggerEvent, void, void> {
    if (this.kwargs.afterSleep) await ctx.sleepUntil(ctx.now() + 5);
    const until = performance.now() + this.kwargs.busyMs;
    while (performance.now() < until) {
      // holds the event loop, as a trigger calling blocking code would
    }
    await ctx.sleepUntil(ctx.now() + 150);
    yield triggerEvent('done');
  }
}

for (const cls of [FireAfterTrigger, ThrowingTrigger, SilentTrigger, BusyTrigger]) registerTrigger(cls);

let nextId = 0;
function workload(name: string, kwargs: Record<string, unknown>): TriggerWorkload {
  nextId += 1;
  return {
    trigger_id: `t-${nextId}`,
    name,
    kwargs: serialize(kwargs),
    queue: 'default',
    ti: { dag_id: 'd', run_id: 'r', task_id: 'wait', map_index: -1, try_number: 1 },
    deferral_seq: 1,
    timeout_at: null,
  };
}

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const runners: TriggerRunner[] = [];
function makeRunner(options: Partial<TriggerRunnerOptions> = {}) {
  const reports = new RecordingReports();
  const lines: LogLine[] = [];
  const metrics = new MetricsRegistry();
  const runner = new TriggerRunner({
    capacity: 10,
    reports,
    allowedDeserializationClasses: ['updraft.*'],
    blockedThresholdMs: 100,
    log: recordingLogger(lines),
    metrics,
    hostname: 'host-a',
    ...options,
  });
  runners.push(runner);
  return { runner, reports, lines, metrics };
}

afterEach(async () => {
  for (const runner of runners.splice(0)) {
    await runner.cancelAll();
    runner.close();
  }
});

describe('TriggerRunner', () => {
  it('reports the first event with its type and payload, then stops the generator', async () => {
    const { runner, reports, metrics } = makeRunner();
    const job = workload('test.FireAfter', { id: 'first', ms: 10, type: 'success' });
    expect(runner.start(job)).toBe(true);

    await until(() => reports.events.has(job.trigger_id));
    const event = reports.events.get(job.trigger_id);
    expect(event?.type).toBe('success');
    expect(deserialize(event?.payload ?? '', { allowed: [] })).toEqual({ id: 'first' });
    expect(finished.has('first')).toBe(true);
    expect(cleanedUp.has('first')).toBe(true);
    expect(runner.running).toBe(0);
    expect((await metrics.snapshot()).counters['triggers.succeeded']).toBe(1);
  });

  it('sends a resume event as resume, with the trigger log attached', async () => {
    const { runner, reports } = makeRunner();
    const job = workload('test.FireAfter', { id: 'resume', ms: 5 });
    runner.start(job);

    await until(() => reports.events.has(job.trigger_id));
    const event = reports.events.get(job.trigger_id);
    expect(event?.type).toBe('resume');
    expect(event?.log?.seq).toBe(1);
    expect(event?.log?.text).toMatch(/\{INFO\} waiting \{"ms":5\}/);
  });

  it('reports a failure with the error message when the trigger throws, and still cleans up', async () => {
    const { runner, reports, metrics } = makeRunner();
    const job = workload('test.Throwing', { id: 'throws' });
    runner.start(job);

    await until(() => reports.failures.has(job.trigger_id));
    const failure = reports.failures.get(job.trigger_id);
    expect(failure?.error).toBe('the sensor broke');
    expect(failure?.log?.text).toContain('Error: the sensor broke');
    expect(cleanedUp.has('throws')).toBe(true);
    expect((await metrics.snapshot()).counters['triggers.failed']).toBe(1);
  });

  it('reports a trigger that is not registered here as a failure naming it and this triggerer', async () => {
    const { runner, reports } = makeRunner();
    const job = workload('myco.NowhereTrigger', {});
    runner.start(job);

    await until(() => reports.failures.has(job.trigger_id));
    const { error } = reports.failures.get(job.trigger_id) ?? { error: '' };
    expect(error).toContain('trigger "myco.NowhereTrigger" is not registered on this triggerer (host-a)');
  });

  it('reports a trigger that ends without an event as a failure', async () => {
    const { runner, reports } = makeRunner();
    const job = workload('test.Silent', { id: 'silent' });
    runner.start(job);

    await until(() => reports.failures.has(job.trigger_id));
    expect(reports.failures.get(job.trigger_id)?.error).toContain('ended without firing an event');
  });

  it('refuses kwargs naming a class outside the allowlist', async () => {
    const { runner, reports } = makeRunner({ allowedDeserializationClasses: [] });
    const job = workload('test.FireAfter', { id: 'dated', ms: 1, when: new Date(0) });
    runner.start(job);

    await until(() => reports.failures.has(job.trigger_id));
    expect(reports.failures.get(job.trigger_id)?.error).toContain(
      "Refusing to deserialize class 'updraft.Date'",
    );
    expect(ran).not.toContain('dated');
  });

  it('never runs more triggers than its capacity', async () => {
    const { runner, reports, metrics } = makeRunner({ capacity: 2 });
    const jobs = [1, 2, 3].map((n) => workload('test.FireAfter', { id: `cap-${n}`, ms: 30 }));

    expect(runner.start(jobs[0]!)).toBe(true);
    expect(runner.start(jobs[1]!)).toBe(true);
    expect(runner.start(jobs[2]!)).toBe(false);
    expect(runner.capacityLeft).toBe(0);
    expect((await metrics.snapshot()).gauges['triggers.running']).toBe(2);
    await until(() => reports.events.size === 2);
    expect(runner.capacityLeft).toBe(2);
    expect(runner.start(jobs[2]!)).toBe(true);
    expect(runner.start(jobs[2]!)).toBe(false);
  });

  it('cancels a trigger without reporting it, and runs its cleanup', async () => {
    const { runner, reports } = makeRunner();
    const job = workload('test.FireAfter', { id: 'cancelled', ms: 60_000 });
    runner.start(job);
    await until(() => ran.includes('cancelled'));

    await runner.cancel(job.trigger_id, { discardLog: true });

    expect(cleanedUp.has('cancelled')).toBe(true);
    expect(finished.has('cancelled')).toBe(true);
    expect(reports.events.size + reports.failures.size).toBe(0);
    expect(reports.logs).toEqual([]);
    expect(runner.running).toBe(0);
  });

  it('ships the log of a trigger cancelled by a stop', async () => {
    const { runner, reports } = makeRunner();
    const job = workload('test.FireAfter', { id: 'stopped', ms: 60_000 });
    runner.start(job);
    await until(() => ran.includes('stopped'));

    await runner.cancelAll();

    expect(reports.logs).toEqual([
      { triggerId: job.trigger_id, seq: 1, text: expect.stringContaining('waiting') },
    ]);
  });

  it('names and counts a trigger whose step holds the event loop', async () => {
    const { runner, reports, lines, metrics } = makeRunner();
    const quiet = workload('test.FireAfter', { id: 'bystander', ms: 20 });
    const busy = workload('test.Busy', { id: 'busy', busyMs: 300, afterSleep: false });
    runner.start(quiet);
    runner.start(busy);

    await until(() => reports.events.has(busy.trigger_id) && reports.events.has(quiet.trigger_id));
    // At least: a loaded machine may stall the loop on its own while the test runs.
    expect(runner.blockedCount).toBeGreaterThanOrEqual(1);
    expect((await metrics.snapshot()).counters['triggers.blocked_main_thread']).toBe(runner.blockedCount);
    const warnings = lines.filter(
      (line) => line.level === 'warn' && line.message.includes('held the event loop'),
    );
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.message).toContain(`test.Busy (trigger ${busy.trigger_id})`);
    expect(reports.events.get(busy.trigger_id)?.log?.text).toContain("held the triggerer's event loop");
  });

  it('does not count or warn of a lag while no trigger runs (the triggerer starting, say)', async () => {
    const { runner, lines } = makeRunner({ lagCheckIntervalMs: 20 });
    const end = performance.now() + 300;
    while (performance.now() < end) {
      // The triggerer's own work holds the loop.
    }
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(runner.blockedCount).toBe(0);
    expect(lines.filter((line) => line.level === 'warn')).toEqual([]);
    expect(
      lines.some((line) => line.level === 'info' && line.message.includes('with no trigger running')),
    ).toBe(true);
  });

  it('catches a block after an await with its lag check, naming the trigger that resumed', async () => {
    const { runner, reports, lines } = makeRunner({ lagCheckIntervalMs: 20 });
    const busy = workload('test.Busy', { id: 'late-busy', busyMs: 300, afterSleep: true });
    runner.start(busy);

    await until(() => reports.events.has(busy.trigger_id));
    expect(runner.blockedCount).toBeGreaterThanOrEqual(1);
    const warning = lines.find(
      (line) =>
        line.level === 'warn' &&
        line.message.includes('event loop was blocked') &&
        (line.fields?.blockedMs as number) >= 250,
    );
    expect(warning?.fields?.trigger).toBe(`test.Busy (trigger ${busy.trigger_id})`);
  });
});
