import { dag } from 'updraft';

/** 100 independent no-op tasks: measures throughput and the cost per task instance. */
export default dag({ id: 'bench_fanout', schedule: null, maxActiveRuns: 32, maxActiveTasks: 1000 }, (d) => {
  for (let index = 0; index < 100; index += 1)
    d.task(`noop_${String(index).padStart(3, '0')}`, async () => undefined);
});
