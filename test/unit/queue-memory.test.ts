import { afterEach, describe, expect, it, vi } from 'vitest';
import { MessageTooLargeError } from '#queue/errors.ts';
import { countQueueOperations, createInMemoryQueues, InMemoryQueue } from '#queue/memory.ts';

class FakeClock {
  ms = 1_000_000;
  now(): number {
    return this.ms;
  }
  advance(seconds: number): void {
    this.ms += seconds * 1000;
  }
}

function makeQueue(overrides: Partial<ConstructorParameters<typeof InMemoryQueue>[0]> = {}) {
  const clock = new FakeClock();
  const deadLetter = new InMemoryQueue({
    name: 'tasks_default',
    visibilityTimeoutSeconds: 30,
    maxReceives: 1000,
    maxMessageBytes: 1024,
    clock,
  });
  const queue = new InMemoryQueue({
    name: 'tasks_default',
    visibilityTimeoutSeconds: 30,
    maxReceives: 3,
    maxMessageBytes: 1024,
    deadLetter,
    clock,
    ...overrides,
  });
  return { queue, deadLetter, clock };
}

const bodies = (count: number, prefix = 'm') =>
  Array.from({ length: count }, (_, i) => ({ body: `${prefix}${i}` }));

describe('InMemoryQueue', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('delivers messages in the order they were sent', async () => {
    const { queue } = makeQueue();
    await queue.send(bodies(5));
    const received = await queue.receive({ maxMessages: 10, waitTimeMs: 0 });
    expect(received.map((m) => m.body)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    expect(received.map((m) => m.receiveCount)).toEqual([1, 1, 1, 1, 1]);
  });

  it('returns at most 10 messages per receive even when asked for more', async () => {
    const { queue } = makeQueue();
    await queue.send(bodies(25));
    const first = await queue.receive({ maxMessages: 50, waitTimeMs: 0 });
    const second = await queue.receive({ maxMessages: 3, waitTimeMs: 0 });
    expect(first.map((m) => m.body)).toEqual(bodies(10).map((m) => m.body));
    expect(second.map((m) => m.body)).toEqual(['m10', 'm11', 'm12']);
    expect(await queue.stats()).toEqual({ visible: 12, inFlight: 13, delayed: 0 });
  });

  it('hides a received message for the visibility timeout, then redelivers it with receiveCount 2', async () => {
    const { queue, clock } = makeQueue();
    await queue.send([{ body: 'job' }]);
    const [first] = await queue.receive({ maxMessages: 1, waitTimeMs: 0 });
    clock.advance(29.999);
    expect(await queue.receive({ maxMessages: 1, waitTimeMs: 0 })).toEqual([]);
    clock.advance(0.001);
    const [second] = await queue.receive({ maxMessages: 1, waitTimeMs: 0 });
    expect(second?.body).toBe('job');
    expect(second?.messageId).toBe(first?.messageId);
    expect(second?.receiveCount).toBe(2);
    expect(second?.receiptHandle).not.toBe(first?.receiptHandle);
  });

  it('uses the visibility timeout given to receive over the default', async () => {
    const { queue, clock } = makeQueue();
    await queue.send([{ body: 'job' }]);
    await queue.receive({ maxMessages: 1, waitTimeMs: 0, visibilityTimeoutSeconds: 5 });
    clock.advance(5);
    const [again] = await queue.receive({ maxMessages: 1, waitTimeMs: 0 });
    expect(again?.receiveCount).toBe(2);
  });

  it('ignores a delete with the stale receipt of an earlier receive', async () => {
    const { queue, clock } = makeQueue();
    await queue.send([{ body: 'job' }]);
    const [first] = await queue.receive({ maxMessages: 1, waitTimeMs: 0 });
    clock.advance(30);
    const [second] = await queue.receive({ maxMessages: 1, waitTimeMs: 0 });
    await queue.delete([first!.receiptHandle]);
    expect(await queue.stats()).toEqual({ visible: 0, inFlight: 1, delayed: 0 });
    await queue.delete([second!.receiptHandle]);
    expect(await queue.stats()).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
    clock.advance(60);
    expect(await queue.receive({ maxMessages: 1, waitTimeMs: 0 })).toEqual([]);
  });

  it('moves a message to the dead-letter queue instead of delivering it beyond maxReceives', async () => {
    const { queue, deadLetter, clock } = makeQueue({ maxReceives: 2 });
    await queue.send([{ body: 'poison' }]);
    const counts: number[] = [];
    for (let i = 0; i < 2; i++) {
      const [message] = await queue.receive({ maxMessages: 1, waitTimeMs: 0 });
      counts.push(message!.receiveCount);
      clock.advance(30);
    }
    expect(counts).toEqual([1, 2]);
    await queue.send([{ body: 'fine' }]);
    const next = await queue.receive({ maxMessages: 10, waitTimeMs: 0 });
    expect(next.map((m) => [m.body, m.receiveCount])).toEqual([['fine', 1]]);
    const dead = await deadLetter.receive({ maxMessages: 10, waitTimeMs: 0 });
    expect(dead.map((m) => [m.body, m.receiveCount])).toEqual([['poison', 1]]);
  });

  it('keeps a delayed message hidden until its delay ends', async () => {
    const { queue, clock } = makeQueue();
    await queue.send([{ body: 'later', delaySeconds: 10 }, { body: 'now' }]);
    expect(await queue.stats()).toEqual({ visible: 1, inFlight: 0, delayed: 1 });
    expect((await queue.receive({ maxMessages: 10, waitTimeMs: 0 })).map((m) => m.body)).toEqual(['now']);
    clock.advance(9.9);
    expect(await queue.receive({ maxMessages: 10, waitTimeMs: 0 })).toEqual([]);
    clock.advance(0.1);
    expect((await queue.receive({ maxMessages: 10, waitTimeMs: 0 })).map((m) => m.body)).toEqual(['later']);
  });

  it('changes the visibility of a received message', async () => {
    const { queue, clock } = makeQueue();
    await queue.send([{ body: 'job' }]);
    const [first] = await queue.receive({ maxMessages: 1, waitTimeMs: 0 });
    await queue.changeVisibility(first!.receiptHandle, 120);
    clock.advance(119);
    expect(await queue.receive({ maxMessages: 1, waitTimeMs: 0 })).toEqual([]);
    clock.advance(1);
    const [again] = await queue.receive({ maxMessages: 1, waitTimeMs: 0 });
    await queue.changeVisibility(again!.receiptHandle, 0);
    const [third] = await queue.receive({ maxMessages: 1, waitTimeMs: 0 });
    expect(third?.receiveCount).toBe(3);
  });

  it('wakes a long-poll within a few milliseconds of a send', async () => {
    const queue = new InMemoryQueue({
      name: 'scheduler',
      visibilityTimeoutSeconds: 30,
      maxReceives: 5,
      maxMessageBytes: 1024,
    });
    const pending = queue.receive({ maxMessages: 10, waitTimeMs: 10_000 });
    await new Promise((resolve) => setTimeout(resolve, 20));
    const sentAt = performance.now();
    await queue.send([{ body: 'wake up' }]);
    const received = await pending;
    expect(performance.now() - sentAt).toBeLessThan(50);
    expect(received.map((m) => m.body)).toEqual(['wake up']);
  });

  it('wakes a long-poll when a delayed message becomes visible, with no polling in between', async () => {
    vi.useFakeTimers();
    const queue = new InMemoryQueue({
      name: 'scheduler',
      visibilityTimeoutSeconds: 30,
      maxReceives: 5,
      maxMessageBytes: 1024,
    });
    const pending = queue.receive({ maxMessages: 10, waitTimeMs: 20_000 });
    await queue.send([{ body: 'retry', delaySeconds: 5 }]);
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(5_000);
    expect((await pending).map((m) => m.body)).toEqual(['retry']);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('returns no messages when the long-poll wait ends empty', async () => {
    vi.useFakeTimers();
    const queue = new InMemoryQueue({
      name: 'tasks_low',
      visibilityTimeoutSeconds: 30,
      maxReceives: 5,
      maxMessageBytes: 1024,
    });
    const pending = queue.receive({ maxMessages: 1, waitTimeMs: 2_000 });
    await vi.advanceTimersByTimeAsync(2_000);
    expect(await pending).toEqual([]);
  });

  it('returns no messages at once when the receive is aborted', async () => {
    const { queue } = makeQueue();
    const controller = new AbortController();
    const pending = queue.receive({ maxMessages: 1, waitTimeMs: 60_000, signal: controller.signal });
    controller.abort();
    expect(await pending).toEqual([]);
    await queue.send([{ body: 'after abort' }]);
    expect(await queue.stats()).toEqual({ visible: 1, inFlight: 0, delayed: 0 });
  });

  it('returns no messages to pending receives on close', async () => {
    const { queue } = makeQueue();
    const pending = queue.receive({ maxMessages: 1, waitTimeMs: 60_000 });
    queue.close();
    expect(await pending).toEqual([]);
  });

  it('rejects a batch with a message over the size limit and enqueues none of it', async () => {
    const { queue } = makeQueue({ maxMessageBytes: 1024 });
    const send = queue.send([{ body: 'small' }, { body: 'é'.repeat(513) }]);
    await expect(send).rejects.toThrow(MessageTooLargeError);
    await expect(send).rejects.toThrow(
      "A message of 1026 bytes is larger than the tasks_default queue's limit of 1024 bytes (UPDRAFT_QUEUE_MAX_MESSAGE_BYTES)",
    );
    expect(await queue.stats()).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
    expect(queue.operations().send).toBe(0);
  });

  it('counts operations like SQS batch calls', async () => {
    const { queue } = makeQueue();
    await queue.send(bodies(25));
    await queue.send([]);
    const first = await queue.receive({ maxMessages: 10, waitTimeMs: 0 });
    const second = await queue.receive({ maxMessages: 10, waitTimeMs: 0 });
    await queue.delete([...first, ...second].slice(0, 11).map((m) => m.receiptHandle));
    await queue.changeVisibility(second[9]!.receiptHandle, 60);
    await queue.stats();
    expect(queue.operations()).toEqual({ send: 3, receive: 2, delete: 2, changeVisibility: 1, stats: 1 });
  });
});

describe('createInMemoryQueues', () => {
  it('creates every queue with its dead-letter queue from the settings', async () => {
    const { queues, deadLetters, close } = createInMemoryQueues({
      queueVisibilityTimeoutSeconds: 30,
      queueMaxReceives: 1,
      queueMaxMessageBytes: 2048,
    });
    expect(Object.keys(queues)).toEqual([
      'callbacks',
      'tasks_high',
      'tasks_default',
      'tasks_low',
      'scheduler',
    ]);
    await queues.tasks_high.send([{ body: 'x' }]);
    await queues.tasks_high.receive({ maxMessages: 1, waitTimeMs: 0, visibilityTimeoutSeconds: 0 });
    expect(await queues.tasks_high.receive({ maxMessages: 1, waitTimeMs: 0 })).toEqual([]);
    expect((await deadLetters.tasks_high.stats()).visible).toBe(1);
    await expect(queues.callbacks.send([{ body: 'y'.repeat(2049) }])).rejects.toThrow(MessageTooLargeError);
    close();
  });

  it('sums operation counts over queues with countQueueOperations', async () => {
    const { queues, close } = createInMemoryQueues({
      queueVisibilityTimeoutSeconds: 30,
      queueMaxReceives: 5,
      queueMaxMessageBytes: 2048,
    });
    await queues.scheduler.send(bodies(11));
    await queues.tasks_low.receive({ maxMessages: 1, waitTimeMs: 0 });
    expect(countQueueOperations(queues)).toEqual({
      send: 2,
      receive: 1,
      delete: 0,
      changeVisibility: 0,
      stats: 0,
      total: 3,
    });
    close();
  });
});
