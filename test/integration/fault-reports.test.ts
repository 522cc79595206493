import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TaskLifecycle } from '#engine/task-lifecycle.ts';
import { readCurrentXCom } from '#engine/xcoms.ts';
import { dag } from '#sdk/index.ts';
import { wrapStore } from './fault-helpers.ts';
import { type SchedulerHarness, startSchedulerHarness, tiKey } from './scheduler-harness.ts';

const HEARTBEAT_TIMEOUT_MS = 30_000;
let h: SchedulerHarness;
beforeEach(async () => {
  h = await startSchedulerHarness({ settings: { heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS } });
});
afterEach(async () => {
  await h.close();
});
const noop = async () => {};

describe('reports', () => {
  it('answers a repeated failed report (lost response) as a duplicate after the retry was queued', async () => {
    const [versioned] = await h.register(
      dag({ id: 'dup' }, (d) => d.task({ id: 'work', retries: 2, retryDelay: '1s' }, noop)),
    );
    const run = await h.createRun(versioned!);
    const key = tiKey(run, 'work');
    await h.newScheduler().handleRequests([run]);
    const started = await h.startTi(key);
    const reportId = randomUUID();
    const report = { state: 'failed' as const, errorMessage: 'boom', retryable: true };
    await h.lifecycle.finish(key, started.tryNumber, report, { reportId });
    // The response was lost; the scheduler queues try 2 before the worker's retry of the report arrives.
    h.advance(2_000);
    await h.newScheduler().handleRequests([run]);
    expect((await h.ti(run, 'work')).state).toBe('queued');

    const again = await h.lifecycle
      .finish(key, started.tryNumber, report, { reportId })
      .then((r) => ({ duplicate: r.duplicate }))
      .catch((error: Error) => ({ error: error.constructor.name }));
    const log = (await h.logs.read(key, started.tryNumber)) ?? '';

    expect({ again, falseNote: log.includes('the report was refused') }).toEqual({
      again: { duplicate: true },
      falseNote: false,
    });
  });

  it('keeps no XCom from a report that was refused', async () => {
    const [versioned] = await h.register(
      dag({ id: 'xc' }, (d) => {
        const work = d.task({ id: 'work', retries: 1, retryDelay: '1s' }, noop);
        d.task('down', noop).args(work);
      }),
    );
    const run = await h.createRun(versioned!);
    const key = tiKey(run, 'work');
    await h.newScheduler().handleRequests([run]);
    const first = await h.startTi(key);

    // An API instance reads the TI (running, try 1), then stalls before its XCom write; meanwhile
    // the tick finds the try a zombie (its heartbeat is old) and puts it up for retry.
    const slowStore = wrapStore(h.store, (real) => ({
      putXCom: async (...args: Parameters<typeof real.putXCom>) => {
        h.advance(HEARTBEAT_TIMEOUT_MS + 1);
        await h.newScheduler().tick();
        return real.putXCom(...args);
      },
    }));
    const slowApi = new TaskLifecycle({
      store: slowStore,
      dags: h.dags,
      notifier: h.notifier,
      logs: h.logs,
      settings: h.settings,
      now: h.now,
    });
    const refused = await slowApi
      .finish(
        key,
        first.tryNumber,
        { state: 'success', xcom: '"from the refused try 1"' },
        { reportId: randomUUID() },
      )
      .then(() => 'recorded')
      .catch((error: Error) => error.constructor.name);
    expect(refused).toBe('StateConflictError');
    expect((await h.ti(run, 'work')).state).toBe('up_for_retry');

    // Try 2 runs and succeeds without returning anything.
    h.advance(2_000);
    await h.newScheduler().handleRequests([run]);
    await h.startTi(key);
    await h.succeed(key);

    // What a downstream task or the API is handed: never the refused try's value.
    expect(await readCurrentXCom(h.store, { ...key, key: 'return_value' })).toBeUndefined();
  });
});
