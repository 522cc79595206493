import { CALLBACK_TARGETS } from './callbacks-report.ts';
import { READ_OPERATIONS } from './counter.ts';
import type { Mode } from './harness.ts';
import {
  type chainLatency,
  FANOUT_TASKS,
  type readsPerPass,
  type throughput,
  WIDE_TASKS,
} from './scenarios.ts';

// --- AWS deployment part: its table section is rendered by bench/aws-report.ts ---
export { renderAwsTable } from './aws-report.ts';
// --- end of the AWS deployment part ---

// --- triggerer part: its table section is rendered by bench/triggers-report.ts ---
export { renderTriggersTable } from './triggers-report.ts';
// --- end of the triggerer part ---

// --- callbacks part: its table section is rendered by bench/callbacks-report.ts ---
export { renderCallbacksTable } from './callbacks-report.ts';
// --- end of the callbacks part ---

export interface ModeResult {
  throughput: Awaited<ReturnType<typeof throughput>>;
  latency: Awaited<ReturnType<typeof chainLatency>>;
  reads_per_pass: {
    fanout_100: Awaited<ReturnType<typeof readsPerPass>>;
    wide?: Awaited<ReturnType<typeof readsPerPass>>;
  };
}

export const TARGETS = {
  tasks_per_second: 150,
  chain_p50_ms: 50,
  store_writes_per_ti: 6,
  queue_operations_per_ti: 3,
  reads_per_pass: 'the same for a 100-task run and a 2,000-task run',
  /** The callbacks part: a failed TI's end → its failure callback's start, under a 5,000-task backlog. */
  callback_start_p95_ms: CALLBACK_TARGETS.callback_start_p95_ms,
} as const;

type Row = [name: string, cells: Partial<Record<Mode, number | string | undefined>>, target: string];

const fmt = (value: number | string | undefined) =>
  value === undefined ? '-' : typeof value === 'number' ? String(Math.round(value * 100) / 100) : value;

/** The table on stderr: one column per mode, the targets on the right. */
export function renderTable(results: Partial<Record<Mode, ModeResult>>, header: string): string {
  const modes = Object.keys(results) as Mode[];
  const cell = (pick: (result: ModeResult) => number | string | undefined) =>
    Object.fromEntries(modes.map((mode) => [mode, pick(results[mode] as ModeResult)]));
  const wideVsNarrow = (pick: (r: NonNullable<ModeResult['reads_per_pass']['wide']>) => number) =>
    cell((r) => {
      const narrow = pick(r.reads_per_pass.fanout_100);
      const wide = r.reads_per_pass.wide;
      return `${fmt(narrow)} / ${wide ? fmt(pick(wide)) : '-'}`;
    });
  const rows: (Row | string)[] = [
    'fan-out (throughput)',
    ['tasks/s', cell((r) => r.throughput.tasks_per_second), `>= ${TARGETS.tasks_per_second}`],
    [
      'store writes / TI',
      cell((r) => r.throughput.cost.store_writes_per_ti),
      `<= ${TARGETS.store_writes_per_ti}`,
    ],
    ['store reads / TI', cell((r) => r.throughput.cost.store_reads_per_ti), ''],
    [
      'queue ops / TI',
      cell((r) => r.throughput.cost.queue_operations_per_ti),
      `<= ${TARGETS.queue_operations_per_ti}`,
    ],
    ['scheduling passes', cell((r) => r.throughput.cost.passes), ''],
    ['store reads / pass (all)', cell((r) => r.throughput.cost.store_reads_per_pass), ''],
    ['store writes / pass (all)', cell((r) => r.throughput.cost.store_writes_per_pass), ''],
    ['store reads / pass (scheduler)', cell((r) => r.throughput.cost.scheduler_store_reads_per_pass), ''],
    ['store writes / pass (scheduler)', cell((r) => r.throughput.cost.scheduler_store_writes_per_pass), ''],
    'chain (latency)',
    [
      'p50 upstream end -> start (ms)',
      cell((r) => r.latency.upstream_finished_to_downstream_started_ms.p50),
      `<= ${TARGETS.chain_p50_ms}`,
    ],
    [
      'p95 upstream end -> start (ms)',
      cell((r) => r.latency.upstream_finished_to_downstream_started_ms.p95),
      '',
    ],
    ['store writes / TI', cell((r) => r.latency.cost.store_writes_per_ti), ''],
    ['store reads / TI', cell((r) => r.latency.cost.store_reads_per_ti), ''],
    ['queue ops / TI', cell((r) => r.latency.cost.queue_operations_per_ti), ''],
    ['store reads / pass (all)', cell((r) => r.latency.cost.store_reads_per_pass), ''],
    ['store writes / pass (all)', cell((r) => r.latency.cost.store_writes_per_pass), ''],
    `one run alone: ${FANOUT_TASKS} tasks / ${WIDE_TASKS} tasks`,
    ['scheduling passes', wideVsNarrow((r) => r.passes), ''],
    ['store reads / pass (all)', wideVsNarrow((r) => r.store_reads_per_pass), ''],
    [
      'store reads / pass (scheduler)',
      wideVsNarrow((r) => r.scheduler_store_reads_per_pass),
      'same for both',
    ],
    ['store writes / pass (scheduler)', wideVsNarrow((r) => r.scheduler_store_writes_per_pass), ''],
    ['run items read / pass (scheduler)', wideVsNarrow((r) => r.scheduler_snapshot_items_per_pass), ''],
    ['tasks/s', wideVsNarrow((r) => r.tasks_per_second), ''],
  ];
  const width = Math.max(13, ...modes.map((mode) => mode.length));
  const lines = [
    header,
    `  ${''.padEnd(34)} ${modes.map((mode) => mode.padStart(width)).join(' ')}   target`,
  ];
  for (const row of rows) {
    if (typeof row === 'string') {
      lines.push(`  ${row}`);
      continue;
    }
    const [name, cells, target] = row;
    const values = modes.map((mode) => fmt(cells[mode]).padStart(width)).join(' ');
    lines.push(`    ${name.padEnd(32)} ${values}   ${target}`);
  }
  // Read requests by operation for the reads-per-pass runs: where a growth would come from.
  for (const mode of modes) {
    const result = results[mode] as ModeResult;
    for (const [label, entry] of [
      [`${FANOUT_TASKS} tasks`, result.reads_per_pass.fanout_100],
      [`${WIDE_TASKS} tasks`, result.reads_per_pass.wide],
    ] as const) {
      if (!entry) continue;
      lines.push(
        `  ${mode}, ${label}: ${entry.passes} passes, read requests ${formatCounts(entry.read_requests_by_operation)}`,
      );
      for (const [caller, counts] of Object.entries(entry.requests_by_caller_and_item)) {
        const reads = Object.fromEntries(
          Object.entries(counts).filter(([name]) => READ_OPERATIONS.has(name.split(' ')[0] ?? '')),
        );
        if (Object.keys(reads).length > 0) lines.push(`      ${caller}: ${formatCounts(reads)}`);
      }
    }
  }
  return `${lines.join('\n')}\n`;
}

function formatCounts(counts: Record<string, number>): string {
  const entries = Object.entries(counts);
  return entries.length === 0
    ? 'none'
    : entries.map(([operation, count]) => `${operation} ${count}`).join(', ');
}
