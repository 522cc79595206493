import { describe, expect, it } from 'vitest';
import type { CallbackWorkload } from '#contracts/messages.ts';
import { silentLogger } from '#engine/logger.ts';
import { TriggererCallbacks } from '#triggerer/callbacks.ts';
import { systemClock } from '#worker/clock.ts';
import { callbackWorkloadFixture } from './helpers/worker-fakes.ts';

const workload = callbackWorkloadFixture;

/** The triggerer's callback lane on its own: what it claims, what it starts, and its stop. */
describe('TriggererCallbacks', () => {
  const lane = (claim: (limit: number) => Promise<CallbackWorkload[]>, capacity = 100) => {
    const starts: string[] = [];
    const limits: number[] = [];
    const callbacks = new TriggererCallbacks({
      claim: (limit) => {
        limits.push(limit);
        return claim(limit);
      },
      execution: {
        startCallback: async (_token, id) => {
          starts.push(id);
          throw new Error('not under test');
        },
        finishCallback: async () => ({ duplicate: false, state: 'success' }),
      },
      executor: { runCallback: async () => ({ kind: 'success' }) },
      capacity,
      log: silentLogger,
      clock: systemClock,
      callTimeoutMs: 1_000,
    });
    return { callbacks, starts, limits };
  };

  it('starts nothing it claimed once a stop came while the claim was on its way', async () => {
    let answer: (workloads: CallbackWorkload[]) => void = () => undefined;
    const { callbacks, starts } = lane(() => new Promise((resolve) => (answer = resolve)));
    const claiming = callbacks.claim('job-1', new AbortController().signal);
    await callbacks.stop({ graceful: true, deadlineMs: Date.now() + 1_000 });
    answer([workload('a'), workload('b')]);
    await claiming;
    expect(starts).toEqual([]);
    expect(callbacks.running).toBe(0);
    // Nor does it claim again.
    expect(await callbacks.claim('job-1', new AbortController().signal)).toBe(0);
  });

  it('asks for at most what one claim may take (1,000), whatever its capacity', async () => {
    const { callbacks, limits } = lane(async () => [], 1_000);
    await callbacks.claim('job-1', new AbortController().signal);
    expect(limits).toEqual([1_000]);
  });
});
