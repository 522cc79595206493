import { dag } from 'updraft';

/**
 * 1,000 independent no-op tasks in one run (1,000 roots, the fan-out's shape at 10 times the
 * size): the benchmark compares its store reads per scheduling pass with the 100-task fan-out's.
 * Not 2,000: a serialized DAG is one store item of at most 350,000 bytes (about 335 bytes per
 * no-op task), so a DAG of 2,000 tasks cannot be registered; 1,000 is the round size that fits.
 */
export default dag({ id: 'bench_wide', schedule: null, maxActiveTasks: 1000 }, (d) => {
  for (let index = 0; index < 1000; index += 1)
    d.task(`noop_${String(index).padStart(4, '0')}`, async () => undefined);
});
