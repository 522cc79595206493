import { afterEach, describe, expect, it, vi } from 'vitest';
import { DeleteBatcher } from '#queue/delete-batcher.ts';
import type { Queue } from '#queue/port.ts';

/** A queue that records each delete call's receipts and fails the calls it is told to. */
function recordingQueue() {
  const calls: string[][] = [];
  let failNext = false;
  const queue = {
    async delete(receipts: readonly string[]) {
      calls.push([...receipts]);
      if (failNext) {
        failNext = false;
        throw new Error('delete refused');
      }
    },
  } as unknown as Queue;
  return {
    queue,
    calls,
    failNextCall() {
      failNext = true;
    },
  };
}

describe('DeleteBatcher', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('sends the receipts given in one turn in one call', async () => {
    const { queue, calls } = recordingQueue();
    const batcher = new DeleteBatcher();
    await Promise.all([batcher.delete(queue, 'a'), batcher.delete(queue, 'b')]);
    await batcher.delete(queue, 'c');
    expect(calls).toEqual([['a', 'b'], ['c']]);
  });

  it('holds receipts for the delay, one call for all of them', async () => {
    vi.useFakeTimers();
    const { queue, calls } = recordingQueue();
    const batcher = new DeleteBatcher({ delayMs: 200 });
    const first = batcher.delete(queue, 'a');
    await vi.advanceTimersByTimeAsync(150);
    const second = batcher.delete(queue, 'b');
    expect(calls).toEqual([]);
    // The delay counts from the batch's first receipt.
    await vi.advanceTimersByTimeAsync(50);
    await Promise.all([first, second]);
    expect(calls).toEqual([['a', 'b']]);
  });

  it('sends a full batch at once, and the next receipts start a new one', async () => {
    vi.useFakeTimers();
    const { queue, calls } = recordingQueue();
    const batcher = new DeleteBatcher({ delayMs: 60_000 });
    const full = Array.from({ length: 10 }, (_, i) => batcher.delete(queue, `r${i}`));
    await Promise.all(full);
    expect(calls).toEqual([Array.from({ length: 10 }, (_, i) => `r${i}`)]);
    const eleventh = batcher.delete(queue, 'r10');
    await batcher.flush();
    await eleventh;
    expect(calls[1]).toEqual(['r10']);
  });

  it('keeps queues apart', async () => {
    const one = recordingQueue();
    const two = recordingQueue();
    const batcher = new DeleteBatcher();
    await Promise.all([batcher.delete(one.queue, 'a'), batcher.delete(two.queue, 'b')]);
    expect([one.calls, two.calls]).toEqual([[['a']], [['b']]]);
  });

  it("rejects the batch's promises with a failed call's error; flush settles without throwing", async () => {
    const { queue, calls, failNextCall } = recordingQueue();
    const batcher = new DeleteBatcher({ delayMs: 60_000 });
    failNextCall();
    const refused = batcher.delete(queue, 'a');
    await batcher.flush();
    await expect(refused).rejects.toThrow('delete refused');
    const next = batcher.delete(queue, 'b');
    expect(calls).toEqual([['a']]);
    await batcher.flush();
    await next;
    expect(calls).toEqual([['a'], ['b']]);
  });
});
