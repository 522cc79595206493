/**
 * Maps `items` through `work` with at most `concurrency` calls in flight, keeping the order of
 * results; rejects with the first failure. Bounds bursts of store writes so other requests
 * (a worker starting its task) are not stuck behind a hundred writes of one scheduler pass.
 */
export async function mapConcurrently<T, R>(
  items: readonly T[],
  concurrency: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(Math.max(1, concurrency), items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index] as T);
    }
  });
  await Promise.all(lanes);
  return results;
}
