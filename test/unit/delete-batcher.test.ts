import { afterEach, describe, expect, it, vi } from 'vitest';
import { DeleteBatcher } from '#queue/delete-batcher.ts';
import type { Queue } from '#queue/port.ts';

/** A queue that records each delete call's receipts and fails the calls it is told to. */
function recordingQueue(answerAfterMs = 0) {
  const calls: string[][] = [];
  const answered: string[][] = [];
  let failNext = false;
  const queue = {
    async delete(receipts: readonly string[]) {
      calls.push([...receipts]);
      if (answerAfterMs > 0) await new Promise((resolve) => setTimeout(resolve, answerAfterMs));
      answered.push([...receipts]);
      if (failNext) {
        failNext = false;
        throw new Error('delete refused');
      }
    },
  } as unknown as Queue;
  return {
    queue,
    calls,
    answered,
    failNextCall() {
      failNext = true;
    },
  };
}

function batcher(delayMs?: number) {
  const errors: [string, number][] = [];
  const deletes = new DeleteBatcher({
    ...(delayMs === undefined ? {} : { delayMs }),
    onError: (error, count) => errors.push([String(error), count]),
  });
  return { deletes, errors };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('DeleteBatcher', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('sends the receipts given in one turn in one call', async () => {
    const { queue, calls } = recordingQueue();
    const { deletes } = batcher();
    deletes.delete(queue, 'a');
    deletes.delete(queue, 'b');
    await turn();
    deletes.delete(queue, 'c');
    await turn();
    expect(calls).toEqual([['a', 'b'], ['c']]);
  });

  it('holds receipts until the first one is `delayMs` past its receive, one call for all', async () => {
    vi.useFakeTimers();
    const { queue, calls } = recordingQueue();
    const { deletes } = batcher(200);
    deletes.delete(queue, 'a', Date.now());
    await vi.advanceTimersByTimeAsync(150);
    deletes.delete(queue, 'b', Date.now());
    expect(calls).toEqual([]);
    await vi.advanceTimersByTimeAsync(50);
    expect(calls).toEqual([['a', 'b']]);
  });

  it('deletes at once a message whose handling took longer than the delay', async () => {
    vi.useFakeTimers();
    const { queue, calls } = recordingQueue();
    const { deletes } = batcher(200);
    deletes.delete(queue, 'fresh', Date.now());
    // Received 500 ms ago: due already, and it takes the waiting receipt with it.
    deletes.delete(queue, 'slow', Date.now() - 500);
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toEqual([['fresh', 'slow']]);
  });

  it('sends a full batch at once, and the next receipts start a new one', async () => {
    vi.useFakeTimers();
    const { queue, calls } = recordingQueue();
    const { deletes } = batcher(60_000);
    for (let index = 0; index < 10; index += 1) deletes.delete(queue, `r${index}`);
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toEqual([Array.from({ length: 10 }, (_, index) => `r${index}`)]);
    deletes.delete(queue, 'r10');
    await deletes.flush();
    expect(calls[1]).toEqual(['r10']);
  });

  it('keeps queues apart', async () => {
    const one = recordingQueue();
    const two = recordingQueue();
    const { deletes } = batcher();
    deletes.delete(one.queue, 'a');
    deletes.delete(two.queue, 'b');
    await deletes.flush();
    expect([one.calls, two.calls]).toEqual([[['a']], [['b']]]);
  });

  it('reports a failed call once, with its receipt count, and goes on', async () => {
    const { queue, calls, failNextCall } = recordingQueue();
    const { deletes, errors } = batcher(60_000);
    failNextCall();
    deletes.delete(queue, 'a');
    deletes.delete(queue, 'b');
    await deletes.flush();
    expect(errors).toEqual([['Error: delete refused', 2]]);
    deletes.delete(queue, 'c');
    await deletes.flush();
    expect(calls).toEqual([['a', 'b'], ['c']]);
    expect(errors).toHaveLength(1);
  });

  it('waits, on flush, for batches already sent and not yet answered', async () => {
    const { queue, answered } = recordingQueue(100);
    const { deletes } = batcher(60_000);
    // A full batch goes at once; flush still waits for its answer.
    for (let index = 0; index < 10; index += 1) deletes.delete(queue, `r${index}`);
    await deletes.flush();
    expect(answered).toHaveLength(1);
  });

  it('holds no receipt longer than the delay, whatever receive time it is given', async () => {
    vi.useFakeTimers();
    const { queue, calls } = recordingQueue();
    const { deletes } = batcher(250);
    // A receive time ahead of the clock (the clock was stepped back): due within the delay.
    deletes.delete(queue, 'ahead', Date.now() + 3_600_000);
    await vi.advanceTimersByTimeAsync(250);
    expect(calls).toEqual([['ahead']]);
    // Not a number: due at once.
    deletes.delete(queue, 'unknown', Number.NaN);
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toEqual([['ahead'], ['unknown']]);
  });

  it('goes on when reporting a failed call throws', async () => {
    const { queue, failNextCall } = recordingQueue();
    const deletes = new DeleteBatcher({
      onError: () => {
        throw new Error('the logger broke');
      },
    });
    failNextCall();
    deletes.delete(queue, 'a');
    await expect(deletes.flush()).resolves.toBeUndefined();
  });
});
