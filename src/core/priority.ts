import { type DagGraph, dagGraphOf } from './dag-graph.ts';
import type { SerializedDag } from './serialized-dag.ts';

/** Airflow clamps effective weights to a 32-bit integer so the sum of a big DAG stays storable. */
const MIN_PRIORITY_WEIGHT = -(2 ** 31);
const MAX_PRIORITY_WEIGHT = 2 ** 31 - 1;

const cache = new WeakMap<SerializedDag, ReadonlyMap<string, number>>();

/**
 * Effective priority weight of every task, with Airflow's weight rules:
 * `downstream` = own weight + weights of all distinct transitive downstream tasks,
 * `upstream` = own weight + weights of all distinct transitive upstream tasks, `absolute` = own weight.
 * Returns a fresh map the caller may keep or change.
 */
export function effectivePriorityWeights(dag: SerializedDag): Map<string, number> {
  return new Map(priorityWeightsOf(dag));
}

/** Memoized per DAG object (DAG versions are immutable and cached by the engine); do not mutate. */
export function priorityWeightsOf(dag: SerializedDag): ReadonlyMap<string, number> {
  let weights = cache.get(dag);
  if (!weights) {
    weights = computeWeights(dag);
    cache.set(dag, weights);
  }
  return weights;
}

function computeWeights(dag: SerializedDag): Map<string, number> {
  const graph = dagGraphOf(dag);
  const order = graph.topologicalOrder;
  const ownWeights = order.map((taskId) => graph.tasks.get(taskId)!.priorityWeight);
  const rules = order.map((taskId) => graph.tasks.get(taskId)!.weightRule);
  const descendants = rules.includes('downstream') ? relativeBitsets(graph, 'downstream') : undefined;
  const ancestors = rules.includes('upstream') ? relativeBitsets(graph, 'upstream') : undefined;

  const weights = new Map<string, number>();
  order.forEach((taskId, index) => {
    const own = ownWeights[index]!;
    const relatives =
      rules[index] === 'downstream' ? descendants : rules[index] === 'upstream' ? ancestors : undefined;
    const total = relatives ? own + sumOfSetBits(relatives[index]!, ownWeights) : own;
    weights.set(taskId, Math.min(MAX_PRIORITY_WEIGHT, Math.max(MIN_PRIORITY_WEIGHT, total)));
  });
  return weights;
}

/**
 * For each task (by topological index), the set of its transitive relatives in one direction as a
 * bitset. Each set is the union of its direct relatives' sets, so a 1,000-task DAG costs one word-wise
 * OR per edge instead of one graph walk per task, and shared relatives are counted once.
 */
function relativeBitsets(graph: DagGraph, direction: 'downstream' | 'upstream'): Uint32Array[] {
  const order = graph.topologicalOrder;
  const indexOf = new Map(order.map((taskId, index) => [taskId, index]));
  const words = Math.ceil(order.length / 32);
  const bitsets = order.map(() => new Uint32Array(words));
  const edges = direction === 'downstream' ? graph.downstream : graph.upstream;
  // Relatives must be complete before they are merged: descendants come later in topological order.
  const visitOrder = direction === 'downstream' ? [...order.keys()].reverse() : [...order.keys()];
  for (const index of visitOrder) {
    const bits = bitsets[index]!;
    for (const relativeId of edges.get(order[index]!) ?? []) {
      const relative = indexOf.get(relativeId)!;
      const relativeBits = bitsets[relative]!;
      for (let word = 0; word < words; word++) bits[word] = bits[word]! | relativeBits[word]!;
      bits[relative >>> 5] = bits[relative >>> 5]! | (1 << (relative & 31));
    }
  }
  return bitsets;
}

function sumOfSetBits(bits: Uint32Array, values: readonly number[]): number {
  let sum = 0;
  for (let word = 0; word < bits.length; word++) {
    let remaining = bits[word]!;
    while (remaining !== 0) {
      const lowest = remaining & -remaining;
      sum += values[word * 32 + 31 - Math.clz32(lowest)]!;
      remaining ^= lowest;
    }
  }
  return sum;
}
