import type { LatencyFigures } from './triggers-measure.ts';
import type { FailoverResult, LoadResult } from './triggers-scenarios.ts';

export const TRIGGER_TARGETS = {
  resumed: 'all',
  p99_ms: 2_000,
  peak_rss_mb: 300,
  failover_ms: 15_000,
} as const;

export interface TriggersBenchResult {
  /** Other work on the machine skews every figure here: the load average says how much there was. */
  machine: { cpus: number; load_average_1m: { before: number; after: number } };
  targets: typeof TRIGGER_TARGETS;
  load: LoadResult;
  largest: {
    max: number;
    max_attempted: boolean;
    /** What part 1's rates predict for `max` (seconds; claims and setup as lower bounds). */
    prediction: {
      setup_s: number;
      claim_s: number;
      idle_claims_per_second: number;
      events_per_second_needed: number;
      events_per_second_seen: number;
      run_s: number;
    };
    attempts: {
      triggers: number;
      window_ms: number;
      resumed: number;
      p99_ms: number;
      peak_rss_mb: number | undefined;
      max_running: number;
      load_calls_over_10s: number;
      met_targets: boolean;
    }[];
    /** The largest count that met part 1's targets (part 1's own count included); undefined: none. */
    largest_that_worked: number | undefined;
    max_run?: LoadResult;
    largest_run?: LoadResult;
  };
  failover: FailoverResult;
}

const fmt = (value: number | undefined) =>
  value === undefined || Number.isNaN(value) ? '-' : String(Math.round(value));
const seconds = (ms: number | undefined) =>
  ms === undefined || Number.isNaN(ms) ? '-' : String(Math.round(ms / 100) / 10);
const latency = (figures: LatencyFigures) =>
  `${fmt(figures.p50)} / ${fmt(figures.p99)} / ${fmt(figures.max)}`;

function loadRows(run: LoadResult): [string, string, string][] {
  const { claim, triggerer } = run;
  return [
    [
      'setup (TIs + triggers written)',
      `${seconds(run.setup.ms)} s (${fmt(run.setup.triggers_per_second)}/s)`,
      'measured apart',
    ],
    ['TIs resumed', `${run.resumed} of ${run.triggers}`, TRIGGER_TARGETS.resumed],
    ...(run.completed === undefined
      ? []
      : [
          [
            'TIs completed (resumed on a worker, success)',
            run.completion_timed_out
              ? `${run.completed} of ${run.triggers}: the wait timed out ${seconds(run.completed_after_window_ms ?? 0)} s after the window`
              : `${run.completed} of ${run.triggers}, the last ${seconds(run.completed_after_window_ms ?? 0)} s after the window`,
            TRIGGER_TARGETS.resumed,
          ] as [string, string, string],
        ]),
    [
      'event → resume p50 / p99 / max (ms)',
      latency(run.event_to_resume_ms),
      `p99 < ${TRIGGER_TARGETS.p99_ms}`,
    ],
    ['  moment → call at the API (ms)', latency(run.moment_to_api_ms), ''],
    ['  call at the API → applied (ms)', latency(run.api_to_applied_ms), ''],
    ['events applied / s (first to last)', fmt(run.applied_per_second), ''],
    [
      'claimed / fetched by the triggerer',
      `${claim.claimed} / ${claim.fetched} (${claim.claimed_after_moment} after their moment)`,
      '',
    ],
    ['claims refused (overlapping loads)', fmt(claim.refused), ''],
    ['claim time, first load → all (s)', seconds(claim.all_claimed_ms), ''],
    [
      'first load call: claims in (s)',
      claim.first_load ? `${claim.first_load.claims} in ${seconds(claim.first_load.ms)}` : '-',
      '',
    ],
    [
      'load calls / over 10 s / slowest (s)',
      `${claim.load_calls} / ${claim.load_calls_over_10s} / ${seconds(claim.slowest_load_call_ms)}`,
      '',
    ],
    ['triggers running at once (max)', fmt(triggerer.max_running), ''],
    ['triggerer peak RSS (MB)', fmt(triggerer.peak_rss_mb), `< ${TRIGGER_TARGETS.peak_rss_mb}`],
    [
      'triggerer RSS at first load / all claimed (MB)',
      `${fmt(triggerer.rss_at_first_load_mb)} / ${fmt(triggerer.rss_after_load_mb)}`,
      '',
    ],
    [
      'CPU s: triggerer / API / store',
      `${triggerer.cpu_s ?? '-'} / ${run.api_process_cpu_s} / ${run.store_process_cpu_s ?? '-'}`,
      '',
    ],
    ['outcome', run.outcome, ''],
  ];
}

