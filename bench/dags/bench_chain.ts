import { chain, dag, type TaskHandle } from 'updraft';

/** A 100-task linear chain of no-ops: measures "upstream finished → downstream started". */
export default dag({ id: 'bench_chain', schedule: null }, (d) => {
  const tasks: TaskHandle[] = [];
  for (let index = 0; index < 100; index += 1)
    tasks.push(d.task(`step_${String(index).padStart(3, '0')}`, async () => undefined));
  chain(...tasks);
});
