import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { DagRunKey } from '#core/models.ts';
import type { SchedulingNotifier } from '#engine/notifier.ts';
import { InProcessTimers } from '#standalone/services.ts';

const DAY_MS = 24 * 3600 * 1000;
const run: DagRunKey = { dagId: 'd', runId: 'r' };

describe('standalone wake timers', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("wakes a run once, 30 days later, past setTimeout's 24.8-day limit", async () => {
    const notified: DagRunKey[] = [];
    const notifier = {
      notify: async (key: DagRunKey) => void notified.push(key),
    } as unknown as SchedulingNotifier;
    const timers = new InProcessTimers(notifier);

    await timers.wakeAt(run, Date.now() + 30 * DAY_MS);
    await vi.advanceTimersByTimeAsync(2 ** 31);
    expect(notified).toEqual([]);
    await vi.advanceTimersByTimeAsync(30 * DAY_MS - 2 ** 31);
    expect(notified).toEqual([run]);
    timers.stop();
  });

  const recording = () => {
    const notified: number[] = [];
    const notifier = {
      notify: async () => void notified.push(Date.now()),
    } as unknown as SchedulingNotifier;
    return { notified, timers: new InProcessTimers(notifier) };
  };

  it('keeps every time asked for: an earlier wake-up does not replace a later one', async () => {
    const { notified, timers } = recording();
    const start = Date.now();
    await timers.wakeAt(run, start + 60_000); // a deadline
    await timers.wakeAt(run, start + 5_000); // a retry, earlier
    await timers.wakeAt(run, start + 60_000); // the same again: once
    await vi.advanceTimersByTimeAsync(120_000);
    expect(notified.map((at) => at - start)).toEqual([5_000, 60_000]);
    timers.stop();
  });

  it('arms a timer again when it fires before its time', async () => {
    const { notified, timers } = recording();
    const start = Date.now();
    await timers.wakeAt(run, start + 1_000);
    // The clock lags the timer by a millisecond when it fires.
    vi.setSystemTime(start - 1);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(notified).toEqual([]);
    await vi.advanceTimersByTimeAsync(10);
    expect(notified.length).toBe(1);
    expect(notified[0]).toBeGreaterThanOrEqual(start + 1_000);
    timers.stop();
  });
});
