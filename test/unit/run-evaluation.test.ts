import { describe, expect, it } from 'vitest';
import type { TaskInstance } from '#core/models.ts';
import { evaluateRun, type RunEvaluation } from '#core/run-evaluation.ts';
import type { SerializedDag } from '#core/serialized-dag.ts';
import type { TaskInstanceState } from '#core/states.ts';
import { DAG_ID, dag, dagRun, RUN_ID, task, taskInstance, taskInstancesOf } from './helpers/factories.ts';

const NOW = Date.parse('2025-01-01T01:00:00.000Z');

function evaluate(serializedDag: SerializedDag, tis: TaskInstance[], nowMs = NOW): RunEvaluation {
  return evaluateRun(serializedDag, dagRun(), tis, nowMs);
}

function evaluateStates(
  serializedDag: SerializedDag,
  states: Record<string, TaskInstanceState>,
): RunEvaluation {
  return evaluate(serializedDag, taskInstancesOf(serializedDag, states));
}

const readyIds = (evaluation: RunEvaluation) => evaluation.ready.map((r) => r.ti.taskId);
const finalized = (evaluation: RunEvaluation) =>
  evaluation.finalize.map((f) => `${f.key.taskId}:${f.from}->${f.to}`);

const chain = dag([task('a'), task('b', { upstream: ['a'] }), task('c', { upstream: ['b'] })]);
const fanOutFanIn = dag([
  task('a'),
  task('b', { upstream: ['a'] }),
  task('c', { upstream: ['a'] }),
  task('d', { upstream: ['b', 'c'] }),
]);

describe('evaluateRun: progress', () => {
  it('readies only the root of a fresh linear chain', () => {
    const evaluation = evaluateStates(chain, {});
    expect(readyIds(evaluation)).toEqual(['a']);
    expect(evaluation.finalize).toEqual([]);
    expect(evaluation.runState).toBeNull();
  });

  it('readies the next task of a chain once its upstream succeeded', () => {
    expect(readyIds(evaluateStates(chain, { a: 'success' }))).toEqual(['b']);
  });

  it('reports the effective priority weight with each ready TI', () => {
    expect(evaluateStates(chain, {}).ready[0]!.priorityWeight).toBe(3);
  });

  it('readies every branch of a fan-out together', () => {
    expect(readyIds(evaluateStates(fanOutFanIn, { a: 'success' }))).toEqual(['b', 'c']);
  });

  it('keeps a fan-in waiting while one upstream still runs', () => {
    const evaluation = evaluateStates(fanOutFanIn, { a: 'success', b: 'success', c: 'running' });
    expect(readyIds(evaluation)).toEqual([]);
    expect(evaluation.runState).toBeNull();
  });

  it('readies a fan-in once all upstream succeeded', () => {
    expect(readyIds(evaluateStates(fanOutFanIn, { a: 'success', b: 'success', c: 'success' }))).toEqual([
      'd',
    ]);
  });

  it('neither readies nor finalizes queued, running or deferred TIs', () => {
    const parallel = dag([task('q'), task('r'), task('d')]);
    const evaluation = evaluateStates(parallel, { q: 'queued', r: 'running', d: 'deferred' });
    expect(evaluation.ready).toEqual([]);
    expect(evaluation.finalize).toEqual([]);
    expect(evaluation.runState).toBeNull();
    expect(evaluation.deadlocked).toBe(false);
  });

  it('readies an always task at once while its upstream still runs', () => {
    const withAlways = dag([task('a'), task('cleanup', { upstream: ['a'], triggerRule: 'always' })]);
    expect(readyIds(evaluateStates(withAlways, { a: 'running' }))).toEqual(['cleanup']);
  });

  it('readies a scheduled TI as well as a fresh one', () => {
    expect(readyIds(evaluateStates(chain, { a: 'success', b: 'scheduled' }))).toEqual(['b']);
  });

  it('orders ready TIs by effective priority weight, highest first', () => {
    const weighted = dag([
      task('low', { priorityWeight: 1 }),
      task('high', { priorityWeight: 10 }),
      task('mid', { priorityWeight: 5 }),
    ]);
    expect(evaluateStates(weighted, {}).ready.map((r) => [r.ti.taskId, r.priorityWeight])).toEqual([
      ['high', 10],
      ['mid', 5],
      ['low', 1],
    ]);
  });
});

