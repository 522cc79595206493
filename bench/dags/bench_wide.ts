import { dag } from 'updraft';

/**
 * 2,000 independent no-op tasks in one run (2,000 roots, the fan-out's shape at 20 times the
 * size): the benchmark compares its store reads per scheduling pass with the 100-task fan-out's.
 */
export default dag({ id: 'bench_wide', schedule: null, maxActiveTasks: 2000 }, (d) => {
  for (let index = 0; index < 2000; index += 1)
    d.task(`noop_${String(index).padStart(4, '0')}`, async () => undefined);
});
