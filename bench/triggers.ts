/**
 * The triggerer's benchmark, run as the `triggers` part of `npm run bench` (skip it with
 * BENCH_TRIGGERS=0) or alone with `node bench/triggers.ts` (JSON `{ "triggers": … }` on stdout,
 * the table on stderr). The real API (createApiStack in this process, over HTTP on 127.0.0.1, on
 * the embedded in-memory DynamoDB in its own process as standalone runs it) and the real
 * triggerer (`src/triggerer/main.ts`) as child processes; the deferred work is written straight to
 * the store (bench/triggers-stack.ts). `updraft.DateTimeTrigger`s, moments spread evenly over a window that
 * starts a few seconds after the setup. Three parts:
 *
 * 1. BENCH_TRIGGERS_COUNT (10,000) triggers over 30 s, one triggerer (capacity = the count):
 *    event-to-resume latency = the TI's `nextEventAt` (when the API applied the event: the TI is
 *    `scheduled` to resume) − the moment, p50/p99/max, split at the event call's arrival at the
 *    API; TIs resumed; the triggerer's peak RSS (VmHWM) and its RSS once everything is claimed;
 *    the claim time. Then a scheduler and a worker pool (standalone's wiring, its default 8 slots)
 *    run each resumed TI to success: TIs completed, and when the last did (waiting up to
 *    BENCH_TRIGGERS_COMPLETE_TIMEOUT_S, 300). They start once the events are in, so that on these
 *    2 cores they do not compete with the triggerer, API and store being measured (on AWS the
 *    workers run apart). Targets: all resumed and completed, p99 < 2 s, peak RSS < 300 MB.
 * 2. The largest count one triggerer sustains: BENCH_TRIGGERS_MAX (100,000) over 60 s when the
 *    rates part 1 measured (setup, claims, events) say it fits BENCH_TRIGGERS_MAX_BUDGET_S (110);
 *    otherwise the reason, and a short search within that budget (30 s windows) for the largest
 *    count that meets part 1's targets: from a quarter of part 1's count when part 1 missed them,
 *    up from part 1's count when it met them.
 * 3. Failover with the default heartbeat interval, heartbeat timeout and load interval: two
 *    triggerers, 1,000 triggers 20–40 s out; once both hold some, the one holding the older half is
 *    killed with SIGKILL: time until the other claimed all it held, and its triggers' lateness.
 *    Target: failover < 15 s.
 *
 * Every child process is killed at the end, also on failure. 5 to 7 minutes on 2 cores.
 */
import { cpus, loadavg } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { round } from './triggers-measure.ts';
import { renderTriggersTable, TRIGGER_TARGETS, type TriggersBenchResult } from './triggers-report.ts';
import { failoverScenario, type LoadResult, loadScenario } from './triggers-scenarios.ts';

export { renderTriggersTable, type TriggersBenchResult } from './triggers-report.ts';

const COUNT = Number(process.env.BENCH_TRIGGERS_COUNT ?? 10_000);
const WINDOW_MS = 30_000;
const MAX = Number(process.env.BENCH_TRIGGERS_MAX ?? 100_000);
const MAX_WINDOW_MS = 60_000;
const MAX_BUDGET_MS = Number(process.env.BENCH_TRIGGERS_MAX_BUDGET_S ?? 110) * 1000;
const FAILOVER_COUNT = 1_000;
const LEAD_MS = 5_000;
/** After the window, how long part 1 waits for the last events; the search's attempts wait less. */
const GRACE_MS = 20_000;
/** After the last event, how long part 1 waits for the last resumed TI to succeed on a worker. */
const COMPLETE_TIMEOUT_MS = Number(process.env.BENCH_TRIGGERS_COMPLETE_TIMEOUT_S ?? 300) * 1000;
const SEARCH_GRACE_MS = 10_000;
/** Starting a triggerer, reading the TIs back, closing the stack. */
const OVERHEAD_MS = 5_000;
/** A triggerer's load interval (the default): it waits this long after a load that was not full. */
const LOAD_INTERVAL_MS = 1_000;

const log = (line: string) => process.stderr.write(`${line}\n`);

/** Whether a run met part 1's targets: every TI resumed (and completed, when run), p99 under 2 s, peak RSS under 300 MB. */
export function metTargets(result: LoadResult): boolean {
  return (
    result.resumed === result.triggers &&
    (result.completed === undefined || result.completed === result.triggers) &&
    result.event_to_resume_ms.p99 < TRIGGER_TARGETS.p99_ms &&
    (result.triggerer.peak_rss_mb ?? Number.POSITIVE_INFINITY) < TRIGGER_TARGETS.peak_rss_mb
  );
}

