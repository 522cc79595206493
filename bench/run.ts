/**
 * `npm run bench`: standalone with the embedded store on this machine.
 * (a) throughput: 20 runs of a 100-task fan-out (2,000 no-op task instances);
 * (b) latency: a 100-task chain, "upstream finished → downstream started" p50/p95;
 * (c) cost: store requests and queue operations per task instance, counted by instrumenting
 *     the DynamoDB client and the queue port.
 * JSON on stdout, a readable table on stderr.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadSettings } from '#config/settings.ts';
import type { DagRunKey, TaskInstance } from '#core/models.ts';
import { createLogger } from '#engine/logger.ts';
import { countQueueOperations } from '#queue/memory.ts';
import { startStandalone } from '#standalone/services.ts';
import { RequestCounter } from '#store/instrument.ts';

const FANOUT_RUNS = Number(process.env.BENCH_FANOUT_RUNS ?? 20);
const onDisk = process.env.BENCH_STORE !== 'memory';

const home = await mkdtemp(join(tmpdir(), 'updraft-bench-'));
const settings = loadSettings({
  ...process.env,
  UPDRAFT_HOME: home,
  PORT: '0',
  UPDRAFT_DAGS_FOLDER: resolve('bench/dags'),
  UPDRAFT_DAG_REFRESH_INTERVAL_MS: '0',
  UPDRAFT_METRICS_LOG_INTERVAL_MS: '0',
  UPDRAFT_LOG_LEVEL: 'warn',
});
const counter = new RequestCounter();
const standalone = await startStandalone(settings, {
  log: createLogger({ level: 'warn' }),
  inMemoryStore: !onDisk,
  requestCounter: counter,
});
const headers = { authorization: `Bearer ${standalone.apiToken}`, 'content-type': 'application/json' };

async function trigger(dagId: string, runId: string): Promise<DagRunKey> {
  const response = await fetch(`${standalone.apiUrl}/api/v2/dags/${dagId}/dagRuns`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ dag_run_id: runId }),
  });
  if (response.status !== 201)
    throw new Error(`trigger ${dagId}: ${response.status} ${await response.text()}`);
  return { dagId, runId };
}

/**
 * Waits on the scheduler's run counters rather than polling the store, so the benchmark's own
 * reads neither load the store nor show up in the cost per task instance.
 */
