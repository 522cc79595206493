import { describe, expect, it } from 'vitest';
import { buildDagGraph, isLeaf, leafTaskIds } from '#core/dag-graph.ts';
import { evaluateRun } from '#core/run-evaluation.ts';
import { dag, dagRun, task, taskInstancesOf } from './helpers/factories.ts';

describe('buildDagGraph', () => {
  it('orders tasks topologically even when they are declared out of order', () => {
    const reversed = dag([task('c', { upstream: ['b'] }), task('b', { upstream: ['a'] }), task('a')]);
    expect(buildDagGraph(reversed).topologicalOrder).toEqual(['a', 'b', 'c']);
  });

  it('puts tasks caught in a cycle last instead of throwing', () => {
    const cyclic = dag([task('x', { upstream: ['y'] }), task('y', { upstream: ['x'] }), task('root')]);
    expect(buildDagGraph(cyclic).topologicalOrder).toEqual(['root', 'x', 'y']);
  });

  it('drops duplicate and unknown upstream ids', () => {
    const graph = buildDagGraph(dag([task('a'), task('b', { upstream: ['a', 'a', 'ghost'] })]));
    expect([graph.upstream.get('b'), graph.downstream.get('a')]).toEqual([['a'], ['b']]);
  });
});

describe('leafTaskIds / isLeaf', () => {
  const diamond = dag([
    task('a'),
    task('b', { upstream: ['a'] }),
    task('c', { upstream: ['a'] }),
    task('d', { upstream: ['b', 'c'] }),
    task('lone'),
  ]);

  it('lists the tasks without downstream', () => {
    expect([...leafTaskIds(diamond)]).toEqual(['d', 'lone']);
  });

  it('tells a leaf from an inner task and an unknown one', () => {
    expect([isLeaf(diamond, 'd'), isLeaf(diamond, 'a'), isLeaf(diamond, 'ghost')]).toEqual([
      true,
      false,
      false,
    ]);
  });

  it('lets evaluateRun propagate through tasks declared out of order', () => {
    const reversed = dag([task('c', { upstream: ['b'] }), task('b', { upstream: ['a'] }), task('a')]);
    const evaluation = evaluateRun(reversed, dagRun(), taskInstancesOf(reversed, { a: 'failed' }), 0);
    expect(evaluation.finalize.map((f) => f.key.taskId)).toEqual(['b', 'c']);
  });
});
