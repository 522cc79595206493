import type {
  Dag,
  DagDetail,
  DagRun,
  ImportError,
  TaskInstance,
  Trigger,
  Triggerer,
} from '#contracts/public-api.ts';

/** States always shown in a run's progress line, in this order; the others only when some TI is in them. */
const ALWAYS_COUNTED = ['success', 'running', 'queued', 'failed', 'up_for_retry', 'none'] as const;
const SOMETIMES_COUNTED = ['scheduled', 'deferred', 'upstream_failed', 'skipped', 'removed'] as const;

/** Aligned columns separated by two spaces; the last column is not padded. */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((header, column) =>
    Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join('  ')
      .trimEnd();
  return `${[line(headers), ...rows.map(line)].join('\n')}\n`;
}

/** `key: value` lines with the keys aligned. */
export function formatFields(fields: readonly (readonly [string, string])[]): string {
  const width = Math.max(...fields.map(([key]) => key.length));
  return `${fields.map(([key, value]) => `${`${key}:`.padEnd(width + 2)}${value}`).join('\n')}\n`;
}

export function orDash(value: string | number | null | undefined): string {
  return value === null || value === undefined || value === '' ? '-' : String(value);
}

export function formatDuration(seconds: number | null): string {
  if (seconds === null) return '-';
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${String(Math.floor(seconds % 60)).padStart(2, '0')}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}

export function formatDags(dags: readonly Dag[]): string {
  if (dags.length === 0) return 'No DAGs found.\n';
  return formatTable(
    ['DAG_ID', 'PAUSED', 'SCHEDULE', 'NEXT_RUN', 'TAGS', 'DESCRIPTION'],
    dags.map((dag) => [
      dag.dag_id,
      dag.is_paused ? 'yes' : 'no',
      orDash(dag.schedule),
      orDash(dag.next_dagrun_logical_date),
      orDash(dag.tags.join(',')),
      orDash(dag.description),
    ]),
  );
}

export function formatImportErrors(errors: readonly ImportError[]): string {
  if (errors.length === 0) return '';
  const lines = errors.map((error) => `  ${error.filename}: ${error.stack_trace.split('\n')[0] ?? ''}`);
  return `\n${errors.length} DAG file(s) failed to import:\n${lines.join('\n')}\n`;
}

export function formatDagDetail(dag: DagDetail): string {
  const fields = formatFields([
    ['dag_id', dag.dag_id],
    ['description', orDash(dag.description)],
    ['file', dag.fileloc],
    ['paused', dag.is_paused ? 'yes' : 'no'],
    ['active', dag.is_active ? 'yes' : 'no'],
    ['schedule', orDash(dag.schedule)],
    ['next run', orDash(dag.next_dagrun_logical_date)],
    ['start date', orDash(dag.start_date)],
    ['catchup', dag.catchup ? 'yes' : 'no'],
    ['max active runs', String(dag.max_active_runs)],
    ['max active tasks', String(dag.max_active_tasks)],
    ['tags', orDash(dag.tags.join(', '))],
    ['version', dag.dag_version],
    ['last parsed', dag.last_parsed_time],
  ]);
  const tasks = formatTable(
    ['TASK_ID', 'OPERATOR', 'UPSTREAM', 'TRIGGER_RULE', 'RETRIES', 'POOL', 'QUEUE'],
    dag.tasks.map((task) => [
      task.task_id,
      task.operator,
      orDash(task.upstream_task_ids.join(',')),
      task.trigger_rule,
      String(task.retries),
      task.pool,
      task.queue,
    ]),
  );
  return `${fields}\n${tasks}`;
}

export function formatRuns(runs: readonly DagRun[]): string {
  if (runs.length === 0) return 'No runs found.\n';
  return formatTable(
    ['RUN_ID', 'STATE', 'TYPE', 'LOGICAL_DATE', 'START', 'END'],
    runs.map((run) => [
      run.dag_run_id,
      run.state,
      run.run_type,
      run.logical_date,
      orDash(run.start_date),
      orDash(run.end_date),
    ]),
  );
}

