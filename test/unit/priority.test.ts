import { describe, expect, it } from 'vitest';
import { effectivePriorityWeights } from '#core/priority.ts';
import type { SerializedTask, WeightRule } from '#core/serialized-dag.ts';
import { dag, task } from './helpers/factories.ts';

/** a → (b, c) → d with own weights 1, 2, 3, 4. */
function diamond(rule: (taskId: string) => WeightRule) {
  const weights: Record<string, number> = { a: 1, b: 2, c: 3, d: 4 };
  const upstream: Record<string, string[]> = { a: [], b: ['a'], c: ['a'], d: ['b', 'c'] };
  return dag(
    Object.keys(weights).map((taskId) =>
      task(taskId, {
        priorityWeight: weights[taskId]!,
        upstream: upstream[taskId]!,
        weightRule: rule(taskId),
      }),
    ),
  );
}

const asObject = (weights: Map<string, number>) => Object.fromEntries(weights);

describe('effectivePriorityWeights', () => {
  it('adds every distinct downstream task once with the downstream rule', () => {
    expect(asObject(effectivePriorityWeights(diamond(() => 'downstream')))).toEqual({
      a: 10,
      b: 6,
      c: 7,
      d: 4,
    });
  });

  it('adds every distinct upstream task once with the upstream rule', () => {
    expect(asObject(effectivePriorityWeights(diamond(() => 'upstream')))).toEqual({
      a: 1,
      b: 3,
      c: 4,
      d: 10,
    });
  });

  it('keeps the own weight with the absolute rule', () => {
    expect(asObject(effectivePriorityWeights(diamond(() => 'absolute')))).toEqual({ a: 1, b: 2, c: 3, d: 4 });
  });

  it('applies each task its own rule', () => {
    const rules: Record<string, WeightRule> = {
      a: 'downstream',
      b: 'absolute',
      c: 'upstream',
      d: 'upstream',
    };
    expect(asObject(effectivePriorityWeights(diamond((taskId) => rules[taskId]!)))).toEqual({
      a: 10,
      b: 2,
      c: 4,
      d: 10,
    });
  });

  it('sums own weights of relatives, not their effective weights', () => {
    const chain = dag([task('a'), task('b', { upstream: ['a'] }), task('c', { upstream: ['b'] })]);
    expect(asObject(effectivePriorityWeights(chain))).toEqual({ a: 3, b: 2, c: 1 });
  });

  it('returns a fresh map each call', () => {
    const serialized = diamond(() => 'downstream');
    effectivePriorityWeights(serialized).set('a', 0);
    expect(effectivePriorityWeights(serialized).get('a')).toBe(10);
  });

  it('handles a 1,000-task chain with exact sums', () => {
    const tasks: SerializedTask[] = [];
    for (let index = 0; index < 1000; index++) {
      tasks.push(task(`t${index}`, { upstream: index === 0 ? [] : [`t${index - 1}`] }));
    }
    const weights = effectivePriorityWeights(dag(tasks));
    expect([weights.get('t0'), weights.get('t500'), weights.get('t999')]).toEqual([1000, 500, 1]);
  });

  it('counts a shared descendant once in a 1,000-task layered DAG', () => {
    // 10 layers of 100 tasks, every task depending on every task of the layer above.
    const tasks: SerializedTask[] = [];
    for (let layer = 0; layer < 10; layer++) {
      const above = layer === 0 ? [] : Array.from({ length: 100 }, (_, i) => `l${layer - 1}_${i}`);
      for (let i = 0; i < 100; i++) tasks.push(task(`l${layer}_${i}`, { upstream: above }));
    }
    const weights = effectivePriorityWeights(dag(tasks));
    expect([weights.get('l0_0'), weights.get('l8_5'), weights.get('l9_99')]).toEqual([901, 101, 1]);
  });

  it('clamps the sum to a 32-bit integer, as Airflow', () => {
    const heavy = dag([
      task('a', { priorityWeight: 2 ** 31 - 10 }),
      task('b', { priorityWeight: 2 ** 31 - 10, upstream: ['a'] }),
    ]);
    expect(effectivePriorityWeights(heavy).get('a')).toBe(2 ** 31 - 1);
  });
});