function render(rows: [string, string, string][]): string[] {
  return rows.map(([name, value, target]) =>
    `    ${name.padEnd(46)} ${value.padStart(30)}   ${target}`.trimEnd(),
  );
}

function warningLines(who: string, warnings: Record<string, number>): string[] {
  const entries = Object.entries(warnings);
  if (entries.length === 0) return [];
  return [`    ${who} warnings:`, ...entries.map(([message, count]) => `      ${count} × ${message}`)];
}

/** The triggerer part's table on stderr. */
export function renderTriggersTable(result: TriggersBenchResult): string {
  const { load, largest, failover } = result;
  const lines: string[] = [
    '',
    'Triggerer (bench/triggers.ts): the API, the embedded store and the triggerer each in its own process',
    `  ${result.machine.cpus} CPUs, 1-minute load average ${result.machine.load_average_1m.before} before, ${result.machine.load_average_1m.after} after`,
    `  ${load.triggers} triggers over ${load.window_ms / 1000} s, one triggerer (latency ends when the event is applied: the TI is scheduled to resume)`,
    ...render(loadRows(load)),
  ];
  lines.push(
    ...warningLines('triggerer', load.triggerer.warnings),
    ...warningLines('API', load.api_warnings),
  );
  const { prediction } = largest;
  lines.push(
    `  largest count: ${largest.max} ${largest.max_attempted ? 'attempted' : 'not attempted'} (predicted: setup ${prediction.setup_s} s, claims ${prediction.claim_s} s at ${prediction.idle_claims_per_second}/s, ${prediction.events_per_second_needed} events/s needed vs ${prediction.events_per_second_seen}/s applied in part 1)`,
  );
  for (const attempt of largest.attempts) {
    lines.push(
      `    ${String(attempt.triggers).padStart(6)} over ${attempt.window_ms / 1000} s: ${attempt.resumed} resumed, p99 ${fmt(attempt.p99_ms)} ms, ${attempt.max_running} running at most, peak RSS ${fmt(attempt.peak_rss_mb)} MB, ${attempt.load_calls_over_10s} load calls over 10 s: ${attempt.met_targets ? 'met the targets' : 'missed the targets'}`,
    );
  }
  lines.push(`    largest that met the targets: ${largest.largest_that_worked ?? 'none'}`);
  if (largest.max_run) lines.push(...render(loadRows(largest.max_run)));
  const settings = failover.settings;
  lines.push(
    `  failover: ${failover.triggers} triggers, two triggerers, defaults (heartbeat ${settings.heartbeat_interval_ms} ms, timeout ${settings.heartbeat_timeout_ms} ms, load ${settings.load_interval_ms} ms)`,
    ...render([
      [
        'held when one was killed (killed / survivor)',
        `${failover.held.killed} / ${failover.held.survivor}`,
        '',
      ],
      [
        'kill -9 → all its triggers claimed (s)',
        seconds(failover.failover_ms),
        `< ${TRIGGER_TARGETS.failover_ms / 1000}`,
      ],
      ["its triggers' lateness p50 / p99 / max (ms)", latency(failover.killed_triggers_lateness_ms), ''],
      ["the survivor's own, p50 / p99 / max (ms)", latency(failover.survivor_triggers_lateness_ms), ''],
      ['TIs resumed', `${failover.resumed} of ${failover.triggers}`, ''],
      ['outcome', failover.outcome, ''],
    ]),
    ...warningLines('API', failover.api_warnings),
  );
  return `${lines.join('\n')}\n`;
}
