import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dag } from '#sdk/index.ts';
import { type SchedulerHarness, startSchedulerHarness, tiKey } from './scheduler-harness.ts';

let h: SchedulerHarness;
const HEARTBEAT_TIMEOUT_MS = 30_000;
const QUEUED_TIMEOUT_MS = 60_000;

beforeEach(async () => {
  h = await startSchedulerHarness({
    settings: { heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS, queuedTimeoutMs: QUEUED_TIMEOUT_MS },
  });
});

afterEach(async () => {
  await h.close();
});

const noop = async () => {};

function singleTaskDag(retries: number) {
  return dag({ id: 'single' }, (d) => {
    d.task({ id: 'work', retries, retryDelay: '10s' }, noop);
  });
}

async function runningTask(retries: number) {
  const [versioned] = await h.register(singleTaskDag(retries));
  const run = await h.createRun(versioned!);
  await h.scheduler.handleRequests([run]);
  await h.startTi(tiKey(run, 'work'));
  return run;
}

describe('Scheduler tick on zombies', () => {
  it('puts a running task whose heartbeat stopped up for retry, naming the heartbeat', async () => {
    const run = await runningTask(1);
    h.advance(HEARTBEAT_TIMEOUT_MS + 1);

    await h.scheduler.tick();

    const work = await h.ti(run, 'work');
    expect([work.state, work.tryNumber, work.nextRetryAt, work.endDate]).toEqual([
      'up_for_retry',
      1,
      h.iso(10_000),
      h.iso(),
    ]);
    expect(work.errorMessage).toBe(
      `Heartbeat stopped for more than ${HEARTBEAT_TIMEOUT_MS} ms (zombie task)`,
    );
    expect((await h.counters())['scheduler.zombies_killed']).toBe(1);
  });

  it('asks for a wake-up at the retry time of a zombie in the same tick', async () => {
    const run = await runningTask(1);
    h.advance(HEARTBEAT_TIMEOUT_MS + 1);

    await h.scheduler.tick();

    expect(h.timers.calls).toEqual([
      { run: { dagId: 'single', runId: run.runId }, atMs: h.clock.now + 10_000 },
    ]);
  });

  it('fails a zombie without retries and fails its run in the same tick', async () => {
    const run = await runningTask(0);
    h.advance(HEARTBEAT_TIMEOUT_MS + 1);

    await h.scheduler.tick();

    const work = await h.ti(run, 'work');
    expect([work.state, work.nextRetryAt]).toEqual(['failed', null]);
    expect(work.errorMessage).toContain('Heartbeat stopped');
    expect((await h.run(run)).state).toBe('failed');
  });

  it('leaves alone a running task that heartbeats within the timeout', async () => {
    const run = await runningTask(1);
    h.advance(HEARTBEAT_TIMEOUT_MS - 1_000);
    await h.lifecycle.heartbeat(tiKey(run, 'work'), 1);
    h.advance(HEARTBEAT_TIMEOUT_MS);

    await h.scheduler.tick();

    const work = await h.ti(run, 'work');
    expect([work.state, work.errorMessage]).toEqual(['running', null]);
  });
});

describe('Scheduler tick on tasks queued too long', () => {
  it('sends the workload of the same try again and refreshes queuedAt', async () => {
    const [versioned] = await h.register(singleTaskDag(0));
    const run = await h.createRun(versioned!);
    await h.scheduler.handleRequests([run]);
    const first = await h.drainWorkloads();
    h.advance(QUEUED_TIMEOUT_MS + 1);

    await h.scheduler.tick();

    const again = await h.drainWorkloads();
    expect(again.map((w) => [w.ti.task_id, w.try_number])).toEqual([['work', 1]]);
    expect(first.map((w) => [w.ti.task_id, w.try_number])).toEqual([['work', 1]]);
    const work = await h.ti(run, 'work');
    expect([work.state, work.tryNumber, work.queuedAt]).toEqual(['queued', 1, h.iso()]);
  });

  it('does not send it again while it is within the queued timeout', async () => {
    const [versioned] = await h.register(singleTaskDag(0));
    const run = await h.createRun(versioned!);
    await h.scheduler.handleRequests([run]);
    await h.drainWorkloads();
    const queuedAt = h.iso();
    h.advance(QUEUED_TIMEOUT_MS);

    await h.scheduler.tick();

    expect(await h.drainWorkloads()).toEqual([]);
    expect((await h.ti(run, 'work')).queuedAt).toBe(queuedAt);
  });

  it('lets only one of the duplicate workloads start the try', async () => {
    const [versioned] = await h.register(singleTaskDag(0));
    const run = await h.createRun(versioned!);
    await h.scheduler.handleRequests([run]);
    h.advance(QUEUED_TIMEOUT_MS + 1);
    await h.scheduler.tick();
    const [first, second] = await h.drainWorkloads();

    await h.lifecycle.start(tiKey(run, 'work'), first?.try_number ?? 0, { hostname: 'w', workerId: 'w1' });

    await expect(
      h.lifecycle.start(tiKey(run, 'work'), second?.try_number ?? 0, { hostname: 'w', workerId: 'w2' }),
    ).rejects.toThrow('is running at try 1, expected queued at try 1');
    expect((await h.ti(run, 'work')).workerId).toBe('w1');
  });
});

describe('Scheduler start with recoverOrphans', () => {
  function pairDag() {
    return dag({ id: 'pair' }, (d) => {
      d.task('waiting', noop);
      d.task({ id: 'busy', retries: 1, retryDelay: '10s' }, noop);
    });
  }

  it('sends queued workloads again and retries running tries at once after a restart', async () => {
    const [versioned] = await h.register(pairDag());
    const run = await h.createRun(versioned!);
    await h.scheduler.handleRequests([run]);
    await h.startTi(tiKey(run, 'busy'));
    h.advance(1_000);

    const restarted = h.restart();
    await restarted.tick();

    const workloads = await h.drainWorkloads();
    expect(workloads.map((w) => [w.ti.task_id, w.try_number])).toEqual([['waiting', 1]]);
    const waiting = await h.ti(run, 'waiting');
    expect([waiting.state, waiting.tryNumber, waiting.queuedAt]).toEqual(['queued', 1, h.iso()]);
    const busy = await h.ti(run, 'busy');
    expect([busy.state, busy.tryNumber, busy.nextRetryAt]).toEqual(['up_for_retry', 1, h.iso(10_000)]);
    expect(busy.errorMessage).toBe(
      'The worker running this try stopped with the previous process (zombie task)',
    );
    expect(h.timers.calls).toEqual([
      { run: { dagId: 'pair', runId: run.runId }, atMs: h.clock.now + 10_000 },
    ]);
  });

  it('leaves queued and running task instances alone when a fresh instance knows of no orphans', async () => {
    const [versioned] = await h.register(pairDag());
    const run = await h.createRun(versioned!);
    await h.scheduler.handleRequests([run]);
    await h.startTi(tiKey(run, 'busy'));

    await h.newScheduler().tick();

    expect(await h.drainWorkloads()).toEqual([]);
    expect(await h.states(run)).toEqual({ waiting: 'queued', busy: 'running' });
  });
});
