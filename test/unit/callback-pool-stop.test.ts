import { describe, expect, it } from 'vitest';
import { silentLogger } from '#engine/logger.ts';
import { MetricsRegistry } from '#metrics/registry.ts';
import { InMemoryQueue } from '#queue/memory.ts';
import { CallbackWorkerPool } from '#worker/callback-pool.ts';
import type { StartedCallback } from '#worker/execution-client.ts';
import type { TaskHooks } from '#worker/executor.ts';
import { callbackWorkloadFixture } from './helpers/worker-fakes.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const workload = callbackWorkloadFixture;

const started = (id: string): StartedCallback => ({
  callback_id: id,
  kind: 'task_failure',
  dag_id: 'd',
  dag_run_id: 'r',
  logical_date: '2026-01-01T00:00:00.000Z',
  conf: {},
  run_state: 'running',
  task_id: 't',
  map_index: -1,
  try_number: 1,
  event: 'onFailure',
  index: 0,
  name: 'alert',
  fileloc: 'd.ts',
  dag_version: 'v',
  attempt: 1,
  max_attempts: 3,
  timeout_ms: 600_000,
  idempotency_key: `key-${id}`,
  previous_attempt_may_have_run: false,
  error_message: null,
  error_type: null,
  log_max_bytes: 65_536,
});

/**
 * The standalone callback lane's stop: attempts under way get the shutdown grace, then those still
 * running are stopped and handed back, as the task pool and the triggerer do.
 */
describe('CallbackWorkerPool stop', () => {
  async function lane(options: { graceMs: number; runMs: Record<string, number>; slots?: number }) {
    const queue = new InMemoryQueue({
      name: 'callbacks',
      visibilityTimeoutSeconds: 30,
      maxReceives: 100,
      maxMessageBytes: 262_144,
    });
    const reports: { id: string; state: string }[] = [];
    const starts: string[] = [];
    const pool = new CallbackWorkerPool({
      queue,
      client: {
        startCallback: async (_token, id) => {
          starts.push(id);
          return started(id);
        },
        finishCallback: async (_token, id, body) => {
          reports.push({ id, state: body.state });
          return { duplicate: false, state: body.state === 'handed_back' ? 'queued' : body.state };
        },
      },
      executor: {
        // Each callback runs its time unless stopped first (a runner process is killed then).
        runCallback: (call: StartedCallback, hooks: TaskHooks) =>
          new Promise((resolve) => {
            const timer = setTimeout(() => resolve({ kind: 'success' }), options.runMs[call.callback_id]);
            hooks.signal.addEventListener('abort', () => {
              clearTimeout(timer);
              resolve({ kind: 'error', message: 'killed' });
            });
          }),
      },
      slots: options.slots ?? 4,
      workerId: 'w',
      shutdownGraceMs: options.graceMs,
      metrics: new MetricsRegistry(),
      log: silentLogger,
    });
    for (const id of Object.keys(options.runMs)) await queue.send([{ body: JSON.stringify(workload(id)) }]);
    pool.start();
    for (let waited = 0; starts.length < Object.keys(options.runMs).length && waited < 2_000; waited += 10)
      await sleep(10);
    return { pool, queue, reports, starts };
  }

  it('lets an attempt that ends within the grace report, and hands back one still running after it', async () => {
    const { pool, reports } = await lane({ graceMs: 300, runMs: { quick: 100, slow: 60_000 } });
    const stopping = Date.now();
    await pool.stop();
    expect(Date.now() - stopping).toBeLessThan(2_000);
    expect(reports.sort((a, b) => a.id.localeCompare(b.id))).toEqual([
      { id: 'quick', state: 'success' },
      { id: 'slow', state: 'handed_back' },
    ]);
  });

  it('with no grace, hands every running attempt back at once, also with every slot busy', async () => {
    const { pool, reports } = await lane({ graceMs: 0, runMs: { a: 60_000, b: 60_000 }, slots: 2 });
    const stopping = Date.now();
    await pool.stop();
    expect(Date.now() - stopping).toBeLessThan(2_000);
    expect(reports.map((report) => report.state)).toEqual(['handed_back', 'handed_back']);
  });
});
