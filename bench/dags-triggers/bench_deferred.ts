import { BaseOperator, dag, type OperatorContext, TimeDeltaTrigger } from 'updraft';

/**
 * The triggerer benchmark's deferred tasks (bench/triggers-stack.ts writes them straight into the
 * store as deferred on `executeComplete`): once its trigger fires, each resumes on a worker and
 * succeeds at once.
 */
class WaitThenFinish extends BaseOperator {
  async execute(ctx: OperatorContext) {
    return ctx.defer({ trigger: new TimeDeltaTrigger({ delta: '30s' }), method: 'executeComplete' });
  }

  async executeComplete() {
    return undefined;
  }
}

export default dag({ id: 'bench_deferred', schedule: null, maxActiveTasks: 1_000_000 }, (d) => {
  for (let index = 0; index < 100; index += 1)
    d.add(new WaitThenFinish({ id: `wait_${String(index).padStart(3, '0')}` }));
});