export function formatRun(run: DagRun): string {
  return formatFields([
    ['dag_id', run.dag_id],
    ['run_id', run.dag_run_id],
    ['state', run.state],
    ['type', run.run_type],
    ['logical date', run.logical_date],
    ['data interval', `${orDash(run.data_interval_start)} → ${orDash(run.data_interval_end)}`],
    ['queued at', run.queued_at],
    ['start', orDash(run.start_date)],
    ['end', orDash(run.end_date)],
    ['conf', JSON.stringify(run.conf)],
    ['version', run.dag_version],
    ...(run.deadlines === undefined || run.deadlines.length === 0
      ? []
      : ([
          [
            'deadlines',
            run.deadlines
              .map((deadline) => `${deadline.at} ${deadline.state} (${deadline.reference})`)
              .join(', '),
          ],
        ] as [string, string][])),
  ]);
}

export function stateOf(ti: TaskInstance): string {
  return ti.state ?? 'none';
}

export function formatTaskInstances(taskInstances: readonly TaskInstance[]): string {
  if (taskInstances.length === 0) return 'No task instances.\n';
  return formatTable(
    ['TASK_ID', 'STATE', 'TRY', 'START', 'END', 'DURATION', 'HOST', 'ERROR'],
    taskInstances.map((ti) => [
      ti.map_index >= 0 ? `${ti.task_id}[${ti.map_index}]` : ti.task_id,
      stateOf(ti),
      String(ti.try_number),
      orDash(ti.start_date),
      orDash(ti.end_date),
      formatDuration(ti.duration),
      orDash(ti.hostname),
      orDash(ti.error_message?.split('\n')[0]),
    ]),
  );
}

export function formatTriggers(triggers: readonly Trigger[]): string {
  if (triggers.length === 0) return 'No triggers found.\n';
  return formatTable(
    ['TRIGGER_ID', 'CLASSPATH', 'STATE', 'TRIGGERER', 'TASK_INSTANCE', 'TRY', 'CREATED', 'TIMEOUT'],
    triggers.map((trigger) => {
      const ti = trigger.task_instance;
      const task = ti.map_index >= 0 ? `${ti.task_id}[${ti.map_index}]` : ti.task_id;
      return [
        trigger.trigger_id,
        trigger.classpath,
        trigger.state,
        orDash(trigger.triggerer_id),
        `${ti.dag_id}/${ti.dag_run_id}/${task}`,
        String(ti.try_number),
        trigger.created_date,
        orDash(trigger.timeout_date),
      ];
    }),
  );
}

export function formatTriggerers(triggerers: readonly Triggerer[]): string {
  if (triggerers.length === 0) return 'No triggerers found.\n';
  return formatTable(
    ['JOB_ID', 'HOSTNAME', 'STATE', 'RUNNING', 'CAPACITY', 'QUEUES', 'LAST_HEARTBEAT'],
    triggerers.map((job) => [
      job.job_id,
      job.hostname,
      job.state,
      String(job.running_triggers),
      String(job.capacity),
      orDash(job.queues.join(',')),
      job.latest_heartbeat,
    ]),
  );
}

/** `success 3 · running 1 · queued 0 · failed 0 · up_for_retry 1 · none 1`. */
export function formatStateCounts(taskInstances: readonly TaskInstance[]): string {
  const counts = new Map<string, number>();
  for (const ti of taskInstances) counts.set(stateOf(ti), (counts.get(stateOf(ti)) ?? 0) + 1);
  const shown: string[] = [...ALWAYS_COUNTED];
  for (const state of SOMETIMES_COUNTED) if (counts.has(state)) shown.push(state);
  for (const state of counts.keys()) if (!shown.includes(state)) shown.push(state);
  return shown.map((state) => `${state} ${counts.get(state) ?? 0}`).join(' · ');
}

/** One line of `--wait` progress: the run, its state and its task counts. */
export function formatProgress(run: DagRun, taskInstances: readonly TaskInstance[]): string {
  return `${run.dag_run_id} ${run.state}  ${formatStateCounts(taskInstances)}`;
}

export function formatJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
