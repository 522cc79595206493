/**
 * `npm run bench`: standalone with the embedded store on this machine, in two modes one after
 * the other, each in its own temporary home with the same settings (see harness.ts):
 * `in_process` (one long-lived engine) and `lambda_shape` (a fresh engine instance per
 * scheduling batch, tick and API call). In each mode:
 * (a) throughput: 20 runs of a 100-task fan-out (2,000 no-op task instances);
 * (b) latency: a 100-task chain, "upstream finished → downstream started" p50/p95;
 * (c) cost: store requests and queue operations per task instance and per scheduling pass,
 *     counted by instrumenting the DynamoDB client and the queue port;
 * (d) reads per scheduling pass for one run of 100 tasks and one run of 2,000 tasks (bench_wide).
 * JSON on stdout (one object, both modes), a readable table on stderr.
 *
 * Environment: BENCH_FANOUT_RUNS (20), BENCH_STORE=memory (store in memory instead of on disk),
 * BENCH_MODES (comma-separated, both by default), BENCH_WIDE=0 (skip the 2,000-task run).
 * BENCH_AWS=0 skips the AWS deployment part (bundle sizes, cold imports, modelled cost per million
 * tasks: see bench/aws.ts, which also runs it alone: `node bench/aws.ts`); its JSON is under `aws`.
 * BENCH_TRIGGERS=0 skips the triggerer part (10,000 triggers on one triggerer, the largest count
 * one sustains, a failover: see bench/triggers.ts, which also runs it alone: `node bench/triggers.ts`);
 * its JSON is under `triggers`. BENCH_CALLBACKS=0 skips the callbacks part (5,000 short task
 * workloads queued behind busy task slots, then 20 TIs failing with an `onFailure` callback: the
 * callbacks' start latency and the task throughput meanwhile, about a minute: see
 * bench/callbacks.ts, which also runs it alone: `node bench/callbacks.ts`); its JSON is under
 * `callbacks`. BENCH_MODES=none runs no mode (only the other parts).
 */
import { cpus } from 'node:os';
import { MODES, type Mode, startInstance } from './harness.ts';
import {
  type ModeResult,
  renderAwsTable,
  renderCallbacksTable,
  renderTable,
  renderTriggersTable,
  TARGETS,
} from './report.ts';
import { chainLatency, FANOUT_TASKS, readsPerPass, throughput, WIDE_TASKS, warmUp } from './scenarios.ts';

const FANOUT_RUNS = Number(process.env.BENCH_FANOUT_RUNS ?? 20);
const onDisk = process.env.BENCH_STORE !== 'memory';
const withWide = process.env.BENCH_WIDE !== '0';
const modes = (
  process.env.BENCH_MODES === 'none'
    ? []
    : (process.env.BENCH_MODES?.split(',').map((mode) => mode.trim()) ?? [...MODES])
).filter((mode): mode is Mode => {
  if ((MODES as readonly string[]).includes(mode)) return true;
  throw new Error(`BENCH_MODES: unknown mode ${mode} (known: ${MODES.join(', ')}, or none)`);
});

const results: Partial<Record<Mode, ModeResult>> = {};
let workerSlots = 0;
for (const mode of modes) {
  process.stderr.write(`bench: ${mode}…\n`);
  const bench = await startInstance(mode, { onDisk });
  workerSlots = bench.settings.workerSlots;
  try {
    await warmUp(bench);
    const fanout = await throughput(bench, FANOUT_RUNS);
    const latency = await chainLatency(bench);
    const fanout100 = await readsPerPass(bench, 'bench_fanout', FANOUT_TASKS);
    const wideRun = withWide ? await readsPerPass(bench, 'bench_wide', WIDE_TASKS) : undefined;
    results[mode] = {
      throughput: fanout,
      latency,
      reads_per_pass: { fanout_100: fanout100, ...(wideRun ? { wide: wideRun } : {}) },
    };
  } finally {
    await bench.stop();
  }
}

// --- triggerer part (bench/triggers.ts), after the modes, before the AWS part's import ---
const triggers =
  process.env.BENCH_TRIGGERS === '0' ? undefined : await (await import('./triggers.ts')).runTriggersBench();
// --- end of the triggerer part ---

// --- callbacks part (bench/callbacks.ts), after the triggerer part, before the AWS part's import ---
const callbacks =
  process.env.BENCH_CALLBACKS === '0'
    ? undefined
    : await (await import('./callbacks.ts')).runCallbacksBench();
// --- end of the callbacks part ---

// --- AWS deployment part (bench/aws.ts), after the modes so it does not load the machine under them ---
// Imported only now: the Powertools tracer under the handlers loads the X-Ray SDK, whose
// context tracking enables async hooks that would slow every promise of the modes above.
const aws = process.env.BENCH_AWS === '0' ? undefined : await (await import('./aws.ts')).runAwsBench();
// --- end of the AWS deployment part ---

const machine = {
  cpus: cpus().length,
  node: process.version,
  store: onDisk ? 'dynalite on disk' : 'dynalite in memory',
};
process.stdout.write(
  `${JSON.stringify({ machine, settings: { worker_slots: workerSlots }, targets: TARGETS, modes: results, ...(triggers ? { triggers } : {}), ...(callbacks ? { callbacks } : {}), ...(aws ? { aws } : {}) }, null, 2)}\n`,
);
if (modes.length > 0) {
  process.stderr.write(
    renderTable(
      results,
      `\nUpdraft benchmark (${machine.store}, ${machine.cpus} CPUs, ${workerSlots} worker slots, ${FANOUT_RUNS} fan-out runs)`,
    ),
  );
}
// Triggerer part: its table after the modes' table.
if (triggers) process.stderr.write(renderTriggersTable(triggers));
// Callbacks part: its table after the triggerer's.
if (callbacks) process.stderr.write(renderCallbacksTable(callbacks));
// AWS deployment part: its table after the modes' table.
if (aws) process.stderr.write(renderAwsTable(aws));