/** What part 1's rates predict for `count` triggers over `windowMs` (seconds, lower bounds). */
function predict(reference: LoadResult, count: number, windowMs: number) {
  const setupS = count / reference.setup.triggers_per_second;
  const firstLoad = reference.claim.first_load;
  const claimsPerSecond =
    firstLoad && firstLoad.ms > 0 ? firstLoad.claims / (firstLoad.ms / 1000) : Number.POSITIVE_INFINITY;
  // Load calls of at most 1,000 claims, one at a time: back to back while they come back full and
  // the API keeps up with the reports, with one load interval after the last; on an otherwise idle API.
  const claimS = count / claimsPerSecond + LOAD_INTERVAL_MS / 1000;
  return {
    setup_s: Math.round(setupS),
    claim_s: Math.round(claimS),
    idle_claims_per_second: Math.round(claimsPerSecond),
    events_per_second_needed: Math.round(count / (windowMs / 1000)),
    events_per_second_seen: reference.applied_per_second,
    run_s: Math.round(setupS + LEAD_MS / 1000 + Math.max(claimS, windowMs / 1000) + GRACE_MS / 1000),
  };
}

async function largestCount(reference: LoadResult): Promise<TriggersBenchResult['largest']> {
  const prediction = predict(reference, MAX, MAX_WINDOW_MS);
  if (prediction.run_s * 1000 <= MAX_BUDGET_MS) {
    log(`bench: triggers, ${MAX} triggers over ${MAX_WINDOW_MS / 1000} s…`);
    const run = await loadScenario({
      count: MAX,
      windowMs: MAX_WINDOW_MS,
      leadMs: LEAD_MS,
      graceMs: GRACE_MS,
      runPrefix: 'max',
      log,
    });
    return {
      max: MAX,
      max_attempted: true,
      prediction,
      attempts: [summary(run)],
      largest_that_worked: metTargets(run) ? MAX : undefined,
      max_run: run,
    };
  }
  log(
    `bench: triggers, ${MAX} not run: setup ~${prediction.setup_s} s and claims ~${prediction.claim_s} s at part 1's rates, over the ${MAX_BUDGET_MS / 1000} s budget; searching…`,
  );
  const attempts: ReturnType<typeof summary>[] = [];
  const runs: LoadResult[] = [];
  const passed = metTargets(reference);
  let worked = passed ? reference.triggers : 0;
  let failed = passed ? undefined : reference.triggers;
  let count = passed ? nextUp(reference.triggers) : roundCount(reference.triggers / 4);
  const deadline = Date.now() + MAX_BUDGET_MS;
  for (;;) {
    if (count <= worked || (failed !== undefined && count >= failed) || count > MAX || count < 100) break;
    const expected = predict(reference, count, WINDOW_MS);
    const attemptMs =
      expected.setup_s * 1000 +
      LEAD_MS +
      Math.max(expected.claim_s * 1000, WINDOW_MS) +
      SEARCH_GRACE_MS +
      OVERHEAD_MS;
    if (Date.now() + attemptMs > deadline) break;
    log(`bench: triggers, ${count} triggers over ${WINDOW_MS / 1000} s…`);
    const run = await loadScenario({
      count,
      windowMs: WINDOW_MS,
      leadMs: LEAD_MS,
      graceMs: SEARCH_GRACE_MS,
      runPrefix: `search${count}`,
      log,
    });
    runs.push(run);
    attempts.push(summary(run));
    if (metTargets(run)) worked = count;
    else failed = count;
    count = failed === undefined ? nextUp(count) : roundCount((worked + failed) / 2);
  }
  const largestRun = runs.find((run) => run.triggers === worked);
  return {
    max: MAX,
    max_attempted: false,
    prediction,
    attempts,
    largest_that_worked: worked > 0 ? worked : undefined,
    ...(largestRun ? { largest_run: largestRun } : {}),
  };
}

function nextUp(count: number): number {
  return Math.min(MAX, count * 2);
}

/** To the 250 below (at least 250). */
function roundCount(count: number): number {
  return Math.max(250, Math.floor(count / 250) * 250);
}

function summary(run: LoadResult) {
  return {
    triggers: run.triggers,
    window_ms: run.window_ms,
    resumed: run.resumed,
    p99_ms: run.event_to_resume_ms.p99,
    peak_rss_mb: run.triggerer.peak_rss_mb,
    max_running: run.triggerer.max_running,
    load_calls_over_10s: run.claim.load_calls_over_10s,
    met_targets: metTargets(run),
  };
}

export async function runTriggersBench(): Promise<TriggersBenchResult> {
  const loadBefore = round(loadavg()[0] ?? 0, 1);
  log(`bench: triggers, ${COUNT} triggers over ${WINDOW_MS / 1000} s, one triggerer…`);
  const load = await loadScenario({
    count: COUNT,
    windowMs: WINDOW_MS,
    leadMs: LEAD_MS,
    graceMs: GRACE_MS,
    completeTimeoutMs: COMPLETE_TIMEOUT_MS,
    runPrefix: 'load',
    log,
  });
  const largest = await largestCount(load);
  log(`bench: triggers, failover of ${FAILOVER_COUNT} triggers…`);
  const failover = await failoverScenario({ count: FAILOVER_COUNT, log });
  const machine = {
    cpus: cpus().length,
    load_average_1m: { before: loadBefore, after: round(loadavg()[0] ?? 0, 1) },
  };
  return { machine, targets: TRIGGER_TARGETS, load, largest, failover };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const triggers = await runTriggersBench();
  process.stdout.write(`${JSON.stringify({ triggers }, null, 2)}\n`);
  process.stderr.write(renderTriggersTable(triggers));
}
