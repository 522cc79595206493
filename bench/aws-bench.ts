/** The AWS part of the benchmark: what it measures and how is told in bench/aws.ts. */
import { rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BUNDLE_TARGET_BYTES,
  bundleDirectory,
  bundleFunctions,
  COLD_IMPORT_TARGET_MS,
  measureColdImports,
} from './aws-bundles.ts';
import {
  type CostModel,
  modelCost,
  STEP_FUNCTIONS_STANDARD_PER_MILLION_TRANSITIONS,
  US_EAST_1_PRICES,
} from './aws-cost.ts';
import { readDeploymentDefaults } from './aws-deployment.ts';
import { runHandlers } from './aws-run.ts';
import { fixedMonthlyCosts, handlerRunSummary, notModelled, usageOf } from './aws-usage.ts';

export const AWS_TARGETS = {
  bundle_bytes: BUNDLE_TARGET_BYTES,
  cold_import_ms: COLD_IMPORT_TARGET_MS,
  cost_per_million_tasks: 5,
} as const;

export type AwsBenchResult = Awaited<ReturnType<typeof runAwsBench>>;

export async function runAwsBench(env: NodeJS.ProcessEnv = process.env) {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const log = (text: string) => process.stderr.write(`bench: aws: ${text}\n`);
  log('reading the construct defaults…');
  const defaults = readDeploymentDefaults(resolve(root, 'dags'));

  log('bundling…');
  const outdir = bundleDirectory();
  let bundles: Awaited<ReturnType<typeof bundleFunctions>>;
  let coldImport: ReturnType<typeof measureColdImports>;
  try {
    bundles = await bundleFunctions(root, outdir);
    log('cold imports…');
    coldImport = measureColdImports(outdir, root, bundles, Number(env.BENCH_AWS_COLD_RUNS ?? 5));
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }

  log('handler-level run…');
  const run = await runHandlers(defaults, {
    dagId: 'bench_fanout',
    tasksPerRun: 100,
    runs: Number(env.BENCH_AWS_RUNS ?? 5),
    workerConcurrency: Number(env.BENCH_AWS_WORKERS ?? 1),
    schedulerConcurrency: Number(env.BENCH_AWS_SCHEDULERS ?? 1),
    tickIntervalMs: Number(env.BENCH_AWS_TICK_MS ?? 15_000),
  });
  const usage = usageOf(run, defaults.memoryMb);
  const cost: CostModel = modelCost(usage, US_EAST_1_PRICES);
  const cpuBound = modelCost(usageOf(run, defaults.memoryMb, { cpuScaled: true }), US_EAST_1_PRICES);
  const tickMs = Number(defaults.settingsEnvironment.scheduler.UPDRAFT_SCHEDULER_TICK_MS ?? 60_000);

  return {
    targets: AWS_TARGETS,
    bundles,
    cold_import: coldImport,
    handler_run: handlerRunSummary(run, defaults.memoryMb),
    cost: {
      per_tasks: cost.per,
      measured_tasks: cost.tasks,
      total_dollars: cost.total,
      within_target: cost.total < AWS_TARGETS.cost_per_million_tasks,
      largest: cost.largest.map((item) => item.item),
      items: cost.items,
      prices: US_EAST_1_PRICES,
      /** Lambda compute if every measured ms were CPU, stretched by Lambda's CPU share (1,769 MB = 1 vCPU). */
      if_cpu_bound_at_lambda_cpu_share: {
        total_dollars: cpuBound.total,
        largest: cpuBound.largest.map((item) => item.item),
      },
      for_scale: {
        step_functions_standard_per_million_transitions: STEP_FUNCTIONS_STANDARD_PER_MILLION_TRANSITIONS,
      },
      fixed_monthly: fixedMonthlyCosts(run, defaults, tickMs, US_EAST_1_PRICES),
      not_modelled: notModelled(run),
    },
  };
}
