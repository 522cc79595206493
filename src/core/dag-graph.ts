import type { SerializedDag, SerializedTask } from './serialized-dag.ts';

/**
 * The shape of a serialized DAG as the scheduling functions walk it: tasks by id, edges both ways,
 * and a topological order. Built once per DAG version (see `dagGraphOf`), since versions are immutable.
 */
export interface DagGraph {
  tasks: ReadonlyMap<string, SerializedTask>;
  /** Direct upstream task ids that exist in the DAG, without duplicates. */
  upstream: ReadonlyMap<string, readonly string[]>;
  /** Direct downstream task ids, without duplicates. */
  downstream: ReadonlyMap<string, readonly string[]>;
  /**
   * Every task after its upstream tasks. Tasks caught in a cycle (which DAG validation should have
   * refused) come last in declaration order, so evaluation stays total instead of throwing.
   */
  topologicalOrder: readonly string[];
}

const graphs = new WeakMap<SerializedDag, DagGraph>();

/** The graph of a DAG, memoized per DAG object: the engine keeps each DAG version in a cache. */
export function dagGraphOf(dag: SerializedDag): DagGraph {
  let graph = graphs.get(dag);
  if (!graph) {
    graph = buildDagGraph(dag);
    graphs.set(dag, graph);
  }
  return graph;
}

export function buildDagGraph(dag: SerializedDag): DagGraph {
  const tasks = new Map<string, SerializedTask>();
  for (const task of dag.tasks) tasks.set(task.taskId, task);

  const upstream = new Map<string, string[]>();
  const downstream = new Map<string, string[]>();
  for (const taskId of tasks.keys()) downstream.set(taskId, []);
  for (const task of tasks.values()) {
    const parents = [...new Set(task.upstream)].filter((id) => tasks.has(id));
    upstream.set(task.taskId, parents);
    for (const parent of parents) downstream.get(parent)?.push(task.taskId);
  }

  return { tasks, upstream, downstream, topologicalOrder: topologicalOrderOf(tasks, upstream, downstream) };
}

function topologicalOrderOf(
  tasks: ReadonlyMap<string, SerializedTask>,
  upstream: ReadonlyMap<string, readonly string[]>,
  downstream: ReadonlyMap<string, readonly string[]>,
): string[] {
  const pending = new Map<string, number>();
  const order: string[] = [];
  for (const taskId of tasks.keys()) {
    const count = upstream.get(taskId)?.length ?? 0;
    pending.set(taskId, count);
    if (count === 0) order.push(taskId);
  }
  for (let index = 0; index < order.length; index++) {
    for (const child of downstream.get(order[index]!) ?? []) {
      const left = (pending.get(child) ?? 0) - 1;
      pending.set(child, left);
      if (left === 0) order.push(child);
    }
  }
  if (order.length < tasks.size) {
    const placed = new Set(order);
    for (const taskId of tasks.keys()) if (!placed.has(taskId)) order.push(taskId);
  }
  return order;
}

/** Task ids with no downstream task: Airflow decides a run's final state from these. */
export function leafTaskIds(dag: SerializedDag): Set<string> {
  const graph = dagGraphOf(dag);
  const leaves = new Set<string>();
  for (const [taskId, children] of graph.downstream) if (children.length === 0) leaves.add(taskId);
  return leaves;
}

export function isLeaf(dag: SerializedDag, taskId: string): boolean {
  const children = dagGraphOf(dag).downstream.get(taskId);
  return children !== undefined && children.length === 0;
}

/** All task ids reachable downstream of `taskId` (not including it). */
export function descendantTaskIds(graph: DagGraph, taskId: string): Set<string> {
  const seen = new Set<string>();
  const stack = [...(graph.downstream.get(taskId) ?? [])];
  while (stack.length > 0) {
    const current = stack.pop()!;
    if (seen.has(current)) continue;
    seen.add(current);
    for (const child of graph.downstream.get(current) ?? []) if (!seen.has(child)) stack.push(child);
  }
  return seen;
}
