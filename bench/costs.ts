import { readdirSync, readFileSync } from 'node:fs';
import { countQueueOperations } from '#queue/memory.ts';
import type { Standalone } from '#standalone/services.ts';
import {
  type CallerCounter,
  type CountsByCaller,
  READ_OPERATIONS,
  SNAPSHOT_ITEMS,
  WRITE_OPERATIONS,
} from './counter.ts';

/** Everything counted so far by one standalone instance: taken before and after a phase. */
export interface CostSnapshot {
  byOperation: Record<string, number>;
  byCaller: CountsByCaller;
  byItem: CountsByCaller;
  queues: Record<string, number>;
  passes: number;
  cpu: { main: NodeJS.CpuUsage; children: Record<string, number> };
}

export async function takeSnapshot(standalone: Standalone, counter: CallerCounter): Promise<CostSnapshot> {
  const { counters } = await standalone.metrics.snapshot();
  return {
    byOperation: counter.snapshot().byOperation,
    byCaller: counter.byCaller(),
    byItem: counter.byItem(),
    queues: countQueueOperations(standalone.queues),
    passes: counters['scheduler.passes'] ?? 0,
    cpu: { main: process.cpuUsage(), children: childrenCpuMs() },
  };
}

/** What a phase cost: the difference of two snapshots. */
export interface CostDelta {
  byOperation: Record<string, number>;
  byCaller: CountsByCaller;
  byItem: CountsByCaller;
  /** Queue operations by kind, `stats` excluded (the benchmark's own polling of the metrics). */
  queues: Record<string, number>;
  passes: number;
  cpuMs: Record<string, number>;
}

export function diff(before: CostSnapshot, after: CostSnapshot): CostDelta {
  const byCallerDelta = (pick: (snapshot: CostSnapshot) => CountsByCaller) => {
    const result: CountsByCaller = {};
    for (const [caller, counts] of Object.entries(pick(after))) {
      const delta = subtract(pick(before)[caller] ?? {}, counts);
      if (Object.keys(delta).length > 0) result[caller] = delta;
    }
    return result;
  };
  const queues = subtract(before.queues, after.queues);
  delete queues.stats;
  delete queues.total;
  const cpuMs: Record<string, number> = {
    main:
      (after.cpu.main.user + after.cpu.main.system - before.cpu.main.user - before.cpu.main.system) / 1000,
  };
  for (const [kind, ms] of Object.entries(after.cpu.children))
    cpuMs[kind] = ms - (before.cpu.children[kind] ?? 0);
  return {
    byOperation: subtract(before.byOperation, after.byOperation),
    byCaller: byCallerDelta((snapshot) => snapshot.byCaller),
    byItem: byCallerDelta((snapshot) => snapshot.byItem),
    queues,
    passes: after.passes - before.passes,
    cpuMs,
  };
}

function subtract(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const result: Record<string, number> = {};
  for (const [key, count] of Object.entries(after)) {
    const delta = count - (before[key] ?? 0);
    if (delta > 0) result[key] = delta;
  }
  return result;
}

const sumOf = (counts: Record<string, number>, operations: ReadonlySet<string>) =>
  Object.entries(counts).reduce(
    (total, [operation, count]) => total + (operations.has(operation) ? count : 0),
    0,
  );
const only = (counts: Record<string, number>, operations: ReadonlySet<string>) =>
  Object.fromEntries(Object.entries(counts).filter(([operation]) => operations.has(operation)));
const scale = (counts: Record<string, number>, by: number) =>
  Object.fromEntries(Object.entries(counts).map(([key, count]) => [key, round(count / by)]));

/** Costs divided by the number of task instances the phase ran. */
export function perTi(delta: CostDelta, tis: number) {
  const queueOperations = Object.values(delta.queues).reduce((total, count) => total + count, 0);
  return {
    store_reads_per_ti: round(sumOf(delta.byOperation, READ_OPERATIONS) / tis),
    store_writes_per_ti: round(sumOf(delta.byOperation, WRITE_OPERATIONS) / tis),
    store_requests_by_operation_per_ti: scale(delta.byOperation, tis),
    store_requests_by_caller_per_ti: Object.fromEntries(
      Object.entries(delta.byCaller).map(([caller, counts]) => [caller, scale(counts, tis)]),
    ),
    queue_operations_per_ti: round(queueOperations / tis),
    queue_operations_by_kind_per_ti: scale(delta.queues, tis),
    cpu_ms_per_ti: scale(delta.cpuMs, tis),
  };
}

/**
 * Costs divided by the scheduling passes of the phase (`scheduler.passes`, one per run per
 * scheduling batch or tick). `all` counts every store request of the phase, the API's included;
 * `scheduler` only those sent from the scheduler entry points, which is what a pass costs.
 */
export function perPass(delta: CostDelta) {
  const passes = Math.max(1, delta.passes);
  const scheduler = delta.byCaller.scheduler ?? {};
  return {
    passes: delta.passes,
    store_reads_per_pass: round(sumOf(delta.byOperation, READ_OPERATIONS) / passes),
    store_writes_per_pass: round(sumOf(delta.byOperation, WRITE_OPERATIONS) / passes),
    scheduler_store_reads_per_pass: round(sumOf(scheduler, READ_OPERATIONS) / passes),
    scheduler_store_writes_per_pass: round(sumOf(scheduler, WRITE_OPERATIONS) / passes),
    /** Items the pass's run reads returned (run, slot item, summary, the TIs it read). */
    scheduler_snapshot_items_per_pass: round((delta.byItem.scheduler?.[SNAPSHOT_ITEMS] ?? 0) / passes),
    read_requests_by_operation: only(delta.byOperation, READ_OPERATIONS),
    read_requests_by_caller: Object.fromEntries(
      Object.entries(delta.byCaller)
        .map(([caller, counts]) => [caller, only(counts, READ_OPERATIONS)] as const)
        .filter(([, counts]) => Object.keys(counts).length > 0),
    ),
    /** By caller, then by operation and item kind (reads and writes): where the requests go. */
    requests_by_caller_and_item: delta.byItem,
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
      const { ppid, cpuMs } = parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      if (ppid !== process.pid) continue;
      const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const kind = command.includes('embedded-server')
        ? 'store_server'
        : command.includes('task-runner')
          ? 'task_runners'
          : 'other';
      result[kind] = (result[kind] ?? 0) + cpuMs;
    } catch {
      // The process ended while we read it.
    }
  }
  return result;
}

/** The parent and the CPU milliseconds used so far (user and system) of a `/proc/<pid>/stat` line. */
export function parseProcStat(stat: string): { ppid: number; cpuMs: number } {
  // Fields after the command name (which may hold spaces): ppid is the 2nd, utime and stime the 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // In USER_HZ, 100 a second on Linux.
  return { ppid: Number(fields[1]), cpuMs: ((Number(fields[11]) + Number(fields[12])) * 1000) / 100 };
}

export function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

export function percentile(sorted: readonly number[], p: number): number {
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] ?? Number.NaN;
}