describe('evaluateRun: propagation in one evaluation', () => {
  const fourLevels = dag([
    task('a'),
    task('b', { upstream: ['a'] }),
    task('c', { upstream: ['b'] }),
    task('d', { upstream: ['c'] }),
  ]);

  it('marks three levels below a failed task upstream_failed at once', () => {
    const evaluation = evaluateStates(fourLevels, { a: 'failed' });
    expect(finalized(evaluation)).toEqual([
      'b:none->upstream_failed',
      'c:none->upstream_failed',
      'd:none->upstream_failed',
    ]);
    expect(evaluation.finalize.map((f) => f.key)).toEqual(
      ['b', 'c', 'd'].map((taskId) => ({ dagId: DAG_ID, runId: RUN_ID, taskId, mapIndex: -1 })),
    );
  });

  it('fails the run in the same evaluation that propagates the failure', () => {
    expect(evaluateStates(fourLevels, { a: 'failed' }).runState).toBe('failed');
  });

  it('records the try number each decision was made for', () => {
    const tis = taskInstancesOf(fourLevels, { a: 'failed' });
    tis[1] = { ...tis[1]!, state: 'up_for_retry', tryNumber: 1 };
    expect(evaluate(fourLevels, tis).finalize[0]).toMatchObject({ from: 'up_for_retry', tryNumber: 1 });
  });
});

describe('evaluateRun: branching', () => {
  function branchDag(joinRule: 'none_failed_min_one_success' | 'all_success'): SerializedDag {
    return dag([
      task('branch', { isBranch: true, operator: 'branch' }),
      task('left', { upstream: ['branch'] }),
      task('right', { upstream: ['branch'] }),
      task('after_right', { upstream: ['right'] }),
      task('join', { upstream: ['left', 'after_right'], triggerRule: joinRule }),
    ]);
  }

  function branchTis(
    serializedDag: SerializedDag,
    states: Record<string, TaskInstanceState>,
    follow: string[] | null,
  ) {
    return taskInstancesOf(serializedDag, states).map((ti) =>
      ti.taskId === 'branch' ? { ...ti, followTaskIds: follow } : ti,
    );
  }

  it('skips the branch not followed and everything below it in one evaluation', () => {
    const serializedDag = branchDag('none_failed_min_one_success');
    const evaluation = evaluate(serializedDag, branchTis(serializedDag, { branch: 'success' }, ['left']));
    expect(finalized(evaluation)).toEqual(['right:none->skipped', 'after_right:none->skipped']);
    expect(readyIds(evaluation)).toEqual(['left']);
  });

  it('runs a none_failed_min_one_success join after the followed branch succeeds', () => {
    const serializedDag = branchDag('none_failed_min_one_success');
    const tis = branchTis(serializedDag, { branch: 'success', left: 'success' }, ['left']);
    const evaluation = evaluate(serializedDag, tis);
    expect(finalized(evaluation)).toEqual(['right:none->skipped', 'after_right:none->skipped']);
    expect(readyIds(evaluation)).toEqual(['join']);
  });

  it('skips an all_success join below a skipped branch in the same evaluation', () => {
    const serializedDag = branchDag('all_success');
    const evaluation = evaluate(serializedDag, branchTis(serializedDag, { branch: 'success' }, ['left']));
    expect(finalized(evaluation)).toEqual([
      'right:none->skipped',
      'after_right:none->skipped',
      'join:none->skipped',
    ]);
    expect(readyIds(evaluation)).toEqual(['left']);
  });

  it('succeeds a run whose skipped branch ends in skipped leaves', () => {
    const serializedDag = branchDag('all_success');
    const tis = branchTis(serializedDag, { branch: 'success', left: 'success' }, ['left']);
    expect(evaluate(serializedDag, tis).runState).toBe('success');
  });

  it('does not skip a join directly below the branch that a followed task also reaches', () => {
    const emptyBranch = dag([
      task('branch', { isBranch: true }),
      task('work', { upstream: ['branch'] }),
      task('join', { upstream: ['branch', 'work'] }),
    ]);
    const tis = branchTis(emptyBranch, { branch: 'success' }, ['work']);
    const evaluation = evaluate(emptyBranch, tis);
    expect(evaluation.finalize).toEqual([]);
    expect(readyIds(evaluation)).toEqual(['work']);
  });

  it('skips every direct downstream task of a branch that followed nothing', () => {
    const serializedDag = branchDag('all_success');
    const evaluation = evaluate(serializedDag, branchTis(serializedDag, { branch: 'success' }, null));
    expect(finalized(evaluation)).toEqual([
      'left:none->skipped',
      'right:none->skipped',
      'after_right:none->skipped',
      'join:none->skipped',
    ]);
  });

  it('skips an always task below a branch that did not follow it', () => {
    const withAlways = dag([
      task('branch', { isBranch: true }),
      task('chosen', { upstream: ['branch'] }),
      task('other', { upstream: ['branch'], triggerRule: 'always' }),
    ]);
    const evaluation = evaluate(withAlways, branchTis(withAlways, { branch: 'success' }, ['chosen']));
    expect(finalized(evaluation)).toEqual(['other:none->skipped']);
  });
});

