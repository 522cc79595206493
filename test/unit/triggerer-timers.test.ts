import { describe, expect, it } from 'vitest';
import { MAX_TIMER_MS, type TimerHost, TriggerTimers } from '#triggerer/timers.ts';

/** A clock and a timer host driven by hand: `advanceTo` fires due timers in order. */
function fakeTime() {
  let now = 0;
  let nextId = 1;
  const timers = new Map<number, { at: number; callback: () => void }>();
  const delays: number[] = [];
  let mostArmed = 0;
  const host: TimerHost = {
    setTimeout(callback, ms) {
      delays.push(ms);
      const id = nextId++;
      timers.set(id, { at: now + Math.max(1, ms), callback });
      mostArmed = Math.max(mostArmed, timers.size);
      return id;
    },
    clearTimeout(handle) {
      timers.delete(handle as number);
    },
  };
  return {
    host,
    now: () => now,
    delays,
    armed: () => timers.size,
    mostArmed: () => mostArmed,
    async advanceTo(target: number) {
      for (;;) {
        const due = [...timers]
          .filter(([, timer]) => timer.at <= target)
          .sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        timers.delete(due[0]);
        now = due[1].at;
        due[1].callback();
      }
      now = target;
      await new Promise((resolve) => setImmediate(resolve));
    },
  };
}

describe('TriggerTimers', () => {
  it('wakes sleepers in the order of their times, whatever the order they came in', async () => {
    const time = fakeTime();
    const timers = new TriggerTimers({ now: time.now, host: time.host });
    const woke: number[] = [];
    for (const at of [30, 10, 20, 10]) void timers.sleepUntil(at).then(() => woke.push(at));

    await time.advanceTo(15);
    expect(woke).toEqual([10, 10]);
    await time.advanceTo(100);
    expect(woke).toEqual([10, 10, 20, 30]);
    expect(timers.pending).toBe(0);
    expect(time.armed()).toBe(0);
  });

  it('rejects an aborted sleep with the signal reason at once and still wakes the others', async () => {
    const time = fakeTime();
    const timers = new TriggerTimers({ now: time.now, host: time.host });
    const controller = new AbortController();
    const aborted = timers.sleepUntil(10, controller.signal);
    const other = timers.sleepUntil(20);

    controller.abort(new Error('cancelled'));
    await expect(aborted).rejects.toThrow('cancelled');
    expect(timers.pending).toBe(1);
    await time.advanceTo(20);
    await expect(other).resolves.toBeUndefined();
  });

  it('rejects at once when the signal has already aborted, arming nothing', async () => {
    const time = fakeTime();
    const timers = new TriggerTimers({ now: time.now, host: time.host });

    await expect(timers.sleepUntil(10, AbortSignal.abort('gone'))).rejects.toBe('gone');
    expect(time.armed()).toBe(0);
  });

  it('disarms its timer once every sleep is aborted', async () => {
    const time = fakeTime();
    const timers = new TriggerTimers({ now: time.now, host: time.host });
    const controllers = [new AbortController(), new AbortController()];
    const sleeps = controllers.map((controller, index) => timers.sleepUntil(10 + index, controller.signal));
    for (const controller of controllers) controller.abort();
    await Promise.allSettled(sleeps);

    expect(time.armed()).toBe(0);
    expect(timers.armedAt).toBeUndefined();
  });

  it('re-arms its one timer for an earlier sleeper', () => {
    const time = fakeTime();
    const timers = new TriggerTimers({ now: time.now, host: time.host });
    void timers.sleepUntil(100);
    expect(timers.armedAt).toBe(100);
    void timers.sleepUntil(200);
    expect(timers.armedAt).toBe(100);
    void timers.sleepUntil(50);

    expect(timers.armedAt).toBe(50);
    expect(time.armed()).toBe(1);
    expect(time.delays).toEqual([100, 50]);
  });

  it('holds 100,000 sleepers with one armed timer and wakes every one', async () => {
    const time = fakeTime();
    const timers = new TriggerTimers({ now: time.now, host: time.host });
    const count = 100_000;
    let woke = 0;
    let aborted = 0;
    const controllers: AbortController[] = [];
    for (let index = 0; index < count; index += 1) {
      // Every tenth sleeper can be cancelled; deterministic times, many sharing one.
      const controller = index % 10 === 0 ? new AbortController() : undefined;
      if (controller) controllers.push(controller);
      timers.sleepUntil(1 + ((index * 7919) % 5_000), controller?.signal).then(
        () => {
          woke += 1;
        },
        () => {
          aborted += 1;
        },
      );
    }
    // Cancelled entries are skipped, and compacted away once they outnumber the live ones.
    for (const controller of controllers) controller.abort();
    expect(timers.pending).toBe(count - controllers.length);
    expect(time.mostArmed()).toBe(1);

    await time.advanceTo(5_001);
    await new Promise((resolve) => setImmediate(resolve));

    expect(woke).toBe(count - controllers.length);
    expect(aborted).toBe(controllers.length);
    expect(time.mostArmed()).toBe(1);
    expect(timers.pending).toBe(0);
  });

  it('never arms a timer longer than setTimeout can hold, and wakes a years-long sleep on time', async () => {
    const time = fakeTime();
    const timers = new TriggerTimers({ now: time.now, host: time.host });
    const tenYears = 10 * 365 * 24 * 3_600_000;
    let woke = false;
    void timers.sleepUntil(tenYears).then(() => {
      woke = true;
    });

    expect(time.delays[0]).toBe(MAX_TIMER_MS);
    await time.advanceTo(tenYears - 1);
    expect(woke).toBe(false);
    expect(time.delays.every((delay) => delay <= MAX_TIMER_MS)).toBe(true);
    await time.advanceTo(tenYears);
    expect(woke).toBe(true);
  });

  it('wakes a sleep whose time has passed on a timer turn, not in the same microtask run', async () => {
    const time = fakeTime();
    const timers = new TriggerTimers({ now: time.now, host: time.host });
    let woke = false;
    void timers.sleepUntil(-5).then(() => {
      woke = true;
    });
    await Promise.resolve();
    await Promise.resolve();

    expect(woke).toBe(false);
    expect(time.delays).toEqual([0]);
    await time.advanceTo(1);
    expect(woke).toBe(true);
  });

  it('sleeps on the real clock by default', async () => {
    const timers = new TriggerTimers();
    const started = Date.now();
    await timers.sleepUntil(started + 30);
    expect(Date.now()).toBeGreaterThanOrEqual(started + 30);
  });

  it('rejects every pending sleep when closed', async () => {
    const time = fakeTime();
    const timers = new TriggerTimers({ now: time.now, host: time.host });
    const sleep = timers.sleepUntil(10);
    timers.close(new Error('closed'));

    await expect(sleep).rejects.toThrow('closed');
    expect(time.armed()).toBe(0);
  });
});
