export const CALLBACK_TARGETS = {
  /** A failed TI's end → its failure callback's start, p95 over the probes. */
  callback_start_p95_ms: 1_000,
  /**
   * Flood tasks/s during the probes over the mean of the same-length windows just before and just
   * after them (the before window still has the scheduler queuing the flood; the after one does not).
   */
  flowing_ratio_min: 0.8,
} as const;

export interface Figures {
  p50: number;
  p95: number;
  max: number;
}

export interface ProbeResult {
  run_id: string;
  ti_end_date: string | null;
  callback_queued_at: string | null;
  callback_start_date: string | null;
  callback_end_date: string | null;
  /** Failed TI's end_date → callback's start_date (the callback's attempt began on a worker). */
  callback_start_ms: number;
  ti_end_to_owed_ms: number;
  owed_to_queued_ms: number;
  queued_to_start_ms: number;
  /** start_date → end_date of the callback (its runner's work and the report). */
  callback_run_ms: number | null;
  callback_state: string;
  /** `executor.queued_tasks` (workloads waiting in the task queues) when the probe was triggered. */
  queued_tasks: number;
  /** `executor.open_slots` (free task slots) when the probe was triggered. */
  open_task_slots: number;
}

export interface Throughput {
  window_s: number;
  tasks_finished: number;
  tasks_per_second: number;
}

export interface CallbacksBenchResult {
  /** Other work on the machine skews every figure here: the load average says how much there was. */
  machine: { cpus: number; store: string; load_average_1m: { before: number; after: number } };
  settings: { worker_slots: number; callback_slots: number; pools: Record<string, number> };
  targets: typeof CALLBACK_TARGETS;
  flood: {
    runs: number;
    tasks_per_run: number;
    task_workloads: number;
    task_sleep_ms: { min: number; max: number; mean: number };
    /** What the task slots could finish at most: slots / mean sleep (no overhead). */
    slot_bound_tasks_per_second: number;
    /** TIs the scheduler had queued (`ti.scheduled`) when the first probe was triggered. */
    queued_by_scheduler_before_probes: number;
    /** From the flood's trigger to the first probe (waiting for the scheduler to queue it all). */
    backlog_wait_s: number;
  };
  probes: {
    count: number;
    spacing_ms: number;
    callbacks_succeeded: number;
    /** BENCH_CALLBACKS_WARM_LANE=1: one callback per slot ran before the flood (the DAG's code imported). */
    lane_warmed_before: boolean;
    callback_start_ms: Figures & { first: number };
    ti_end_to_owed_ms: Figures;
    owed_to_queued_ms: Figures;
    queued_to_start_ms: Figures;
    callback_run_ms: Figures;
    /** Task queue backlog and free task slots when the probes were triggered. */
    queued_tasks: { min: number; median: number; max: number };
    open_task_slots_max: number;
    per_probe: ProbeResult[];
  };
  /** Flood TIs that ended within each window (read from their end_date afterwards). */
  throughput: {
    before_probes: Throughput;
    during_probes: Throughput;
    after_probes: Throughput;
    /** during ÷ mean(before, after). */
    flowing_ratio: number;
  };
  /** Both targets: callback start p95 and the flowing ratio. */
  met_target: boolean;
  wall_s: number;
}

const fmt = (value: number | undefined | null) =>
  value === undefined || value === null || Number.isNaN(value) ? '-' : String(Math.round(value));
const figures = (f: Figures) => `${fmt(f.p50)} / ${fmt(f.p95)} / ${fmt(f.max)}`;
const rate = (t: Throughput) =>
  `${t.tasks_per_second} (${t.tasks_finished} in ${Math.round(t.window_s * 10) / 10} s)`;

/** The callbacks part's table on stderr. */
export function renderCallbacksTable(result: CallbacksBenchResult): string {
  const { flood, probes, throughput, settings } = result;
  const rows: [string, string, string][] = [
    [
      'callback start p50 / p95 / max (ms)',
      figures(probes.callback_start_ms),
      `p95 <= ${CALLBACK_TARGETS.callback_start_p95_ms}`,
    ],
    [
      `  first probe (${probes.lane_warmed_before ? 'warmed' : 'first use of the'} callback lane) (ms)`,
      fmt(probes.callback_start_ms.first),
      '',
    ],
    ['  TI end → owed (ms)', figures(probes.ti_end_to_owed_ms), ''],
    ['  owed → queued (ms)', figures(probes.owed_to_queued_ms), ''],
    ['  queued → started on a worker (ms)', figures(probes.queued_to_start_ms), ''],
    ['callback start → end (ms)', figures(probes.callback_run_ms), ''],
    ['callbacks succeeded', `${probes.callbacks_succeeded} of ${probes.count}`, 'all'],
    [
      'queued task workloads at probes (min / median / max)',
      `${probes.queued_tasks.min} / ${probes.queued_tasks.median} / ${probes.queued_tasks.max}`,
      '',
    ],
    ['free task slots at probes (max)', fmt(probes.open_task_slots_max), ''],
    ['flood tasks/s before the probes', rate(throughput.before_probes), ''],
    ['flood tasks/s during the probes', rate(throughput.during_probes), ''],
    ['flood tasks/s after the probes', rate(throughput.after_probes), ''],
    [
      '  during ÷ mean(before, after)',
      String(throughput.flowing_ratio),
      `>= ${CALLBACK_TARGETS.flowing_ratio_min}`,
    ],
    ['flood tasks/s bound by the slots (no overhead)', fmt(flood.slot_bound_tasks_per_second), ''],
  ];
  const lines = [
    '',
    `Callbacks (bench/callbacks.ts): standalone, ${result.machine.store}, ${settings.worker_slots} task slots, ${settings.callback_slots} callback slots`,
    `  ${result.machine.cpus} CPUs, 1-minute load average ${result.machine.load_average_1m.before} before, ${result.machine.load_average_1m.after} after; ${Math.round(result.wall_s)} s in all`,
    `  flood: ${flood.runs} runs × ${flood.tasks_per_run} tasks (${flood.task_sleep_ms.min}–${flood.task_sleep_ms.max} ms sleeps), ${flood.queued_by_scheduler_before_probes} queued by the scheduler ${Math.round(flood.backlog_wait_s)} s after the trigger`,
    `  probes: ${probes.count} runs of bench_alert ${probes.spacing_ms} ms apart, a TI failing at once with an onFailure callback${probes.lane_warmed_before ? ' (callback lane warmed first)' : ''}`,
    ...rows.map(([name, value, target]) =>
      `    ${name.padEnd(52)} ${value.padStart(24)}   ${target}`.trimEnd(),
    ),
    `  targets ${result.met_target ? 'met' : 'missed'}: callback start p95 ${fmt(probes.callback_start_ms.p95)} ms (target ${CALLBACK_TARGETS.callback_start_p95_ms} ms), tasks/s during ÷ around ${throughput.flowing_ratio} (target ${CALLBACK_TARGETS.flowing_ratio_min})`,
  ];
  return `${lines.join('\n')}\n`;
}