describe('evaluateRun: retries', () => {
  const single = dag([task('a', { retries: 2 })]);
  const retryAt = '2025-01-01T01:05:00.000Z';
  const upForRetry = [
    taskInstance('a', { state: 'up_for_retry', tryNumber: 1, maxTries: 3, nextRetryAt: retryAt }),
  ];

  it('does not ready a TI before its retry time', () => {
    expect(evaluate(single, upForRetry).ready).toEqual([]);
  });

  it('asks to be woken at the retry time', () => {
    expect(evaluate(single, upForRetry).nextWakeAt).toBe(retryAt);
  });

  it('readies a TI at its retry time', () => {
    const evaluation = evaluate(single, upForRetry, Date.parse(retryAt));
    expect(readyIds(evaluation)).toEqual(['a']);
    expect(evaluation.nextWakeAt).toBeNull();
  });

  it('wakes at the earliest of several retry times', () => {
    const two = dag([task('a'), task('b')]);
    const tis = [
      taskInstance('a', { state: 'up_for_retry', nextRetryAt: '2025-01-01T01:09:00.000Z' }),
      taskInstance('b', { state: 'up_for_retry', nextRetryAt: '2025-01-01T01:02:00.000Z' }),
    ];
    expect(evaluate(two, tis).nextWakeAt).toBe('2025-01-01T01:02:00.000Z');
  });

  it('readies a TI up for retry that has no retry time', () => {
    expect(
      readyIds(evaluate(single, [taskInstance('a', { state: 'up_for_retry', nextRetryAt: null })])),
    ).toEqual(['a']);
  });

  it('leaves the run unfinished while a TI waits for its retry', () => {
    const evaluation = evaluate(single, upForRetry);
    expect(evaluation.runState).toBeNull();
    expect(evaluation.deadlocked).toBe(false);
  });
});

describe('evaluateRun: run state', () => {
  it('succeeds when every TI succeeded', () => {
    expect(evaluateStates(chain, { a: 'success', b: 'success', c: 'success' }).runState).toBe('success');
  });

  it('fails when a leaf TI failed', () => {
    expect(evaluateStates(chain, { a: 'success', b: 'success', c: 'failed' }).runState).toBe('failed');
  });

  it('succeeds when a failed task is followed by an all_done leaf that succeeded, as Airflow', () => {
    const withCleanup = dag([task('work'), task('cleanup', { upstream: ['work'], triggerRule: 'all_done' })]);
    expect(evaluateStates(withCleanup, { work: 'failed', cleanup: 'success' }).runState).toBe('success');
  });

  it('readies the all_done leaf after its upstream failed', () => {
    const withCleanup = dag([task('work'), task('cleanup', { upstream: ['work'], triggerRule: 'all_done' })]);
    const evaluation = evaluateStates(withCleanup, { work: 'failed' });
    expect(readyIds(evaluation)).toEqual(['cleanup']);
    expect(evaluation.runState).toBeNull();
  });

  it('succeeds a run with zero tasks', () => {
    expect(evaluate(dag([]), []).runState).toBe('success');
  });

  it('stays unfinished while any TI is unfinished even if a leaf failed', () => {
    const parallel = dag([task('a'), task('b')]);
    expect(evaluateStates(parallel, { a: 'failed', b: 'running' }).runState).toBeNull();
  });

  it('fails a deadlocked run whose unfinished TIs can never run', () => {
    const evaluation = evaluateStates(chain, { a: 'removed' });
    expect(evaluation.runState).toBe('failed');
    expect(evaluation.deadlocked).toBe(true);
    expect(evaluation.ready).toEqual([]);
  });
});

describe('evaluateRun: removed and missing tasks', () => {
  it('marks TIs of tasks no longer in the DAG removed', () => {
    const tis = [
      ...taskInstancesOf(chain),
      taskInstance('gone'),
      taskInstance('gone_queued', { state: 'queued' }),
    ];
    expect(finalized(evaluate(chain, tis))).toEqual(['gone:none->removed', 'gone_queued:queued->removed']);
  });

  it('leaves finished TIs of removed tasks alone and out of the run state', () => {
    const tis = [
      ...taskInstancesOf(chain, { a: 'success', b: 'success', c: 'success' }),
      taskInstance('gone', { state: 'failed' }),
    ];
    const evaluation = evaluate(chain, tis);
    expect(evaluation.finalize).toEqual([]);
    expect(evaluation.runState).toBe('success');
  });

  it('reports tasks without a TI as missing', () => {
    const evaluation = evaluate(chain, [taskInstance('a', { state: 'success' })]);
    expect(evaluation.missing).toEqual(['b', 'c']);
    expect(evaluation.ready).toEqual([]);
  });

  it('gives no run state while TIs are missing', () => {
    const evaluation = evaluate(chain, [taskInstance('a', { state: 'success' })]);
    expect(evaluation.runState).toBeNull();
    expect(evaluation.deadlocked).toBe(false);
  });
});