async function waitForRuns(runs: DagRunKey[], timeoutMs: number): Promise<void> {
  const counters = async () => (await standalone.metrics.snapshot()).counters;
  const before = await counters();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const now = await counters();
    if ((now['dag_runs.failed'] ?? 0) > (before['dag_runs.failed'] ?? 0))
      throw new Error('a benchmark run failed');
    const finished = (now['dag_runs.success'] ?? 0) - (before['dag_runs.success'] ?? 0);
    if (finished >= runs.length) break;
    if (Date.now() > deadline)
      throw new Error(`${runs.length - finished} runs still not finished after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  for (const run of runs) {
    if ((await standalone.store.getDagRun(run))?.state !== 'success')
      throw new Error(`run ${run.runId} did not succeed`);
  }
}

function snapshotCosts() {
  return {
    store: counter.snapshot(),
    queues: countQueueOperations(standalone.queues),
    cpu: { main: process.cpuUsage(), children: childrenCpuMs() },
  };
}

/** CPU milliseconds used so far by this process's children (store server, task runners), from /proc. */
function childrenCpuMs(): Record<string, number> {
  const result: Record<string, number> = {};
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return result;
  }
  for (const pid of entries) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) !== process.pid) continue;
      const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const kind = command.includes('embedded-server')
        ? 'store_server'
        : command.includes('task-runner')
          ? 'task_runners'
          : 'other';
      result[kind] = (result[kind] ?? 0) + ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
    } catch {
      // The process ended while we read it.
    }
  }
  return result;
}

function perTi(
  before: ReturnType<typeof snapshotCosts>,
  after: ReturnType<typeof snapshotCosts>,
  tis: number,
) {
  const byOperation: Record<string, number> = {};
  for (const [operation, count] of Object.entries(after.store.byOperation)) {
    const delta = count - (before.store.byOperation[operation] ?? 0);
    if (delta > 0) byOperation[operation] = round(delta / tis);
  }
  const queueByKind: Record<string, number> = {};
  for (const [kind, count] of Object.entries(after.queues)) {
    const delta = count - ((before.queues as Record<string, number>)[kind] ?? 0);
    if (delta > 0 && kind !== 'total') queueByKind[kind] = round(delta / tis);
  }
  const queueTotal = Object.entries(queueByKind)
    .filter(([kind]) => kind !== 'stats')
    .reduce((sum, [, value]) => sum + value, 0);
  const cpuMsPerTi: Record<string, number> = {
    main: round(
      (after.cpu.main.user + after.cpu.main.system - before.cpu.main.user - before.cpu.main.system) /
        1000 /
        tis,
    ),
  };
  for (const [kind, ms] of Object.entries(after.cpu.children)) {
    cpuMsPerTi[kind] = round((ms - (before.cpu.children[kind] ?? 0)) / tis);
  }
  return {
    cpu_ms_per_ti: cpuMsPerTi,
    store_reads_per_ti: round((after.store.reads - before.store.reads) / tis),
    store_writes_per_ti: round((after.store.writes - before.store.writes) / tis),
    store_requests_by_operation_per_ti: byOperation,
    queue_operations_per_ti: round(queueTotal),
    queue_operations_by_kind_per_ti: queueByKind,
  };
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

function percentile(sorted: number[], p: number): number {
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] ?? Number.NaN;
}

// Warm up: one small run so task runner processes and caches exist before measuring.
const warmup = waitForRuns([{ dagId: 'bench_chain', runId: 'warmup' }], 120_000);
await trigger('bench_chain', 'warmup');
await warmup;

// (a) throughput and (c) cost on the fan-out
const fanoutBefore = snapshotCosts();
const fanoutStart = performance.now();
const fanoutRunKeys = Array.from({ length: FANOUT_RUNS }, (_, index) => ({
  dagId: 'bench_fanout',
  runId: `fanout_${index}`,
}));
const fanoutDone = waitForRuns(fanoutRunKeys, 600_000);
await Promise.all(fanoutRunKeys.map((run) => trigger(run.dagId, run.runId)));
await fanoutDone;
const fanoutSeconds = (performance.now() - fanoutStart) / 1000;
const fanoutTis = FANOUT_RUNS * 100;
const fanoutCosts = perTi(fanoutBefore, snapshotCosts(), fanoutTis);

// (b) latency on the chain
const chainBefore = snapshotCosts();
const chainStart = performance.now();
const chainRun = { dagId: 'bench_chain', runId: 'chain_0' };
const chainDone = waitForRuns([chainRun], 600_000);
await trigger(chainRun.dagId, chainRun.runId);
await chainDone;
const chainSeconds = (performance.now() - chainStart) / 1000;
const chainCosts = perTi(chainBefore, snapshotCosts(), 100);
const snapshot = await standalone.store.getRunSnapshot(chainRun);
const steps = (snapshot?.taskInstances ?? []).slice().sort((a, b) => a.taskId.localeCompare(b.taskId));
const gaps: number[] = [];
for (let index = 1; index < steps.length; index += 1) {
  const upstream = steps[index - 1] as TaskInstance;
  const downstream = steps[index] as TaskInstance;
  if (upstream.endDate && downstream.startDate)
    gaps.push(Date.parse(downstream.startDate) - Date.parse(upstream.endDate));
}
gaps.sort((a, b) => a - b);

await standalone.stop();
await rm(home, { recursive: true, force: true });

const result = {
  machine: {
    cpus: (await import('node:os')).cpus().length,
    node: process.version,
    store: onDisk ? 'dynalite on disk' : 'dynalite in memory',
  },
  settings: { worker_slots: settings.workerSlots },
  throughput: {
    task_instances: fanoutTis,
    runs: FANOUT_RUNS,
    seconds: round(fanoutSeconds),
    tasks_per_second: round(fanoutTis / fanoutSeconds),
    target_tasks_per_second: 150,
  },
  latency: {
    chain_length: steps.length,
    seconds: round(chainSeconds),
    upstream_finished_to_downstream_started_ms: {
      p50: percentile(gaps, 50),
      p95: percentile(gaps, 95),
      max: gaps.at(-1) ?? null,
    },
    target_p50_ms: 50,
  },
  cost: {
    fanout: fanoutCosts,
    chain: chainCosts,
    target: { store_writes_per_ti: 6, queue_operations_per_ti: 3 },
  },
};
process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
const rows: [string, string, string][] = [
  ['throughput (tasks/s)', String(result.throughput.tasks_per_second), '>= 150'],
  ['chain latency p50 (ms)', String(result.latency.upstream_finished_to_downstream_started_ms.p50), '<= 50'],
  ['chain latency p95 (ms)', String(result.latency.upstream_finished_to_downstream_started_ms.p95), ''],
  ['store writes / TI (fan-out)', String(fanoutCosts.store_writes_per_ti), '<= 6'],
  ['store reads / TI (fan-out)', String(fanoutCosts.store_reads_per_ti), ''],
  ['queue ops / TI (fan-out)', String(fanoutCosts.queue_operations_per_ti), '<= 3'],
  ['store writes / TI (chain)', String(chainCosts.store_writes_per_ti), '<= 6'],
  ['queue ops / TI (chain)', String(chainCosts.queue_operations_per_ti), '<= 3'],
];
process.stderr.write(
  `\nUpdraft benchmark (${result.machine.store}, ${result.machine.cpus} CPUs, ${settings.workerSlots} worker slots)\n`,
);
for (const [name, value, target] of rows)
  process.stderr.write(`  ${name.padEnd(30)} ${value.padStart(10)}   ${target}\n`);
