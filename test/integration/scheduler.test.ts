import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dag } from '#sdk/index.ts';
import { type SchedulerHarness, startSchedulerHarness, tiKey } from './scheduler-harness.ts';

let h: SchedulerHarness;

beforeEach(async () => {
  h = await startSchedulerHarness();
});

afterEach(async () => {
  await h.close();
});

const noop = async () => {};

function chainDag() {
  return dag({ id: 'chain' }, (d) => {
    const a = d.task('a', noop);
    const b = d.task('b', noop).after(a);
    d.task('c', noop).after(b);
  });
}

function fanDag() {
  return dag({ id: 'fan' }, (d) => {
    const root = d.task('root', noop);
    const branches = ['b1', 'b2', 'b3'].map((id) => d.task(id, noop).after(root));
    d.task('join', noop).after(branches);
  });
}

describe('Scheduler on a linear chain', () => {
  it('queues only the first task, with try 1 and one workload whose token names it', async () => {
    const [versioned] = await h.register(chainDag());
    const run = await h.createRun(versioned!);

    await h.scheduler.handleRequests([run]);

    expect(await h.states(run)).toEqual({ a: 'queued', b: 'none', c: 'none' });
    expect((await h.ti(run, 'a')).tryNumber).toBe(1);
    const workloads = await h.drainWorkloads('tasks_default');
    expect(workloads).toHaveLength(1);
    expect(workloads[0]?.ti).toEqual({ dag_id: 'chain', run_id: run.runId, task_id: 'a', map_index: -1 });
    expect(workloads[0]?.try_number).toBe(1);
    expect((await h.tokens.check(workloads[0]?.token ?? '', h.now())).claims).toEqual({
      kind: 'task_instance',
      ...tiKey(run, 'a'),
      tryNumber: 1,
      dagVersion: versioned!.versionHash,
    });
    expect(await h.drainWorkloads()).toEqual([]);
  });

  it('moves the run from queued to running with the clock as its start date', async () => {
    const [versioned] = await h.register(chainDag());
    const run = await h.createRun(versioned!);
    expect((await h.run(run)).state).toBe('queued');

    await h.scheduler.handleRequests([run]);

    const started = await h.run(run);
    expect(started.state).toBe('running');
    expect(started.startDate).toBe(h.iso());
  });

  it('queues the next task once its upstream succeeded', async () => {
    const [versioned] = await h.register(chainDag());
    const run = await h.createRun(versioned!);
    await h.scheduler.handleRequests([run]);

    await h.succeed(tiKey(run, 'a'));
    await h.scheduler.handleRequests([run]);

    expect(await h.states(run)).toEqual({ a: 'success', b: 'queued', c: 'none' });
    expect((await h.drainWorkloads()).map((w) => w.ti.task_id)).toEqual(['b']);
  });

  it('finishes the run as success with an end date and drops it from the active runs', async () => {
    const [versioned] = await h.register(chainDag());
    const run = await h.createRun(versioned!);
    for (const taskId of ['a', 'b', 'c']) {
      await h.scheduler.handleRequests([run]);
      h.advance(1_000);
      await h.succeed(tiKey(run, taskId));
    }
    h.advance(1_000);
    await h.scheduler.handleRequests([run]);

    const finished = await h.run(run);
    expect(finished.state).toBe('success');
    expect(finished.endDate).toBe(h.iso());
    expect((await h.store.listActiveDagRuns({ limit: 10 })).items).toEqual([]);
  });
});

