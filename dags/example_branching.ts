import { dag, skip, type TaskContext } from 'updraft';

/**
 * A branch picks a path from `params.path` ('fast' by default, or 'slow' in the run's conf).
 *
 * With the default params the run ends with:
 *   start success, choose_path success (follows fast_path), fast_path success,
 *   slow_a skipped, slow_b skipped (not chosen), join success (none_failed_min_one_success),
 *   publish skipped (returns skip() unless params.publish), cleanup success (all_done).
 * With conf { path: 'slow' }: fast_path is skipped and slow_a, slow_b run instead.
 */
export default dag(
  {
    id: 'example_branching',
    description: 'Branch on a param, join the paths, skip a step, always clean up',
    schedule: null,
    startDate: '2026-01-01T00:00:00Z',
    params: { path: 'fast', publish: false },
    tags: ['example'],
    defaultArgs: { retryDelay: '1s' },
  },
  (d) => {
    const start = d.task('start', async (ctx) => {
      ctx.log.info('choosing a path', { path: ctx.params.path });
      return ctx.params.path;
    });

    const choose = d
      .branch('choose_path', async (ctx) => (ctx.params.path === 'slow' ? ['slow_a', 'slow_b'] : 'fast_path'))
      .after(start);

    const fastPath = d.task('fast_path', async () => 'fast').after(choose);
    const slowA = d.task('slow_a', async () => 'slow a').after(choose);
    const slowB = d.task('slow_b', async () => 'slow b').after(choose);

    const join = d
      .task({ id: 'join', triggerRule: 'none_failed_min_one_success' }, async (ctx: TaskContext) => {
        ctx.log.info('paths joined');
        return 'joined';
      })
      .after(fastPath, slowA, slowB);

    const publish = d
      .task('publish', async (ctx) => {
        if (!ctx.params.publish) return skip('publishing is off (params.publish is false)');
        return 'published';
      })
      .after(join);

    d.task({ id: 'cleanup', triggerRule: 'all_done' }, async () => 'cleaned').after(publish);
  },
);
