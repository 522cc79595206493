import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '#engine/logger.ts';
import { createInMemoryQueues, type InMemoryQueue } from '#queue/memory.ts';

import { schedulerLoop } from '#standalone/services.ts';
import { type SchedulerHarness, startSchedulerHarness } from './scheduler-harness.ts';

/** A scheduling request for a run that does not exist: a pass reads it, finds nothing, is done. */
const request = (index: number) => ({
  body: JSON.stringify({ type: 'schedule_run', dag_id: 'gone', run_id: `run_${index}` }),
});

/** Waits until no request is waiting to be received (and, if given, until `inFlight` is reached). */
async function handled(queue: InMemoryQueue, until: { inFlight?: number } = {}) {
  for (let wait = 0; wait < 500; wait += 1) {
    const stats = await queue.stats();
    if (stats.visible === 0 && (until.inFlight === undefined || stats.inFlight === until.inFlight)) {
      // The pass of the last one received has had time to end.
      await new Promise((resolve) => setTimeout(resolve, 20));
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error('the scheduler loop did not take the requests');
}

describe("standalone's scheduler loop", () => {
  let harness: SchedulerHarness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  async function runLoop(
    deleteDelayMs: number,
    feed: (send: (index: number) => Promise<void>, queue: InMemoryQueue) => Promise<void>,
  ) {
    harness = await startSchedulerHarness();
    const { queues, close } = createInMemoryQueues(harness.settings);
    const queue = queues.scheduler;
    const stop = new AbortController();
    const engine = harness.engineDeps(queues);
    const loop = schedulerLoop(queue, () => engine, stop.signal, silentLogger, 10, deleteDelayMs);
    try {
      await feed(async (index) => {
        await queue.send([request(index)]);
      }, queue);
      stop.abort();
      await loop;
      return { operations: queue.operations(), stats: await queue.stats() };
    } finally {
      close();
    }
  }

  it('deletes requests handled one at a time together, within the delay', async () => {
    const { operations, stats } = await runLoop(5_000, async (send, queue) => {
      for (let index = 0; index < 6; index += 1) {
        await send(index);
        // Each request is received and handled alone before the next is sent.
        await handled(queue);
      }
      // Handled, and held for the delete.
      expect(await queue.stats()).toMatchObject({ visible: 0, inFlight: 6 });
    });
    expect(operations.receive).toBeGreaterThanOrEqual(6);
    // All six in one delete: the delay had not run out, so the loop's stop sent them.
    expect(operations.delete).toBe(1);
    expect(stats).toMatchObject({ visible: 0, inFlight: 0 });
  });

  it('deletes a full batch at once, without waiting for the delay', async () => {
    const { operations, stats } = await runLoop(60_000, async (send, queue) => {
      await Promise.all(Array.from({ length: 10 }, (_, index) => send(index)));
      await handled(queue, { inFlight: 0 });
      expect(queue.operations().delete).toBe(1);
    });
    expect(operations.delete).toBe(1);
    expect(stats).toMatchObject({ visible: 0, inFlight: 0 });
  });
});
