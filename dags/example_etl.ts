import { dag, type TaskContext } from 'updraft';

/**
 * Extract, three transforms in parallel, load; the values travel as XComs.
 *
 * extract      → [1, 2, 3, 4]
 * transform_a  → ×2  → [2, 4, 6, 8]       (sum 20)
 * transform_b  → ×10 → [10, 20, 30, 40]   (sum 100; fails on its first try, succeeds on the retry)
 * transform_c  → +1  → [2, 3, 4, 5]       (sum 14)
 * load         → { rows: 12, total: 134 } (the run's final XCom)
 */
export default dag(
  {
    id: 'example_etl',
    description: 'Extract, three transforms in parallel, load',
    schedule: null,
    startDate: '2026-01-01T00:00:00Z',
    catchup: false,
    tags: ['example'],
    params: { batch: 4 },
    defaultArgs: { retries: 1, retryDelay: '1s' },
  },
  (d) => {
    const extract = d.task('extract', async (ctx) => {
      const rows = [1, 2, 3, 4];
      ctx.log.info('extracted rows', { count: rows.length });
      return rows;
    });

    const transformA = d
      .task('transform_a', async (rows: number[]) => rows.map((row) => row * 2))
      .args(extract);

    const transformB = d
      .task(
        {
          id: 'transform_b',
          retries: 2,
          retryDelay: '1s',
          doc: 'Flaky on purpose: fails once, then succeeds',
        },
        async (rows: number[], ctx: TaskContext) => {
          // Shows a retry: the first try fails like a flaky source would.
          if (ctx.tryNumber === 1) throw new Error('simulated flaky source: failing the first try');
          return rows.map((row) => row * 10);
        },
      )
      .args(extract);

    const transformC = d
      .task('transform_c', async (rows: number[]) => rows.map((row) => row + 1))
      .args(extract);

    d.task(
      { id: 'load', triggerRule: 'all_success' },
      async (a: number[], b: number[], c: number[], ctx: TaskContext) => {
        const all = [...a, ...b, ...c];
        const summary = { rows: all.length, total: all.reduce((sum, value) => sum + value, 0) };
        ctx.log.info('loaded', summary);
        return summary;
      },
    ).args(transformA, transformB, transformC);
  },
);
