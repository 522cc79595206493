/**
 * The callbacks benchmark, run as the `callbacks` part of `npm run bench` (skip it with
 * BENCH_CALLBACKS=0) or alone with `node bench/callbacks.ts` (JSON `{ "callbacks": … }` on stdout,
 * the table on stderr). One standalone instance in its own temporary home (store on disk unless
 * BENCH_STORE=memory, no triggerer), with the configured worker and callback slots (8 and 2 by
 * default), the DAGs of bench/dags/ and two bench-only pools of 2,500 slots for the flood.
 *
 * 1. Flood: BENCH_CALLBACKS_FLOOD_RUNS (50) runs of `bench_flood` (100 tasks of 100–200 ms each:
 *    5,000 task workloads), all triggered at once; the probes start once the scheduler has queued
 *    them all (or after 45 s), with every task slot busy and thousands of workloads waiting.
 * 2. Probes: BENCH_CALLBACKS_PROBES (20) runs of `bench_alert`, 750 ms apart: one TI (on the `high`
 *    task queue, so it runs at the next free slot) that fails at once with an `onFailure` callback.
 *    Latency = the callback's `start_date` − the failed TI's `end_date`, read through the public
 *    API, split at the callback's `owed_at` and `queued_at`; p50/p95/max. Target: p95 ≤ 1 s.
 * 3. Tasks keep flowing: the flood TIs that ended while the probes ran, per second, against the
 *    mean of the same span just before them (the scheduler still queuing the flood) and just after
 *    them (the flood alone), from the TIs' `end_date`, read afterwards. Target: at least 0.8.
 *
 * BENCH_CALLBACKS_WARM_LANE=1 first runs one failing run per callback slot, so the probes find the
 * DAG's code already imported in the callback lane's runner processes (standalone starts the
 * processes; the first callback of a DAG version imports its code).
 *
 * About a minute and a half on 2 cores; the flood is not run to its end (the instance is stopped).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSettings } from '#config/settings.ts';
import { createLogger } from '#engine/logger.ts';
import { type Standalone, startStandalone } from '#standalone/services.ts';
import {
  CALLBACK_TARGETS,
  type CallbacksBenchResult,
  type Figures,
  type ProbeResult,
  renderCallbacksTable,
  type Throughput,
} from './callbacks-report.ts';
import { percentile } from './costs.ts';
import { FLOOD_POOLS, FLOOD_TASKS_PER_RUN, floodSleepMs } from './dags/bench_flood.ts';

export { type CallbacksBenchResult, renderCallbacksTable } from './callbacks-report.ts';

const FLOOD_RUNS = Number(process.env.BENCH_CALLBACKS_FLOOD_RUNS ?? 50);
const PROBES = Number(process.env.BENCH_CALLBACKS_PROBES ?? 20);
/** Run one callback per callback slot before the flood, so the probes find the lane's runner processes up. */
const WARM_LANE = process.env.BENCH_CALLBACKS_WARM_LANE === '1';
const PROBE_SPACING_MS = 750;
/** Longest wait for the scheduler to queue the whole flood before the probes start anyway. */
const BACKLOG_WAIT_MS = 45_000;
/** Longest wait for the last probe's callback after it was triggered. */
const CALLBACK_WAIT_MS = 30_000;
const POOL_SLOTS = 2_500;

