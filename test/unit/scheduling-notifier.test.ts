import { describe, expect, it } from 'vitest';
import { SchedulingNotifier } from '#engine/notifier.ts';
import type { OutgoingMessage, Queue } from '#queue/port.ts';

/** A scheduler queue that records each send call's bodies, and can hold its sends back. */
function recordingQueue() {
  const calls: unknown[][] = [];
  let release: () => void = () => undefined;
  let held: Promise<void> | undefined;
  const queue = {
    name: 'scheduler',
    async send(messages: readonly OutgoingMessage[]) {
      calls.push(messages.map((message) => JSON.parse(message.body) as unknown));
      if (held !== undefined) await held;
      return { failed: [] };
    },
  } as unknown as Queue;
  return {
    queue,
    calls,
    hold() {
      held = new Promise((resolve) => {
        release = resolve;
      });
    },
    release: () => release(),
  };
}

const ti = (runId: string, taskId: string) => ({ dagId: 'd', runId, taskId, mapIndex: -1 });
const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

describe('SchedulingNotifier.collect', () => {
  it('gathers the requests of work spread over several turns and sends them once, per run, before it resolves', async () => {
    const { queue, calls } = recordingQueue();
    const notifier = new SchedulingNotifier(queue, () => undefined);
    const result = await notifier.collect(async () => {
      await Promise.all(
        ['a', 'b', 'c'].map(async (taskId, index) => {
          await new Promise((resolve) => setTimeout(resolve, index * 3));
          await notifier.notify(ti('r1', taskId)); // resolves at once inside collect
        }),
      );
      await notifier.notify(ti('r2', 'x'));
      expect(calls).toHaveLength(0);
      return 'done';
    });
    expect(result).toBe('done');
    expect(calls).toHaveLength(1);
    expect(calls[0]).toEqual([
      {
        type: 'schedule_run',
        dag_id: 'd',
        run_id: 'r1',
        task_instances: ['a', 'b', 'c'].map((task_id) => ({ task_id, map_index: -1 })),
      },
      { type: 'schedule_run', dag_id: 'd', run_id: 'r2', task_instances: [{ task_id: 'x', map_index: -1 }] },
    ]);
  });

  it('waits for its send before resolving, and sends what was gathered when the work throws', async () => {
    const recording = recordingQueue();
    const notifier = new SchedulingNotifier(recording.queue, () => undefined);
    recording.hold();
    let settled = false;
    const collecting = notifier
      .collect(async () => {
        await notifier.notify(ti('r1', 'a'));
        throw new Error('boom');
      })
      .catch((error: Error) => error.message)
      .finally(() => {
        settled = true;
      });
    await tick();
    expect(recording.calls).toHaveLength(1);
    expect(settled).toBe(false);
    recording.release();
    expect(await collecting).toBe('boom');
  });

  it('leaves requests made outside it to the usual flush', async () => {
    const { queue, calls } = recordingQueue();
    const notifier = new SchedulingNotifier(queue, () => undefined);
    let outside: Promise<void> | undefined;
    await notifier.collect(async () => {
      await notifier.notify(ti('r1', 'a'));
      // Code not started from inside collect's work (another request of the same API instance).
      outside = new Promise<void>((resolve) => setImmediate(resolve));
    });
    await outside;
    const sentOutside = notifier.notify(ti('r2', 'b'));
    await sentOutside;
    expect(calls).toHaveLength(2);
    expect(calls[1]).toEqual([
      { type: 'schedule_run', dag_id: 'd', run_id: 'r2', task_instances: [{ task_id: 'b', map_index: -1 }] },
    ]);
  });

  it('reports a failed send to onError and still resolves', async () => {
    const errors: unknown[] = [];
    const queue = {
      name: 'scheduler',
      send: async () => {
        throw new Error('queue down');
      },
    } as unknown as Queue;
    const notifier = new SchedulingNotifier(queue, (error) => errors.push(error));
    await notifier.collect(async () => notifier.notify(ti('r1', 'a')));
    expect(errors).toHaveLength(1);
  });

  it('sends a request made by work that outlived its collect on its own, not into the batch already sent', async () => {
    const { queue, calls } = recordingQueue();
    const notifier = new SchedulingNotifier(queue, () => undefined);
    let late: Promise<void> | undefined;
    await notifier.collect(async () => {
      await notifier.notify(ti('r1', 'a'));
      // A continuation collect does not wait for (as a call of a batch that failed early would be).
      late = new Promise<void>((resolve) => setTimeout(resolve, 5)).then(() =>
        notifier.notify(ti('r1', 'late')),
      );
    });
    expect(calls).toHaveLength(1);
    await late;
    expect(calls).toHaveLength(2);
    expect(calls[1]).toEqual([
      {
        type: 'schedule_run',
        dag_id: 'd',
        run_id: 'r1',
        task_instances: [{ task_id: 'late', map_index: -1 }],
      },
    ]);
  });
});
