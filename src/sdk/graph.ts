/**
 * Orders task ids so each comes after its upstream tasks; ties keep the order the tasks were
 * defined in, so the same DAG always serializes the same way (and hashes to the same version).
 * Returns the cycle (first task repeated at the end) when there is one.
 */
export function topologicalOrder(
  taskIds: readonly string[],
  upstreamOf: (taskId: string) => readonly string[],
): { order: string[]; cycle: null } | { order: null; cycle: string[] } {
  const position = new Map(taskIds.map((id, index) => [id, index]));
  const pending = new Map<string, number>();
  const downstream = new Map<string, string[]>();
  for (const id of taskIds) downstream.set(id, []);
  for (const id of taskIds) {
    const parents = new Set(upstreamOf(id));
    pending.set(id, parents.size);
    for (const parent of parents) downstream.get(parent)?.push(id);
  }

  const ready = taskIds.filter((id) => pending.get(id) === 0);
  const order: string[] = [];
  while (ready.length > 0) {
    // Small DAGs: a sort per step is simpler than a heap and fast enough for thousands of tasks.
    ready.sort((a, b) => (position.get(a) ?? 0) - (position.get(b) ?? 0));
    const id = ready.shift()!;
    order.push(id);
    for (const child of downstream.get(id) ?? []) {
      const left = (pending.get(child) ?? 0) - 1;
      pending.set(child, left);
      if (left === 0) ready.push(child);
    }
  }
  if (order.length === taskIds.length) return { order, cycle: null };
  return { order: null, cycle: findCycle(taskIds, upstreamOf) };
}

function findCycle(taskIds: readonly string[], upstreamOf: (taskId: string) => readonly string[]): string[] {
  const state = new Map<string, 'visiting' | 'done'>();
  const path: string[] = [];
  const visit = (id: string): string[] | null => {
    state.set(id, 'visiting');
    path.push(id);
    for (const parent of upstreamOf(id)) {
      const seen = state.get(parent);
      if (seen === 'visiting') {
        // The path walks upstream; reverse it so the cycle reads in the direction data flows.
        const loop = path.slice(path.indexOf(parent));
        return [...loop, parent].reverse();
      }
      if (seen === undefined) {
        const found = visit(parent);
        if (found) return found;
      }
    }
    path.pop();
    state.set(id, 'done');
    return null;
  };
  for (const id of taskIds) {
    if (state.has(id)) continue;
    const found = visit(id);
    if (found) return found;
  }
  return [];
}
