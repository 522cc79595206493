import type { AwsBenchResult } from './aws-bench.ts';
import { round } from './aws-cost.ts';

const kib = (bytes: number | undefined) => (bytes === undefined ? '-' : String(Math.round(bytes / 1024)));
const ms = (value: number) => (Number.isFinite(value) ? String(round(value, 0)) : '-');
const dollars = (value: number) => `$${value < 0.01 && value > 0 ? value.toFixed(4) : value.toFixed(2)}`;
const row = (cells: (string | number)[], widths: number[]) =>
  `    ${cells.map((cell, index) => (index === 0 ? String(cell).padEnd(widths[0] ?? 0) : String(cell).padStart(widths[index] ?? 0))).join('  ')}`;

/** The AWS part's table on stderr: bundles, cold imports, the cost per million no-op tasks. */
export function renderAwsTable(aws: AwsBenchResult): string {
  const lines: string[] = ['', 'AWS deployment (bench/aws.ts)'];

  lines.push(
    `  bundle size, KiB of minified JS without the source map (target < ${kib(aws.targets.bundle_bytes)} KiB; worker without dags/)`,
  );
  const bundleWidths = [16, 8, 8, 14, 16, 0];
  lines.push(row(['function', 'KiB', 'zod', 'zod locales', 'dags (worker)', ''], bundleWidths));
  for (const [name, size] of Object.entries(aws.bundles)) {
    lines.push(
      row(
        [
          name,
          kib(size.bytes),
          kib(size.zod_bytes),
          kib(size.zod_locales_bytes),
          size.dags_bytes === undefined ? '' : kib(size.dags_bytes),
          size.under_target ? '' : '  over target',
        ],
        bundleWidths,
      ),
    );
  }

  const cold = aws.cold_import;
  lines.push(
    `  cold import, ms from process start, median of ${cold.runs} fresh processes (target net < ${aws.targets.cold_import_ms} ms)`,
    `    empty module (Node's start): ${ms(cold.deployed.baseline_ms)} ms with --enable-source-maps, ${ms(cold.without_source_maps.baseline_ms)} ms without`,
  );
  const coldWidths = [16, 8, 8, 16, 17, 22, 0];
  lines.push(
    row(
      ['function', 'total', 'net', 'net w/o maps', 'runtime SDK net', 'lazy SDK, first use', ''],
      coldWidths,
    ),
  );
  for (const [name, entry] of Object.entries(cold.deployed.functions)) {
    const plain = cold.without_source_maps.functions[name];
    // Only where the function imports SDK packages from the runtime at load.
    const sdk = (aws.bundles[name]?.sdk_imports.length ?? 0) > 0 ? cold.sdk_only[name] : undefined;
    const problems = [
      entry.net_ms >= aws.targets.cold_import_ms ? 'over target' : '',
      entry.network_attempts.length > 0 ? `network: ${entry.network_attempts.join(', ')}` : '',
      entry.errors.length > 0 ? `error: ${entry.errors[0]?.split('\n')[0]}` : '',
    ].filter(Boolean);
    lines.push(
      row(
        [
          name,
          ms(entry.median_ms),
          ms(entry.net_ms),
          plain ? ms(plain.net_ms) : '-',
          sdk ? ms(sdk.net_ms) : '-',
          entry.lazy_import_ms === undefined ? '-' : ms(entry.lazy_import_ms),
          problems.length ? `  ${problems.join('; ')}` : '',
        ],
        coldWidths,
      ),
    );
  }

  const run = aws.handler_run;
  const cost = aws.cost;
  lines.push(
    `  cost per ${cost.per_tasks.toLocaleString('en-US')} no-op task runs, from ${run.task_instances} measured (${run.runs} runs of ${run.dag_id}, ${run.seconds} s), us-east-1 list prices`,
  );
  const costWidths = [46, 14, 12, 0];
  lines.push(row(['item', 'quantity', '$ / M tasks', ''], costWidths));
  for (const item of cost.items) {
    lines.push(
      row(
        [
          item.item,
          round(item.quantity, 0).toLocaleString('en-US'),
          dollars(item.dollars),
          item.detail ? `  ${item.detail}` : '',
        ],
        costWidths,
      ),
    );
  }
  lines.push(
    `    total ${dollars(cost.total_dollars)} per million tasks (target < $${aws.targets.cost_per_million_tasks}: ${cost.within_target ? 'met' : 'NOT met'}); largest: ${cost.largest.join(', ')}`,
    `    if every measured ms were CPU at Lambda's CPU share (1,769 MB = 1 vCPU): ${dollars(cost.if_cpu_bound_at_lambda_cpu_share.total_dollars)}`,
    `    for scale: Step Functions Standard bills $${cost.for_scale.step_functions_standard_per_million_transitions} per million state transitions`,
  );
  lines.push('  per task');
  const fns = Object.entries(run.lambda)
    .map(
      ([fn, entry]) =>
        `${fn} ${entry.per_task} × ${entry.mean_ms} ms (p95 ${entry.p95_ms}) at ${entry.memory_mb} MB`,
    )
    .join('; ');
  lines.push(`    invocations: ${fns}`);
  const units = Object.entries(run.dynamodb.by_function)
    .map(
      ([fn, entry]) =>
        `${fn} ${entry.read_units_per_task} RRU / ${round(entry.table_write_units_per_task + entry.index_write_units_per_task, 3)} WRU`,
    )
    .join('; ');
  lines.push(`    DynamoDB: ${units}`);
  lines.push(
    `    largest writes (WRU/task): ${Object.entries(run.dynamodb.write_units_by_item_per_task)
      .slice(0, 5)
      .map(([item, value]) => `${item} ${value}`)
      .join(', ')}`,
  );
  lines.push(
    `    largest reads (RRU/task): ${Object.entries(run.dynamodb.read_units_by_item_per_task)
      .slice(0, 5)
      .map(([item, value]) => `${item} ${value}`)
      .join(', ')}`,
  );
  lines.push(
    `    units per request (item size): ${Object.entries(run.dynamodb.units_per_request_by_item)
      .slice(0, 5)
      .map(([item, value]) => `${item} ${value}`)
      .join(', ')}`,
  );
  const fixed = cost.fixed_monthly;
  lines.push(
    `  fixed per month: tick ${dollars(fixed.tick.dollars)} (${fixed.tick.ticks_per_month} idle ticks of ${run.idle_tick.duration_ms} ms), event source polling ~${dollars(fixed.event_source_polling.dollars)} (assumed), triggerer $0 at idle`,
  );
  const prices = cost.prices;
  lines.push(
    `  prices (${prices.region}, ${prices.note}): Lambda arm64 $${prices.lambdaGbSecond.dollars}/GB-s, $${prices.lambdaRequest.dollars}/M requests; DynamoDB on-demand $${prices.dynamoWriteRequestUnit.dollars}/M WRU, $${prices.dynamoReadRequestUnit.dollars}/M RRU; SQS $${prices.sqsRequest.dollars}/M requests; S3 PUT $${prices.s3Put.dollars}/1,000, GET $${prices.s3Get.dollars}/1,000; HTTP API $${prices.httpApiRequest.dollars}/M; function URL $0; EventBridge Scheduler $${prices.schedulerInvocation.dollars}/M`,
  );
  if (run.runs_finished_by_tick > 0) {
    lines.push(
      `  ! ${run.runs_finished_by_tick} of ${run.runs} runs were finished by the periodic tick, not by a scheduling pass`,
    );
  }
  for (const warning of run.warnings) lines.push(`  ! ${warning}`);
  lines.push(...cost.not_modelled.map((text) => `  not modelled: ${text}`));
  return `${lines.join('\n')}\n`;
}
