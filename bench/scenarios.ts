import type { DagRunKey, TaskInstance } from '#core/models.ts';
import { diff, percentile, perPass, perTi, round, takeSnapshot } from './costs.ts';
import type { BenchInstance } from './harness.ts';

/** Tasks per DAG in `bench/dags/`. */
export const FANOUT_TASKS = 100;
export const CHAIN_TASKS = 100;
/** bench_wide: 2,000 roots in one run. */
export const WIDE_TASKS = 2_000;

/** Runs `runs` to their end and returns the wall time and what they cost. */
async function measure(bench: BenchInstance, runs: DagRunKey[], timeoutMs: number) {
  const before = await takeSnapshot(bench.standalone, bench.counter);
  const start = performance.now();
  await bench.runAll(runs, timeoutMs);
  const seconds = (performance.now() - start) / 1000;
  const delta = diff(before, await takeSnapshot(bench.standalone, bench.counter));
  await bench.verifySucceeded(runs);
  return { seconds, delta };
}

/** One small run first, so task runner processes and caches exist before anything is measured. */
export async function warmUp(bench: BenchInstance): Promise<void> {
  const runs = [{ dagId: 'bench_chain', runId: 'warmup' }];
  await bench.runAll(runs, 120_000);
  await bench.verifySucceeded(runs);
}

/** Throughput and cost per TI: `runCount` runs of the 100-task fan-out, all triggered at once. */
export async function throughput(bench: BenchInstance, runCount: number) {
  const runs = Array.from({ length: runCount }, (_, index) => ({
    dagId: 'bench_fanout',
    runId: `fanout_${index}`,
  }));
  const { seconds, delta } = await measure(bench, runs, 600_000);
  const tis = runCount * FANOUT_TASKS;
  return {
    runs: runCount,
    task_instances: tis,
    seconds: round(seconds),
    tasks_per_second: round(tis / seconds),
    cost: { ...perTi(delta, tis), ...perPass(delta) },
  };
}

/** Latency on the 100-task chain: from an upstream TI's end to its downstream TI's start. */
export async function chainLatency(bench: BenchInstance) {
  const run = { dagId: 'bench_chain', runId: 'chain_0' };
  const { seconds, delta } = await measure(bench, [run], 600_000);
  const snapshot = await bench.standalone.store.getRunSnapshot(run);
  const steps = (snapshot?.taskInstances ?? []).slice().sort((a, b) => a.taskId.localeCompare(b.taskId));
  const gaps: number[] = [];
  for (let index = 1; index < steps.length; index += 1) {
    const upstream = steps[index - 1] as TaskInstance;
    const downstream = steps[index] as TaskInstance;
    if (upstream.endDate && downstream.startDate)
      gaps.push(Date.parse(downstream.startDate) - Date.parse(upstream.endDate));
  }
  gaps.sort((a, b) => a - b);
  return {
    chain_length: steps.length,
    seconds: round(seconds),
    upstream_finished_to_downstream_started_ms: {
      p50: percentile(gaps, 50),
      p95: percentile(gaps, 95),
      max: gaps.at(-1) ?? null,
    },
    cost: { ...perTi(delta, CHAIN_TASKS), ...perPass(delta) },
  };
}

/**
 * Reads per scheduling pass as a run grows: one run alone of `dagId` (`tasks` no-op roots).
 * A pass should read a bounded number of items whatever the run's size.
 */
export async function readsPerPass(bench: BenchInstance, dagId: string, tasks: number) {
  const run = { dagId, runId: `${dagId}_alone` };
  const { seconds, delta } = await measure(bench, [run], 600_000);
  return {
    dag_id: dagId,
    task_instances: tasks,
    seconds: round(seconds),
    tasks_per_second: round(tasks / seconds),
    ...perPass(delta),
    store_reads_per_ti: perTi(delta, tasks).store_reads_per_ti,
    store_writes_per_ti: perTi(delta, tasks).store_writes_per_ti,
  };
}