const log = (line: string) => process.stderr.write(`${line}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const round1 = (value: number) => Math.round(value * 10) / 10;

interface Metrics {
  gauges: Record<string, number>;
  counters: Record<string, number>;
}
interface WireTaskInstance {
  task_id: string;
  state: string | null;
  end_date: string | null;
}
interface WireCallback {
  kind: string;
  state: string;
  owed_at: string | null;
  queued_at: string | null;
  start_date: string | null;
  end_date: string | null;
}

/** The public API of the instance, as a user would reach it. */
function apiOf(standalone: Standalone) {
  const headers = { authorization: `Bearer ${standalone.apiToken}`, 'content-type': 'application/json' };
  async function call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const response = await fetch(`${standalone.apiUrl}/api/v2/${path}`, {
      method,
      headers,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  }
  return {
    trigger: (dagId: string, runId: string) =>
      call('POST', `dags/${dagId}/dagRuns`, { dag_run_id: runId }).then(() => undefined),
    metrics: () => call<Metrics>('GET', 'metrics'),
    taskInstances: (dagId: string, runId: string) =>
      call<{ task_instances: WireTaskInstance[] }>('GET', `dags/${dagId}/dagRuns/${runId}/taskInstances`),
    callbacks: (dagId: string, runId: string) =>
      call<{ callbacks: WireCallback[] }>('GET', `dags/${dagId}/dagRuns/${runId}/callbacks`),
  };
}
type Api = ReturnType<typeof apiOf>;

function figuresOf(values: readonly number[]): Figures {
  const sorted = [...values].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p95: percentile(sorted, 95), max: sorted.at(-1) ?? Number.NaN };
}

const msBetween = (from: string | null, to: string | null) =>
  from && to ? Date.parse(to) - Date.parse(from) : Number.NaN;

/** Waits until `done` holds on the metrics, or the deadline; returns the last metrics read. */
async function waitForMetrics(api: Api, done: (metrics: Metrics) => boolean, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const metrics = await api.metrics();
    if (done(metrics) || Date.now() > deadline) return metrics;
    await sleep(250);
  }
}

/** Triggers the probes `PROBE_SPACING_MS` apart, noting the task backlog at each. */
async function triggerProbes(api: Api) {
  const sampled: { runId: string; queuedTasks: number; openSlots: number }[] = [];
  const startMs = Date.now();
  for (let index = 0; index < PROBES; index += 1) {
    await sleep(Math.max(0, startMs + index * PROBE_SPACING_MS - Date.now()));
    const { gauges } = await api.metrics();
    const runId = `alert_${String(index).padStart(2, '0')}`;
    await api.trigger('bench_alert', runId);
    sampled.push({
      runId,
      queuedTasks: gauges['executor.queued_tasks'] ?? Number.NaN,
      openSlots: gauges['executor.open_slots'] ?? Number.NaN,
    });
  }
  return sampled;
}

/** Each probe's failed TI and its failure callback, through the public API. */
async function readProbe(
  api: Api,
  sample: { runId: string; queuedTasks: number; openSlots: number },
): Promise<ProbeResult> {
  const [{ task_instances }, { callbacks }] = await Promise.all([
    api.taskInstances('bench_alert', sample.runId),
    api.callbacks('bench_alert', sample.runId),
  ]);
  const ti = task_instances.find((entry) => entry.task_id === 'fail_now');
  const callback = callbacks.find((entry) => entry.kind === 'task_failure');
  if (ti?.state !== 'failed' || !callback)
    throw new Error(
      `probe ${sample.runId}: TI ${ti?.state ?? 'missing'}, callback ${callback?.state ?? 'missing'}`,
    );
  return {
    run_id: sample.runId,
    ti_end_date: ti.end_date,
    callback_queued_at: callback.queued_at,
    callback_start_date: callback.start_date,
    callback_end_date: callback.end_date,
    callback_start_ms: msBetween(ti.end_date, callback.start_date),
    ti_end_to_owed_ms: msBetween(ti.end_date, callback.owed_at),
    owed_to_queued_ms: msBetween(callback.owed_at, callback.queued_at),
    queued_to_start_ms: msBetween(callback.queued_at, callback.start_date),
    callback_run_ms: callback.end_date ? msBetween(callback.start_date, callback.end_date) : null,
    callback_state: callback.state,
    queued_tasks: sample.queuedTasks,
    open_task_slots: sample.openSlots,
  };
}

/** Flood TIs that ended within [fromMs, toMs), from their end dates (read once, afterwards). */
async function floodEnds(standalone: Standalone): Promise<number[]> {
  const ends: number[] = [];
  for (let index = 0; index < FLOOD_RUNS; index += 1) {
    const snapshot = await standalone.store.getRunSnapshot({
      dagId: 'bench_flood',
      runId: floodRunId(index),
    });
    for (const ti of snapshot?.taskInstances ?? []) if (ti.endDate) ends.push(Date.parse(ti.endDate));
  }
  return ends;
}

function throughputOf(ends: readonly number[], fromMs: number, toMs: number): Throughput {
  const finished = ends.filter((end) => end >= fromMs && end < toMs).length;
  const seconds = (toMs - fromMs) / 1000;
  return {
    window_s: round1(seconds),
    tasks_finished: finished,
    tasks_per_second: seconds > 0 ? round1(finished / seconds) : Number.NaN,
  };
}

/**
 * One failing run per callback slot, at once, before the flood: each slot's first callback spawns
 * its runner process, which then stays idle for the probes. Returns the callbacks settled so far.
 */
async function warmLane(api: Api, slots: number): Promise<number> {
  log(`bench: callbacks, warming the callback lane (${slots} callbacks)…`);
  await Promise.all(
    Array.from({ length: slots }, (_, index) => api.trigger('bench_alert', `warmup_${index}`)),
  );
  const { counters } = await waitForMetrics(
    api,
    (metrics) => (metrics.counters['callbacks.succeeded'] ?? 0) >= slots,
    CALLBACK_WAIT_MS,
  );
  return (counters['callbacks.succeeded'] ?? 0) + (counters['callbacks.failed'] ?? 0);
}

const floodRunId = (index: number) => `flood_${String(index).padStart(2, '0')}`;

export async function runCallbacksBench(): Promise<CallbacksBenchResult> {
  const began = Date.now();
  const loadBefore = round1(loadavg()[0] ?? 0);
  const onDisk = process.env.BENCH_STORE !== 'memory';
  const home = await mkdtemp(join(tmpdir(), 'updraft-bench-callbacks-'));
  const pools = Object.fromEntries([['default_pool', 128], ...FLOOD_POOLS.map((pool) => [pool, POOL_SLOTS])]);
  const settings = loadSettings({
    ...process.env,
    UPDRAFT_HOME: home,
    PORT: '0',
    UPDRAFT_DAGS_FOLDER: resolve('bench/dags'),
    UPDRAFT_DAG_REFRESH_INTERVAL_MS: '0',
    UPDRAFT_METRICS_LOG_INTERVAL_MS: '0',
    UPDRAFT_LOG_LEVEL: 'warn',
    UPDRAFT_POOLS: JSON.stringify(pools),
    // The flood is cut short at the end: its running tries are handed back rather than awaited.
    UPDRAFT_SHUTDOWN_GRACE_SECONDS: '0',
  });
  const standalone = await startStandalone(settings, {
    log: createLogger({ level: 'warn' }),
    inMemoryStore: !onDisk,
    triggerer: false,
  });
  const api = apiOf(standalone);
  try {
    const floodTasks = FLOOD_RUNS * FLOOD_TASKS_PER_RUN;
    const settledBefore = WARM_LANE ? await warmLane(api, settings.callbackSlots) : 0;
    log(`bench: callbacks, flood of ${FLOOD_RUNS} runs × ${FLOOD_TASKS_PER_RUN} tasks…`);
    const scheduledBefore = (await api.metrics()).counters['ti.scheduled'] ?? 0;
    const floodStartMs = Date.now();
    await Promise.all(
      Array.from({ length: FLOOD_RUNS }, (_, index) => api.trigger('bench_flood', floodRunId(index))),
    );
    const backlog = await waitForMetrics(
      api,
      ({ counters }) => (counters['ti.scheduled'] ?? 0) - scheduledBefore >= floodTasks,
      BACKLOG_WAIT_MS,
    );
    const queuedByScheduler = (backlog.counters['ti.scheduled'] ?? 0) - scheduledBefore;

    log(`bench: callbacks, ${PROBES} failing probes ${PROBE_SPACING_MS} ms apart under the flood…`);
    const windowStartMs = Date.now();
    const samples = await triggerProbes(api);
    await waitForMetrics(
      api,
      ({ counters }) =>
        (counters['callbacks.succeeded'] ?? 0) + (counters['callbacks.failed'] ?? 0) >=
        settledBefore + PROBES,
      CALLBACK_WAIT_MS,
    );
    const windowEndMs = Date.now();
    log('bench: callbacks, the flood alone again for as long…');
    await sleep(windowEndMs - windowStartMs);
    const afterEndMs = Date.now();
    const probes = await Promise.all(samples.map((sample) => readProbe(api, sample)));
    const ends = await floodEnds(standalone);
    const windowMs = windowEndMs - windowStartMs;
    const during = throughputOf(ends, windowStartMs, windowEndMs);
    const before = throughputOf(ends, Math.max(floodStartMs, windowStartMs - windowMs), windowStartMs);
    const after = throughputOf(ends, windowEndMs, afterEndMs);
    const flowingRatio =
      Math.round((during.tasks_per_second / ((before.tasks_per_second + after.tasks_per_second) / 2)) * 100) /
      100;

    const startLatencies = probes.map((probe) => probe.callback_start_ms);
    const queued = probes.map((probe) => probe.queued_tasks).sort((a, b) => a - b);
    const sleeps = Array.from({ length: FLOOD_TASKS_PER_RUN }, (_, index) => floodSleepMs(index));
    const meanSleepMs = sleeps.reduce((total, ms) => total + ms, 0) / sleeps.length;
    const callbackStart = { ...figuresOf(startLatencies), first: startLatencies[0] ?? Number.NaN };
    return {
      machine: {
        cpus: cpus().length,
        store: onDisk ? 'dynalite on disk' : 'dynalite in memory',
        load_average_1m: { before: loadBefore, after: round1(loadavg()[0] ?? 0) },
      },
      settings: { worker_slots: settings.workerSlots, callback_slots: settings.callbackSlots, pools },
      targets: CALLBACK_TARGETS,
      flood: {
        runs: FLOOD_RUNS,
        tasks_per_run: FLOOD_TASKS_PER_RUN,
        task_workloads: floodTasks,
        task_sleep_ms: { min: Math.min(...sleeps), max: Math.max(...sleeps), mean: round1(meanSleepMs) },
        slot_bound_tasks_per_second: round1(settings.workerSlots / (meanSleepMs / 1000)),
        queued_by_scheduler_before_probes: queuedByScheduler,
        backlog_wait_s: round1((windowStartMs - floodStartMs) / 1000),
      },
      probes: {
        count: PROBES,
        spacing_ms: PROBE_SPACING_MS,
        callbacks_succeeded: probes.filter((probe) => probe.callback_state === 'success').length,
        lane_warmed_before: WARM_LANE,
        callback_start_ms: callbackStart,
        ti_end_to_owed_ms: figuresOf(probes.map((probe) => probe.ti_end_to_owed_ms)),
        owed_to_queued_ms: figuresOf(probes.map((probe) => probe.owed_to_queued_ms)),
        queued_to_start_ms: figuresOf(probes.map((probe) => probe.queued_to_start_ms)),
        callback_run_ms: figuresOf(probes.flatMap((probe) => probe.callback_run_ms ?? [])),
        queued_tasks: {
          min: queued[0] ?? Number.NaN,
          median: percentile(queued, 50),
          max: queued.at(-1) ?? Number.NaN,
        },
        open_task_slots_max: Math.max(...probes.map((probe) => probe.open_task_slots)),
        per_probe: probes,
      },
      throughput: {
        before_probes: before,
        during_probes: during,
        after_probes: after,
        flowing_ratio: flowingRatio,
      },
      met_target:
        callbackStart.p95 <= CALLBACK_TARGETS.callback_start_p95_ms &&
        flowingRatio >= CALLBACK_TARGETS.flowing_ratio_min,
      wall_s: round1((Date.now() - began) / 1000),
    };
  } finally {
    await standalone.stop();
    await rm(home, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const callbacks = await runCallbacksBench();
  process.stdout.write(`${JSON.stringify({ callbacks }, null, 2)}\n`);
  process.stderr.write(renderCallbacksTable(callbacks));
}