describe('Scheduler with duplicated or concurrent requests', () => {
  it('does nothing more when the same run is requested twice, then again', async () => {
    const [versioned] = await h.register(chainDag());
    const run = await h.createRun(versioned!);

    await h.scheduler.handleRequests([run, run]);
    expect(await h.drainWorkloads()).toHaveLength(1);
    await h.scheduler.handleRequests([run, run]);

    expect(await h.drainWorkloads()).toEqual([]);
    const a = await h.ti(run, 'a');
    expect([a.state, a.tryNumber]).toEqual(['queued', 1]);
    expect((await h.counters())['ti.scheduled']).toBe(1);
  });

  it('queues every task instance exactly once when two schedulers race on one store', async () => {
    const wide = dag({ id: 'wide' }, (d) => {
      const root = d.task('root', noop);
      for (let i = 0; i < 8; i++) d.task(`t${i}`, noop).after(root);
    });
    const [versioned] = await h.register(wide);
    const run = await h.createRun(versioned!);
    const other = h.newScheduler();
    await Promise.all([h.scheduler.handleRequests([run]), other.handleRequests([run])]);
    expect((await h.drainWorkloads()).map((w) => [w.ti.task_id, w.try_number])).toEqual([['root', 1]]);
    await h.succeed(tiKey(run, 'root'));

    await Promise.all([h.scheduler.handleRequests([run]), other.handleRequests([run])]);

    const snapshot = await h.store.getRunSnapshot(run);
    const fanned = snapshot?.taskInstances.filter((ti) => ti.taskId !== 'root') ?? [];
    expect(fanned.map((ti) => [ti.state, ti.tryNumber])).toEqual(Array(8).fill(['queued', 1]));
    const workloads = await h.drainWorkloads();
    expect(workloads.map((w) => w.ti.task_id).sort()).toEqual(fanned.map((ti) => ti.taskId).sort());
    expect(workloads.every((w) => w.try_number === 1)).toBe(true);
    expect((await h.counters())['ti.scheduled']).toBe(9);
  });
});

describe('Scheduler on failures', () => {
  it('marks every task downstream of a failed task upstream_failed in one pass and fails the run', async () => {
    const [versioned] = await h.register(fanDag());
    const run = await h.createRun(versioned!);
    await h.scheduler.handleRequests([run]);
    await h.failTi(tiKey(run, 'root'), true);

    await h.scheduler.handleRequests([run]);

    expect(await h.states(run)).toEqual({
      root: 'failed',
      b1: 'upstream_failed',
      b2: 'upstream_failed',
      b3: 'upstream_failed',
      join: 'upstream_failed',
    });
    const finished = await h.run(run);
    expect([finished.state, finished.endDate]).toEqual(['failed', h.iso()]);
    expect(await h.drainWorkloads()).toEqual([]);
  });

  it('fails the run when one branch of a fan-out fails and the join cannot run', async () => {
    const [versioned] = await h.register(fanDag());
    const run = await h.createRun(versioned!);
    await h.scheduler.handleRequests([run]);
    await h.succeed(tiKey(run, 'root'));
    await h.scheduler.handleRequests([run]);
    await h.succeed(tiKey(run, 'b1'));
    await h.failTi(tiKey(run, 'b2'), false);
    await h.succeed(tiKey(run, 'b3'));

    await h.scheduler.handleRequests([run]);

    expect(await h.states(run)).toEqual({
      root: 'success',
      b1: 'success',
      b2: 'failed',
      b3: 'success',
      join: 'upstream_failed',
    });
    expect((await h.run(run)).state).toBe('failed');
  });
});

