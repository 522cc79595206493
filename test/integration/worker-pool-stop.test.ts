import { afterEach, describe, expect, it } from 'vitest';
import type { StartedTask } from '#contracts/execution-api.ts';
import { createInMemoryQueues, type InMemoryQueues } from '#queue/memory.ts';
import type { TaskExecutor } from '#worker/executor.ts';
import { fakeApiWorkerPool, startedTaskFixture, taskWorkloadFixture } from '../unit/helpers/worker-fakes.ts';

/** Graceful stop of the worker pool while a start call is in flight (real timers, fake API). */

function startedTask(overrides: Partial<StartedTask> = {}): StartedTask {
  return startedTaskFixture(overrides);
}

let queues: InMemoryQueues | undefined;
afterEach(() => {
  queues?.close();
});

const workload = taskWorkloadFixture();

describe('WorkerPool.stop while a start is in flight', () => {
  it('is bounded by the grace (plus the cancel grace), and starts no task once stopping', async () => {
    queues = createInMemoryQueues({
      queueVisibilityTimeoutSeconds: 30,
      queueMaxReceives: 5,
      queueMaxMessageBytes: 262_144,
    });
    let startCalled = false;
    let releaseStart: (() => void) | undefined;
    const fetchStub = (async (input: string | URL | Request, init?: RequestInit) => {
      const action = new URL(String(input)).pathname.split('/')[4];
      if (action === 'run') {
        startCalled = true;
        // A slow API (a cold start, a slow store): answers in 8 s, or when released.
        await new Promise<void>((resolve) => {
          releaseStart = resolve;
          setTimeout(resolve, 8_000);
        });
        void init;
        return Response.json(startedTask());
      }
      return Response.json({ ok: true });
    }) as typeof fetch;
    let tasksRun = 0;
    const executor: TaskExecutor = {
      async run(_s, _a, hooks) {
        if (!hooks.signal.aborted) tasksRun += 1;
        return { kind: 'success', xcom: '1' };
      },
    };
    const pool = fakeApiWorkerPool({
      queue: queues.queues.tasks_default,
      fetch: fetchStub,
      executor,
      slots: 1,
    });
    pool.start();
    await queues.queues.tasks_default.send([{ body: JSON.stringify(workload) }]);
    const deadline = Date.now() + 5_000;
    while (!startCalled && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(startCalled).toBe(true);

    const began = Date.now();
    const stopped = pool.stop().then(() => Date.now() - began);
    const tookMs = await Promise.race([stopped, new Promise<number>((r) => setTimeout(() => r(-1), 3_000))]);
    releaseStart?.();
    await stopped;
    // The start call gets the stop signal: stop() does not wait for the slow API.
    expect(tookMs).not.toBe(-1);
    expect(tasksRun).toBe(0);
    // Not started here: the message is back in the queue at once for another worker.
    expect(await queues.queues.tasks_default.stats()).toMatchObject({ visible: 1, inFlight: 0 });
  }, 20_000);
});
