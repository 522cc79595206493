import { describe, expect, it } from 'vitest';
import { BaseOperator, dag, FailSignal, fail, SkipSignal, skip, type TaskContext } from '#sdk/index.ts';
import type { OperatorContext } from '#sdk/operator.ts';
import { executeTask } from '#sdk/runtime.ts';
import { isFailSignal, isSkipSignal, signalKindOf } from '#sdk/signals.ts';
import { testContext } from './sdk-fixtures.ts';

describe('signals', () => {
  it('skip() and fail() are Error subclasses carrying their reason', () => {
    const skipped = skip('nothing to do');
    const failed = fail('bad input');
    expect(skipped).toBeInstanceOf(SkipSignal);
    expect(skipped).toBeInstanceOf(Error);
    expect(skipped.reason).toBe('nothing to do');
    expect(failed).toBeInstanceOf(FailSignal);
    expect(failed.message).toBe('bad input');
  });

  it('have default reasons', () => {
    expect(skip().reason).toBe('skipped by the task');
    expect(fail().reason).toBe('failed by the task');
  });

  it('are recognised by their brand, not by identity', () => {
    const foreign = { [Symbol.for('updraft.signal')]: 'skip', reason: 'from another copy' };
    expect(signalKindOf(foreign)).toBe('skip');
    expect(isSkipSignal(fail())).toBe(false);
    expect(isFailSignal(fail())).toBe(true);
    expect(signalKindOf(new Error('plain'))).toBeNull();
    expect(signalKindOf('skip')).toBeNull();
  });
});

class Multiply extends BaseOperator<{ factor: number }> {
  async execute(ctx: OperatorContext): Promise<unknown> {
    const [rows] = ctx.args as [number[]];
    ctx.log.info('multiplying', { factor: this.options.factor });
    return {
      rows: rows.map((row) => row * this.options.factor),
      dagId: ctx.dagId,
      pulled: await ctx.xcomPull('x'),
    };
  }
}

const sample = dag({ id: 'runtime', params: { fast: true } }, (d) => {
  const source = d.task('source', async () => [1, 2]);
  d.task('sum', async (rows: number[], more: number[], ctx: TaskContext) => ({
    sum: [...rows, ...more].reduce((a, b) => a + b, 0),
    tryNumber: ctx.tryNumber,
  })).args(source, source);
  d.task('nothing', async () => undefined);
  d.task('returns_skip', async () => skip('no data today'));
  d.task('throws_skip', async () => {
    throw skip('thrown skip');
  });
  d.task('returns_fail', async () => fail('unrecoverable'));
  d.task('throws_fail', async () => {
    try {
      throw fail('thrown fail');
    } finally {
      // A finally block runs, but the signal still ends the task.
    }
  });
  d.task('throws_error', async () => {
    throw new TypeError('boom');
  });
  d.add(new Multiply({ id: 'multiply', factor: 3, retries: 2 })).args(source);
  const choose = d.branch('choose', async (ctx) => (ctx.params.fast ? 'fast' : ['slow_a', 'slow_b']));
  d.task('fast', async () => 1).after(choose);
  d.task('slow_a', async () => 1).after(choose);
  d.task('slow_b', async () => 1).after(choose);
  d.task('beyond', async () => 1).after('fast');
  d.branch('choose_bad', async () => 'beyond').before('fast');
  d.branch('choose_none', async () => null).before('slow_a');
  d.branch('choose_number', async () => 42).before('slow_b');
});

describe('executeTask', () => {
  it('passes args then the context and returns the value', async () => {
    const outcome = await executeTask(sample, 'sum', [[1, 2], [3]], testContext({ tryNumber: 2 }));
    expect(outcome).toEqual({ kind: 'success', value: { sum: 6, tryNumber: 2 } });
  });

  it('reports a task that returns nothing as null', async () => {
    expect(await executeTask(sample, 'nothing', [], testContext())).toEqual({ kind: 'success', value: null });
  });

  it('turns a returned skip() into skipped', async () => {
    expect(await executeTask(sample, 'returns_skip', [], testContext())).toEqual({
      kind: 'skipped',
      reason: 'no data today',
    });
  });

  it('turns a thrown skip() into skipped', async () => {
    expect(await executeTask(sample, 'throws_skip', [], testContext())).toEqual({
      kind: 'skipped',
      reason: 'thrown skip',
    });
  });

  it('turns a returned fail() into failed_no_retry', async () => {
    expect(await executeTask(sample, 'returns_fail', [], testContext())).toEqual({
      kind: 'failed_no_retry',
      reason: 'unrecoverable',
    });
  });

  it('turns a thrown fail() into failed_no_retry', async () => {
    expect(await executeTask(sample, 'throws_fail', [], testContext())).toEqual({
      kind: 'failed_no_retry',
      reason: 'thrown fail',
    });
  });

  it('rethrows ordinary errors', async () => {
    await expect(executeTask(sample, 'throws_error', [], testContext())).rejects.toThrow(
      new TypeError('boom'),
    );
  });

  it('runs an operator with args on the context', async () => {
    const ctx = testContext({ dagId: 'runtime', xcomPull: async (taskId) => `pulled ${taskId}` });
    const outcome = await executeTask(sample, 'multiply', [[1, 2]], ctx);
    expect(outcome).toEqual({
      kind: 'success',
      value: { rows: [3, 6], dagId: 'runtime', pulled: 'pulled x' },
    });
    expect(ctx.logs).toEqual([{ level: 'info', message: 'multiplying', fields: { factor: 3 } }]);
  });

  it('returns the branch choice as followTaskIds', async () => {
    expect(await executeTask(sample, 'choose', [], testContext({ params: { fast: true } }))).toEqual({
      kind: 'success',
      value: 'fast',
      followTaskIds: ['fast'],
    });
    expect(await executeTask(sample, 'choose', [], testContext({ params: { fast: false } }))).toEqual({
      kind: 'success',
      value: ['slow_a', 'slow_b'],
      followTaskIds: ['slow_a', 'slow_b'],
    });
  });

  it('follows no task when a branch returns null', async () => {
    expect(await executeTask(sample, 'choose_none', [], testContext())).toEqual({
      kind: 'success',
      value: null,
      followTaskIds: [],
    });
  });

  it('refuses a branch choice that is not a direct downstream task', async () => {
    await expect(executeTask(sample, 'choose_bad', [], testContext())).rejects.toThrow(
      `DAG 'runtime', branch 'choose_bad' chose "beyond", which is not one of its direct downstream tasks (fast)`,
    );
  });

  it('refuses a branch result that is not ids', async () => {
    await expect(executeTask(sample, 'choose_number', [], testContext())).rejects.toThrow(
      "DAG 'runtime', branch 'choose_number' returned number; expected a task id, a list of task ids or null",
    );
  });

  it('names the DAG and the task when the task does not exist', async () => {
    await expect(executeTask(sample, 'ghost', [], testContext())).rejects.toThrow(
      "DAG 'runtime' has no task 'ghost'",
    );
  });
});

describe('operators', () => {
  it('serialize under their class name with their task options checked', () => {
    const task = sample.getTask('multiply');
    expect(task?.operatorName).toBe('Multiply');
    expect(task?.options.retries).toBe(2);
    expect(task?.upstream).toEqual(['source']);
  });

  it('refuse a bad task option with the DAG and task named', () => {
    expect(() => dag({ id: 'd' }, (d) => d.add(new Multiply({ id: 'm', factor: 1, poolSlots: 0 })))).toThrow(
      "DAG 'd', task 'm': option 'poolSlots':",
    );
  });
});
