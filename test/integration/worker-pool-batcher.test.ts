import { afterEach, describe, expect, it } from 'vitest';
import { createInMemoryQueues, type InMemoryQueues } from '#queue/memory.ts';
import { ExecutionBatcher } from '#worker/execution-batcher.ts';
import type { TaskExecutor } from '#worker/executor.ts';
import type { WorkerPool } from '#worker/pool.ts';
import { fakeApiWorkerPool, startedTaskFixture, taskWorkloadFixture } from '../unit/helpers/worker-fakes.ts';

let queues: InMemoryQueues | undefined;
let pool: WorkerPool | undefined;
afterEach(async () => {
  await pool?.stop();
  queues?.close();
});

/** The pool and a batcher wired as standalone's Lambda shape wires them (services.ts). */
describe('WorkerPool with an ExecutionBatcher', () => {
  it('sends the starts of workloads launched together in one batch, without waiting out the window', async () => {
    queues = createInMemoryQueues({
      queueVisibilityTimeoutSeconds: 30,
      queueMaxReceives: 5,
      queueMaxMessageBytes: 262_144,
    });
    const sends: string[] = [];
    const api = (async (input: string | URL | Request, init?: RequestInit) => {
      const url = new URL(String(input));
      if (url.pathname.endsWith('/execution/batch')) {
        const { calls } = JSON.parse(String(init?.body)) as { calls: { path: string }[] };
        sends.push(`batch:${calls.map((c) => c.path.split('/')[4]).join(',')}`);
        return Response.json({
          results: calls.map((c) => ({
            status: 200,
            body: c.path.endsWith('/run') ? startedTaskFixture() : { ok: true },
          })),
        });
      }
      sends.push(`alone:${url.pathname.split('/')[4]}`);
      return Response.json(url.pathname.endsWith('/run') ? startedTaskFixture() : { ok: true });
    }) as typeof fetch;
    let running = () => 0;
    const batcher = new ExecutionBatcher({
      fetch: api,
      baseUrl: 'http://api.invalid',
      maxCalls: 10,
      windowMs: 300,
      requestMaxBytes: 1_000_000,
      callers: () => running(),
    });
    const executor: TaskExecutor = {
      async run() {
        return { kind: 'success', xcom: '1' };
      },
    };
    pool = fakeApiWorkerPool({
      queue: queues.queues.tasks_default,
      fetch: batcher.fetch,
      executor,
      slots: 4,
      onWorkloadEnd: () => batcher.check(),
    });
    running = () => pool!.runningCount;
    await queues.queues.tasks_default.send(
      ['a', 'b', 'c', 'd'].map((t) => ({ body: JSON.stringify(taskWorkloadFixture(t)) })),
    );
    pool.start();
    const deadline = Date.now() + 5_000;
    while (sends.filter((s) => s.includes('state') || s.includes('run')).length < 2 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 1_000));
    // A workload counts as running before its start leaves, as each record of the AWS worker's
    // batch does: the four starts wait for each other, not for the window or the first reports.
    expect(sends[0]).toMatch(/^batch:/);
    expect(sends[0]?.split(',')).toHaveLength(4);
  }, 20_000);
});