describe('Scheduler on retries', () => {
  function retryDag() {
    return dag({ id: 'retry' }, (d) => {
      d.task({ id: 'flaky', retries: 1, retryDelay: '10s' }, noop);
    });
  }

  it('puts a retryable failure up for retry at now + retryDelay', async () => {
    const [versioned] = await h.register(retryDag());
    const run = await h.createRun(versioned!);
    await h.scheduler.handleRequests([run]);

    await h.failTi(tiKey(run, 'flaky'), true);

    const flaky = await h.ti(run, 'flaky');
    expect([flaky.state, flaky.tryNumber, flaky.nextRetryAt]).toEqual(['up_for_retry', 1, h.iso(10_000)]);
  });

  it('queues nothing before the retry time and asks for a wake-up at that exact time', async () => {
    const [versioned] = await h.register(retryDag());
    const run = await h.createRun(versioned!);
    await h.scheduler.handleRequests([run]);
    await h.failTi(tiKey(run, 'flaky'), true);
    const retryAtMs = h.clock.now + 10_000;
    h.advance(9_999);

    await h.scheduler.handleRequests([run]);

    expect(await h.states(run)).toEqual({ flaky: 'up_for_retry' });
    expect(await h.drainWorkloads()).toEqual([]);
    expect(h.timers.calls).toEqual([{ run: { dagId: 'retry', runId: run.runId }, atMs: retryAtMs }]);
    expect((await h.run(run)).state).toBe('running');
  });

  it('queues try 2 once the clock reaches the retry time', async () => {
    const [versioned] = await h.register(retryDag());
    const run = await h.createRun(versioned!);
    await h.scheduler.handleRequests([run]);
    await h.failTi(tiKey(run, 'flaky'), true);
    h.advance(10_000);

    await h.scheduler.handleRequests([run]);

    const flaky = await h.ti(run, 'flaky');
    expect([flaky.state, flaky.tryNumber, flaky.nextRetryAt]).toEqual(['queued', 2, null]);
    const workloads = await h.drainWorkloads();
    expect(workloads.map((w) => [w.ti.task_id, w.try_number])).toEqual([['flaky', 2]]);
    expect((await h.tokens.check(workloads[0]?.token ?? '', h.now())).claims).toEqual({
      kind: 'task_instance',
      ...tiKey(run, 'flaky'),
      tryNumber: 2,
      dagVersion: versioned!.versionHash,
    });
  });
});

describe('Scheduler on branches', () => {
  it('skips the branch not followed and runs a none_failed_min_one_success join', async () => {
    const branching = dag({ id: 'branching' }, (d) => {
      const pick = d.branch('pick', () => 'b');
      const b = d.task('b', noop).after(pick);
      const c = d.task('c', noop).after(pick);
      d.task({ id: 'join', triggerRule: 'none_failed_min_one_success' }, noop).after(b, c);
    });
    const [versioned] = await h.register(branching);
    const run = await h.createRun(versioned!);
    await h.scheduler.handleRequests([run]);
    await h.succeed(tiKey(run, 'pick'), undefined, ['b']);

    await h.scheduler.handleRequests([run]);
    expect(await h.states(run)).toEqual({ pick: 'success', b: 'queued', c: 'skipped', join: 'none' });
    await h.succeed(tiKey(run, 'b'));
    await h.scheduler.handleRequests([run]);
    expect((await h.ti(run, 'join')).state).toBe('queued');
    await h.succeed(tiKey(run, 'join'));
    await h.scheduler.handleRequests([run]);

    expect(await h.states(run)).toEqual({ pick: 'success', b: 'success', c: 'skipped', join: 'success' });
    expect((await h.run(run)).state).toBe('success');
  });
});

describe('Scheduler repairs', () => {
  it('recreates a task instance item lost after the run was written when it is due, and schedules it', async () => {
    const [versioned] = await h.register(chainDag());
    const run = await h.createRun(versioned!);
    await h.deleteTaskInstanceItem(tiKey(run, 'a'));
    await h.deleteTaskInstanceItem(tiKey(run, 'c'));
    expect(await h.states(run)).toEqual({ b: 'none' });
    // A creation may still be writing; only one older than the heartbeat timeout is repaired.
    await h.scheduler.handleRequests([run]);
    expect(await h.states(run)).toEqual({ b: 'none' });
    h.advance(h.settings.heartbeatTimeoutMs + 1);

    await h.scheduler.handleRequests([run]);

    expect(await h.states(run)).toEqual({ a: 'queued', b: 'none' });
    expect((await h.drainWorkloads()).map((w) => [w.ti.task_id, w.try_number])).toEqual([['a', 1]]);
    // c is read, found missing and recreated once its upstream lets it run.
    await h.succeed(tiKey(run, 'a'));
    await h.scheduler.handleRequests([run]);
    await h.succeed(tiKey(run, 'b'));
    await h.scheduler.handleRequests([run]);

    expect(await h.states(run)).toEqual({ a: 'success', b: 'success', c: 'queued' });
    expect((await h.ti(run, 'c')).tryNumber).toBe(1);
  });
});
