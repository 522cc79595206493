/**
 * The AWS deployment's benchmark (issue 7), run as the `aws` part of `npm run bench` (skip it
 * with BENCH_AWS=0) or alone with `node bench/aws.ts` (JSON `{ "aws": … }` on stdout, the table
 * on stderr). What it measures, and how:
 *
 * 1. Bundle size per function: each entry of `functions/` (and the triggerer's container entry)
 *    bundled with esbuild with the CDK's options (lib/functions.ts: ESM, minified, source maps
 *    without sources content, target node24, platform node, the `createRequire` banner,
 *    `@aws-sdk/*` external; the triggerer as lib/triggerer-image.ts, SDK included). Size is the
 *    minified `.mjs`, source map excluded. The worker is bundled twice: as deployed, and with
 *    every module under `dags/` stubbed to an empty module (an esbuild load hook); its figure is
 *    the stubbed bundle, i.e. without the user's DAG code (`dags_bytes` is the difference).
 *    The largest inputs, zod and zod's locales come from esbuild's metafile. Target < 1 MiB.
 * 2. Cold import: a fresh `node` per measurement imports the bundle and reports
 *    `performance.now()` (ms since the process started) when the import is done; an empty module
 *    gives Node's own start in the same run, and `net_ms` is the difference of the medians.
 *    BENCH_AWS_COLD_RUNS runs (5; 0 skips) per target, round-robin. As deployed (`--enable-source-maps`,
 *    the construct's NODE_OPTIONS), without it, and the AWS SDK packages the bundle imports
 *    alone (what the runtime's SDK costs). No credentials, an empty HOME, a Lambda-like
 *    environment; network connections seen on Node's diagnostics channels are reported.
 *    Target < 150 ms.
 * 3. Modelled cost per 1,000,000 no-op task runs: the real handlers run in this process with
 *    Lambda-shaped events (test/support/lambda-events.ts) over dynalite in its own process, the
 *    real SQS/S3/timer adapters over counting in-memory stand-ins, the event source mappings as
 *    the construct configures them (batch size, batching window; BENCH_AWS_WORKERS and
 *    BENCH_AWS_SCHEDULERS concurrent pollers, 1 each by default so durations are not inflated
 *    by sharing one event loop), memory sizes read from the `Updraft` construct. After a warm-up
 *    run, BENCH_AWS_RUNS (5) runs of bench_fanout (100 no-op tasks) are metered from trigger to
 *    quiet: DynamoDB request units from item sizes (bench/aws-meters.ts), SQS requests per 64 KB
 *    chunk (plus one receive and one delete per event-source invocation), S3 and Scheduler
 *    requests, Lambda invocations and their measured durations (rounded up to the ms), HTTP API
 *    requests for the public API and function URL requests for the Execution API. The periodic
 *    tick runs every BENCH_AWS_TICK_MS (15000, the deployment's minute compressed) and is priced
 *    apart as a fixed monthly cost; runs that only a tick finished are counted
 *    (`runs_finished_by_tick`: a scheduling pass should have). bench/aws-cost.ts turns the counts into dollars at us-east-1
 *    list prices. CloudWatch Logs/EMF, X-Ray, Secrets Manager and data transfer are not modelled.
 *    Target < $5 per million.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runAwsBench } from './aws-bench.ts';
import { renderAwsTable } from './aws-report.ts';

export { type AwsBenchResult, runAwsBench } from './aws-bench.ts';
export { renderAwsTable } from './aws-report.ts';

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const aws = await runAwsBench();
  process.stdout.write(`${JSON.stringify({ aws }, null, 2)}\n`);
  process.stderr.write(renderAwsTable(aws));
}
