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
});
